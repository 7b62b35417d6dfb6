"""Image-folder datasets: rmldnn's layout of PNG or JPEG files, one folder per class.

::

    <root>/training/<class>/...png|jpg|jpeg   (at any depth below the class folder)
    <root>/testing/<class>/...

``<root>`` is the folder given (a claim's path, or the top of an extracted archive) or its one subfolder
holding both, as in rmldnn's mnist.tgz (``mnist/training/0/...``). The class names are the names of
training/'s folders in plain string order, the order Keras' ``image_dataset_from_directory`` and
torchvision's ``ImageFolder`` use, so label ``i`` means the same class to a model trained on the same
folders with them ("10" sorts before "2"). testing/ may lack classes but may not add any.

Every image becomes a 28x28 uint8 grayscale array, as the zoo's models take: Pillow's ITU-R 601-2 luma
conversion, then a Lanczos resize (stretching, like Keras' default) when the image is not 28x28 already.
Hidden files and folders (``.name``, macOS' ``__MACOSX``) are skipped, as are files that are not PNG or
JPEG by their suffix (case-insensitive).

Archives (.tgz, .tar.gz, .zip) are downloaded with ``datasets.fetch_file`` (retries, resume, the sha256
from ``spec.dataset.sha256`` by file name, the shared cache) and extracted once per content into the
cache, refusing members that would land outside the target folder, special files, and archives larger
than ``MAX_EXTRACTED_BYTES`` or the free space. Decoding 70,000 small PNGs takes seconds of pure Python
per core, so large folders are decoded by a pool of processes (threads do not help: Pillow's per-image
work is Python, under the GIL), and the decoded arrays are cached as an .npz keyed by the folder's
listing (paths, sizes, modification times): a retried pod, or the next training on the same data, skips
the decoding.
"""

import errno
import gzip
import hashlib
import logging
import lzma
import math
import multiprocessing
import os
import posixpath
import shutil
import signal
import stat
import tarfile
import time
import urllib.parse
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image, ImageOps

from mnist_api.spec import ARCHIVE_SUFFIXES

from .datasets import Array, FetchPolicy, MnistData, _exclusive, _sha256, fetch_file
from .errors import DataInvalidError, DataUnavailableError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg")
IMAGE_SIZE: Final = (28, 28)
TRAINING_DIR: Final = "training"
TESTING_DIR: Final = "testing"
MAX_CLASSES: Final = 256
"""Labels travel as uint8 through the input pipeline."""
MAX_EXTRACTED_BYTES: Final = 32 << 30
"""What an archive may unpack to: far above any 28x28 dataset, far below what fills a volume by surprise."""
MAX_ARCHIVE_MEMBERS: Final = 10_000_000
DECODE_VERSION: Final = 1
"""Part of the decoded-arrays cache key: bump it when decoding changes, so old caches are not reused."""
PARALLEL_FROM: Final = 4000
"""Fewer images decode faster in this process than the seconds a process pool takes to start."""
_FORMATS: Final = ("PNG", "JPEG")
_IGNORED_FOLDERS: Final = frozenset({"__MACOSX"})
_SIXTEEN_BIT_MODES: Final = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
# What a truncated or corrupt archive raises (gzip.BadGzipFile is an OSError: it must come before the
# OSError that means the volume is full or unwritable).
_CORRUPT_ARCHIVE: Final = (
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    lzma.LZMAError,
)


def is_archive_url(url: str | None) -> bool:
    """Whether a dataset URL is an image-folder archive: the same test as ``DatasetSpec.image_folder``."""
    return (url or "").endswith(ARCHIVE_SUFFIXES)


# -- archives ----------------------------------------------------------------------------------------
def fetch_archive(
    url: str, cache_dir: Path, sha256_overrides: Mapping[str, str], policy: FetchPolicy
) -> Path:
    """The extracted folder of the archive at ``url``, downloaded and extracted into ``cache_dir`` unless
    a verified copy is there already."""
    name = urllib.parse.unquote(urllib.parse.urlparse(url).path.rsplit("/", 1)[-1])
    archive = fetch_file(url, cache_dir / name, sha256_overrides.get(name), policy)
    return extract_archive(archive)


def extract_archive(archive: Path, into: Path | None = None) -> Path:
    """Extract ``archive`` (.tgz, .tar.gz or .zip) into a folder next to it (or under ``into``) named after
    its name and content, once: a later call with the same content finds the folder and returns it.

    Raises ``DataInvalidError`` for a corrupt archive, a member whose path leads outside the folder
    (absolute, ``..``, a link pointing out), a special file, or more than ``MAX_EXTRACTED_BYTES``;
    ``DataUnavailableError`` when the volume has no room for it.
    """
    parent = into or archive.parent
    parent.mkdir(parents=True, exist_ok=True)
    destination = parent / f"{archive.name}.{_sha256(archive)[:16]}.d"
    with _exclusive(destination.with_name(destination.name + ".lock")):
        if destination.is_dir():
            log.info("archive %s: extracted at %s", archive.name, destination)
            return destination
        # Left-overs of an extraction a killed pod began; the lock says nobody is writing them now.
        for stale in parent.glob(f".{destination.name}.*.part"):
            shutil.rmtree(stale, ignore_errors=True)
        partial = parent / f".{destination.name}.{os.getpid()}.part"
        partial.mkdir()
        started = time.monotonic()
        try:
            budget = _Budget(archive, shutil.disk_usage(parent).free)
            if archive.name.lower().endswith(".zip"):
                _extract_zip(archive, partial, budget)
            else:
                _extract_tar(archive, partial, budget)
        except _CORRUPT_ARCHIVE as error:
            shutil.rmtree(partial, ignore_errors=True)
            raise DataInvalidError(
                f"{archive.name}: not a valid {_kind(archive)} archive ({error})"
            ) from None
        except OSError as error:
            shutil.rmtree(partial, ignore_errors=True)
            hint = "; give the data volume more room" if error.errno == errno.ENOSPC else ""
            raise DataUnavailableError(
                f"{archive.name}: cannot extract into {parent}: {error.strerror or error}{hint}"
            ) from None
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        os.rename(partial, destination)
        log.info(
            "archive %s: %s files (%s bytes) extracted to %s in %.1fs",
            archive.name,
            f"{budget.members:,}",
            f"{budget.bytes:,}",
            destination,
            time.monotonic() - started,
        )
        return destination


def _kind(archive: Path) -> str:
    return "zip" if archive.name.lower().endswith(".zip") else "tar"


@dataclass
class _Budget:
    """Counts what an archive unpacks to, refusing it before the volume fills."""

    archive: Path
    free_bytes: int
    members: int = 0
    bytes: int = 0

    def add(self, name: str, size: int) -> None:
        self.members += 1
        self.bytes += max(size, 0)
        if self.members > MAX_ARCHIVE_MEMBERS:
            raise DataInvalidError(f"{self.archive.name}: more than {MAX_ARCHIVE_MEMBERS:,} members")
        if self.bytes > MAX_EXTRACTED_BYTES:
            raise DataInvalidError(
                f"{self.archive.name}: unpacks to more than {MAX_EXTRACTED_BYTES:,} bytes (at {name!r}); "
                "an image dataset of 28x28 images is far smaller"
            )
        if self.bytes > self.free_bytes:
            raise DataUnavailableError(
                f"{self.archive.name}: unpacks to more than the {self.free_bytes:,} bytes free on the data "
                "volume; give it more room (spec.dataset.cacheClaimName)"
            )


def _safe_member_name(archive: Path, name: str) -> None:
    path = posixpath.normpath(name)
    if "\x00" in name or posixpath.isabs(name) or path == ".." or path.startswith("../"):
        raise DataInvalidError(
            f"{archive.name}: refusing member {name!r}: its path leads outside the folder it is extracted to"
        )


def _extract_tar(archive: Path, target: Path, budget: _Budget) -> None:
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            _safe_member_name(archive, member.name)
            if member.issym() or member.islnk():
                # A symlink's target is relative to its folder; a hard link's names another member.
                base = posixpath.dirname(member.name) if member.issym() else ""
                points_to = posixpath.normpath(posixpath.join(base, member.linkname))
                if posixpath.isabs(member.linkname) or points_to == ".." or points_to.startswith("../"):
                    raise DataInvalidError(
                        f"{archive.name}: refusing link {member.name!r}: its target {member.linkname!r} is "
                        "outside the folder it is extracted to"
                    )
            elif not (member.isfile() or member.isdir()):
                raise DataInvalidError(
                    f"{archive.name}: refusing member {member.name!r}: not a file, folder or link"
                )
            budget.add(member.name, member.size)
            # The "data" filter (PEP 706) checks again what is checked above and drops set-uid bits,
            # owners and odd permissions: a second line of defence, not the only one.
            tar.extract(member, target, filter="data")


def _extract_zip(archive: Path, target: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(archive) as zipped:
        members = []
        for info in zipped.infolist():
            _safe_member_name(archive, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                # zipfile would write the link's target as a file's content; no image dataset needs it.
                log.warning("archive %s: skipping symbolic link %s", archive.name, info.filename)
                continue
            # A zip's central directory declares every size up front, and zipfile stops reading a member at
            # its declared size, so the budget is known, and refused, before anything is written.
            budget.add(info.filename, info.file_size)
            members.append(info)
        for info in members:
            zipped.extract(info, target)


# -- the folder layout -------------------------------------------------------------------------------
def _hidden(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED_FOLDERS


def find_dataset_root(folder: Path) -> Path:
    """The folder holding training/ and testing/: ``folder`` itself or its one subfolder that does."""
    if not folder.is_dir():
        raise DataUnavailableError(f"{folder}: no such folder")

    def holds_splits(candidate: Path) -> bool:
        return (candidate / TRAINING_DIR).is_dir() and (candidate / TESTING_DIR).is_dir()

    if holds_splits(folder):
        return folder
    children = sorted(p for p in folder.iterdir() if p.is_dir() and not _hidden(p.name))
    roots = [child for child in children if holds_splits(child)]
    if len(roots) == 1:
        return roots[0]
    if roots:
        names = ", ".join(f"{r.name}/" for r in roots)
        raise DataInvalidError(f"{folder}: more than one dataset in it ({names}); name one as the path")
    found = ", ".join(f"{c.name}/" for c in children[:10]) or "no folders"
    raise DataInvalidError(
        f"{folder}: no {TRAINING_DIR}/ and {TESTING_DIR}/ folders in it or one level down (found {found}); "
        f"an image-folder dataset is {TRAINING_DIR}/<class>/ and {TESTING_DIR}/<class>/ of PNG or JPEG images"
    )


def list_images(folder: Path) -> tuple[list[Path], int]:
    """Every PNG or JPEG below ``folder`` (any depth, hidden files and folders skipped), sorted by path
    relative to ``folder``; and how many other files were skipped."""
    found, skipped = _walk_images(str(folder))
    return [Path(path) for _, path in found], skipped


def _walk_images(folder: str) -> tuple[list[tuple[str, str]], int]:
    """(relative path, path) of every image below ``folder``, sorted; and the count of other files. Plain
    strings, not Paths: pathlib's parsing was most of the time a cached 70,000-image dataset took."""
    found: list[tuple[str, str]] = []
    skipped = 0
    prefix = len(folder.rstrip(os.sep)) + 1
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = [d for d in subdirs if not _hidden(d)]
        relative_dir = directory[prefix:] + "/" if len(directory) >= prefix else ""
        for name in files:
            if _hidden(name):
                continue
            if not name.lower().endswith(IMAGE_SUFFIXES):
                skipped += 1
                continue
            found.append((relative_dir + name, os.path.join(directory, name)))
    found.sort()
    return found, skipped


@dataclass(frozen=True)
class FolderListing:
    """The images of one dataset as (path, label), in label then path order."""

    root: Path
    class_names: tuple[str, ...]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]

    def content_key(self) -> str:
        """sha256 of what the decoded arrays depend on: paths, labels, sizes and modification times."""
        digest = hashlib.sha256(f"decode-v{DECODE_VERSION} {IMAGE_SIZE}\n".encode())
        digest.update("\n".join(self.class_names).encode() + b"\n")
        prefix = len(str(self.root).rstrip(os.sep)) + 1
        for split, items in (("train", self.train), ("test", self.test)):
            for path, label in items:
                info = os.stat(path)
                line = f"{split} {label} {info.st_size} {info.st_mtime_ns} {path[prefix:]}\n"
                digest.update(line.encode())
        return digest.hexdigest()


def list_dataset(root: Path) -> FolderListing:
    """The classes and images of a dataset root (see ``find_dataset_root``), checked: every class folder
    has images, testing/ has only classes training/ has."""
    training = _class_folders(root / TRAINING_DIR)
    testing = _class_folders(root / TESTING_DIR)
    if not training:
        raise DataInvalidError(f"{root / TRAINING_DIR}: no class folders (expected {TRAINING_DIR}/<class>/)")
    if len(training) < 2:
        raise DataInvalidError(f"{root / TRAINING_DIR}: only one class folder ({next(iter(training))}/)")
    if len(training) > MAX_CLASSES:
        raise DataInvalidError(f"{root / TRAINING_DIR}: {len(training)} class folders; at most {MAX_CLASSES}")
    unknown = sorted(set(testing) - set(training))
    if unknown:
        raise DataInvalidError(
            f"{root / TESTING_DIR}: class folder {', '.join(f'{n}/' for n in unknown)} not in {TRAINING_DIR}/ "
            f"(its classes: {', '.join(sorted(training))}); testing/ may hold only classes training/ has"
        )
    if not testing:
        raise DataInvalidError(f"{root / TESTING_DIR}: no class folders (expected {TESTING_DIR}/<class>/)")
    class_names = tuple(sorted(training))
    label = {name: index for index, name in enumerate(class_names)}
    splits = {}
    for split, folders in ((TRAINING_DIR, training), (TESTING_DIR, testing)):
        items: list[tuple[str, int]] = []
        for name in sorted(folders, key=label.__getitem__):
            images, skipped = _walk_images(str(folders[name]))
            if not images:
                raise DataInvalidError(
                    f"{folders[name]}: no images (PNG or JPEG files) in class folder {name!r}"
                )
            if skipped:
                log.warning("%s: skipped %d files that are not PNG or JPEG", folders[name], skipped)
            items += [(path, label[name]) for _, path in images]
        splits[split] = items
    return FolderListing(root, class_names, splits[TRAINING_DIR], splits[TESTING_DIR])


def _class_folders(split_dir: Path) -> dict[str, Path]:
    if not split_dir.is_dir():
        raise DataInvalidError(f"{split_dir}: no such folder")
    folders: dict[str, Path] = {}
    strays = 0
    for entry in os.scandir(split_dir):
        if _hidden(entry.name):
            continue
        if entry.is_dir():
            folders[entry.name] = Path(entry.path)
        else:
            strays += 1
    if strays:
        log.warning("%s: skipped %d files outside the class folders", split_dir, strays)
    return folders


# -- decoding ----------------------------------------------------------------------------------------
def read_image(path: str | Path) -> Array:
    """One PNG or JPEG as a 28x28 uint8 grayscale array."""
    try:
        with Image.open(path, formats=_FORMATS) as opened:
            image: Image.Image = opened
            if image.format == "JPEG":
                if image.size != IMAGE_SIZE:
                    image.draft("L", IMAGE_SIZE)  # libjpeg scales down by up to 8 while decoding: faster
                if "exif" in image.info:
                    image = ImageOps.exif_transpose(image)  # photos taken sideways come out upright
            image = _grayscale(image)
            if image.size != IMAGE_SIZE:
                image = image.resize(IMAGE_SIZE, Image.Resampling.LANCZOS)
            return np.array(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataInvalidError(f"{path}: not a readable PNG or JPEG image ({error})") from None


def _grayscale(image: Image.Image) -> Image.Image:
    if image.mode == "L":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        # convert("L") clips 16-bit values at 255 (a white image); scale them instead.
        wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        return Image.fromarray((wide >> 8).astype(np.uint8))
    return image.convert("L")


def _read_chunk(paths: Sequence[str]) -> Array:
    """A pool worker's share: module level, so the pool can name it to its processes."""
    out = np.empty((len(paths), *IMAGE_SIZE), dtype=np.uint8)
    for index, path in enumerate(paths):
        out[index] = read_image(path)
    return out


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; the parent stops the pool, the workers need not shout.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def usable_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota (a pod's CPU limit)."""
    count = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def read_images(paths: Sequence[str | Path], workers: int | None = None) -> Array:
    """Decode ``paths`` (see ``read_image``) into one (n, 28, 28) uint8 array, in their order."""
    with ImageReader(len(paths), workers) as reader:
        return reader.read(paths)


class ImageReader:
    """Decodes lists of images (see ``read_image``) into (n, 28, 28) uint8 arrays, in their order; a
    context manager, so that one pool of processes serves every ``read``.

    When ``expected`` (the images of all reads together) reaches ``PARALLEL_FROM`` and more than one CPU
    is usable, a pool of ``workers`` processes (default: the usable CPUs, at most 8) shares the work. The
    processes are spawned, not forked: the trainer has TensorFlow's threads running by then, and a forked
    copy of a threaded process may hang. Without a pool (no /dev/shm for its semaphores, say) or when it
    breaks (a worker killed), this process decodes alone: slower, never wrong.
    """

    def __init__(self, expected: int, workers: int | None = None) -> None:
        workers = min(usable_cpus(), 8) if workers is None else workers
        self.workers = workers if expected >= PARALLEL_FROM else 1
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "ImageReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def read(self, paths: Sequence[str | Path]) -> Array:
        names = [str(p) for p in paths]
        pool = self._started_pool()
        if pool is None or len(names) < 512:
            return _read_chunk(names)
        # Several chunks per worker: an even finish even when one worker is slowed down.
        size = max(256, min(4096, math.ceil(len(names) / (self.workers * 4))))
        chunks = [names[i : i + size] for i in range(0, len(names), size)]
        try:
            return np.concatenate(list(pool.map(_read_chunk, chunks)))
        except (BrokenProcessPool, OSError) as error:
            log.warning("decoding in one process: the process pool failed (%s)", error)
            self.close()
            self.workers = 1
            return _read_chunk(names)

    def _started_pool(self) -> ProcessPoolExecutor | None:
        if self.workers > 1 and self._pool is None:
            try:
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_sigint
                )
            except (OSError, NotImplementedError) as error:
                log.warning("decoding in one process: cannot start a process pool (%s)", error)
                self.workers = 1
        return self._pool


# -- datasets ----------------------------------------------------------------------------------------
def load_image_folder_dataset(
    url: str | None,
    folder: Path | None,
    cache_dir: Path,
    sha256_overrides: Mapping[str, str],
    policy: FetchPolicy,
) -> MnistData:
    """An image-folder dataset from a mounted ``folder`` or, without one, the archive at ``url``; the
    extraction and the decoded arrays are cached under ``cache_dir``."""
    if folder is None:
        if url is None:
            raise ValueError("an image-folder dataset needs a folder or an archive URL")
        folder = fetch_archive(url, cache_dir, sha256_overrides, policy)
    return load_image_folder(folder, cache_dir)


def load_image_folder(
    folder: Path, cache_dir: Path | None = None, *, workers: int | None = None
) -> MnistData:
    """The dataset in ``folder`` (or its one subfolder holding training/ and testing/) as arrays, with
    its class names; from ``cache_dir``'s decoded copy when the images have not changed since."""
    started = time.monotonic()
    listing = list_dataset(find_dataset_root(folder))
    if cache_dir is None:
        data = _decode(listing, workers)
        _log_loaded(listing, "decoded", started)
        return data
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = cache_dir / f"images-{listing.content_key()[:24]}.npz"
    # Under a lock: pods sharing the cache volume decode once, the others wait and read the copy.
    with _exclusive(cached.with_name(cached.name + ".lock")):
        reused = _read_cached(cached, listing.class_names)
        if reused is not None:
            _log_loaded(listing, f"read from {cached.name}", started)
            return reused
        data = _decode(listing, workers)
        _write_cached(cached, data)
    _log_loaded(listing, "decoded", started)
    return data


def _decode(listing: FolderListing, workers: int | None) -> MnistData:
    everything = read_images([path for path, _ in listing.train + listing.test], workers)
    n_train = len(listing.train)

    def labels(items: list[tuple[str, int]]) -> Array:
        return np.fromiter((label for _, label in items), dtype=np.uint8, count=len(items))

    return MnistData(
        everything[:n_train],
        labels(listing.train),
        everything[n_train:],
        labels(listing.test),
        class_names=listing.class_names,
    )


def _read_cached(path: Path, class_names: tuple[str, ...]) -> MnistData | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            x_train, y_train, x_test, y_test = (
                np.asarray(saved[k], dtype=np.uint8) for k in ("x_train", "y_train", "x_test", "y_test")
            )
            names = tuple(str(n) for n in saved["class_names"])
    except (KeyError, ValueError, OSError, EOFError) as error:
        log.warning("decoded images %s are unreadable (%s); decoding again", path, error)
        return None
    if names != class_names:
        return None
    return MnistData(x_train, y_train, x_test, y_test, names)


def _write_cached(path: Path, data: MnistData) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with partial.open("wb") as out:
            # Uncompressed: 70,000 images are 55 MB, read back in a fraction of a second.
            np.savez(
                out,
                x_train=data.x_train,
                y_train=data.y_train,
                x_test=data.x_test,
                y_test=data.y_test,
                class_names=np.array(data.class_names),
            )
        os.replace(partial, path)
    except OSError as error:  # a cache that cannot be written costs the next run time, not this one
        partial.unlink(missing_ok=True)
        log.warning("could not cache the decoded images at %s: %s", path, error)


def _log_loaded(listing: FolderListing, how: str, started: float) -> None:
    log.info(
        "image folder %s: %d classes, %s train and %s test images %s in %.1fs",
        listing.root,
        len(listing.class_names),
        f"{len(listing.train):,}",
        f"{len(listing.test):,}",
        how,
        time.monotonic() - started,
    )
