"""Fetch MNIST-format data: download, verify, cache, parse.

Downloads go to ``<file>.part`` under an exclusive lock (several pods may share one cache volume), resume
with an HTTP Range request after an interruption, and are renamed into place only once their sha256
matches, so the cache never holds a corrupt file. Transient failures (connection errors, 5xx, 429) are
retried with exponential backoff; a 4xx answer or a wrong checksum is final.
"""

import fcntl
import hashlib
import logging
import os
import random
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .errors import DataInvalidError, DataUnavailableError
from .idx import IdxFormatError, parse_idx

log = logging.getLogger(__name__)

KERAS_DATASETS: Final = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
IDX_FILES: Final = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
NPZ_FILE: Final = "mnist.npz"

# sha256 of the canonical files, as published alongside them (Keras, TensorFlow Datasets).
BUILTIN_SHA256: Final[dict[str, dict[str, str]]] = {
    "mnist": {
        "mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
DEFAULT_URLS: Final = {
    "mnist": KERAS_DATASETS + NPZ_FILE,
    "fashion-mnist": KERAS_DATASETS,
}
MIRROR_HINT: Final = (
    "set spec.dataset.url to a mirror you can reach (http(s)://host/path/ holding the four idx .gz files, "
    "a .../mnist.npz, or a file:// path on a mounted volume)"
)
_CHUNK: Final = 1 << 20

# Class names by label index. The idx and npz files carry only the indexes; these are the names their
# publishers give them (Zalando's README for Fashion-MNIST), so reports and predictions can say "Sneaker"
# rather than "7". Metrics keep the index as their ``class`` label (docs/metrics.md says why).
DIGIT_CLASSES: Final = tuple(str(digit) for digit in range(10))
FASHION_CLASSES: Final = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CLASS_NAMES: Final[dict[str, tuple[str, ...]]] = {"mnist": DIGIT_CLASSES, "fashion-mnist": FASHION_CLASSES}

Array = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class MnistData:
    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array
    class_names: tuple[str, ...] = DIGIT_CLASSES
    """Label ``i`` is ``class_names[i]``."""


@dataclass(frozen=True)
class FetchPolicy:
    attempts: int = 5
    backoff_seconds: float = 1.0
    timeout_seconds: float = 60.0


def files_for(url: str) -> list[str]:
    """Which files a dataset URL stands for: one .npz, or the idx quartet under a folder URL."""
    path = urllib.parse.urlparse(url).path
    return [path.rsplit("/", 1)[-1]] if path.endswith(".npz") else list(IDX_FILES)


def file_url(url: str, file_name: str) -> str:
    if urllib.parse.urlparse(url).path.endswith(".npz"):
        return url
    return url if url.endswith("/" + file_name) else url.rstrip("/") + "/" + file_name


def load_dataset(
    dataset: str,
    url: str | None,
    cache_dir: Path,
    sha256_overrides: Mapping[str, str],
    policy: FetchPolicy,
) -> MnistData:
    """Fetch (or reuse from the cache) and parse one dataset of idx or npz files (image folders:
    ``image_folder.load_image_folder_dataset``)."""
    source = url or DEFAULT_URLS[dataset]
    class_names = CLASS_NAMES.get(dataset, DIGIT_CLASSES)
    builtin = BUILTIN_SHA256.get(dataset, {})
    paths = {}
    for name in files_for(source):
        expected = sha256_overrides.get(name) or builtin.get(name)
        paths[name] = fetch_file(file_url(source, name), cache_dir / name, expected, policy)
    try:
        if len(paths) == 1:
            return _parse_npz(next(iter(paths.values())), class_names)
        x_train, y_train, x_test, y_test = (parse_idx(paths[name].read_bytes()) for name in IDX_FILES)
    except IdxFormatError as error:
        raise DataInvalidError(f"dataset files from {source} are not valid idx data: {error}") from None
    return _checked(MnistData(x_train, y_train, x_test, y_test, class_names), source)


def fetch_file(url: str, destination: Path, sha256: str | None, policy: FetchPolicy) -> Path:
    """The verified local copy of ``url`` at ``destination``, downloading it if needed."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(destination.with_name(destination.name + ".lock")):
        if destination.exists():
            if sha256 is None or _sha256(destination) == sha256:
                log.info("dataset file %s: cached at %s", destination.name, destination)
                return destination
            log.warning("cached %s fails its sha256 check; downloading it again", destination)
            destination.unlink()
        partial = destination.with_name(destination.name + ".part")
        started = time.monotonic()
        _download_with_retries(url, partial, policy)
        actual = _sha256(partial)
        if sha256 is not None and actual != sha256:
            partial.unlink(missing_ok=True)
            raise DataInvalidError(
                f"{url}: sha256 mismatch: expected {sha256}, got {actual}. If this mirror serves "
                f"different but valid files, set spec.dataset.sha256.{destination.name}: {actual}"
            )
        os.replace(partial, destination)
        size = destination.stat().st_size
        log.info(
            "dataset file %s: downloaded %s bytes from %s in %.1fs%s",
            destination.name,
            f"{size:,}",
            url,
            time.monotonic() - started,
            "" if sha256 else " (no checksum known: not verified)",
        )
        return destination


def _download_with_retries(url: str, partial: Path, policy: FetchPolicy) -> None:
    scheme = urllib.parse.urlparse(url).scheme
    if scheme == "file":
        _copy_local(url, partial)
        return
    if scheme not in ("http", "https"):
        raise DataUnavailableError(f"{url}: unsupported URL scheme {scheme!r}; {MIRROR_HINT}")
    for attempt in range(1, policy.attempts + 1):
        try:
            _download(url, partial, policy.timeout_seconds)
            return
        except urllib.error.HTTPError as error:
            transient = error.code >= 500 or error.code in (408, 429)
            reason = f"HTTP {error.code} {error.reason}"
            if not transient:
                raise DataUnavailableError(f"{url}: {reason}; {MIRROR_HINT}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            reason = str(getattr(error, "reason", error))
        if attempt == policy.attempts:
            raise DataUnavailableError(
                f"{url}: download failed after {policy.attempts} attempts (last error: {reason}); {MIRROR_HINT}"
            )
        delay = policy.backoff_seconds * 2 ** (attempt - 1) * (1 + random.random() / 4)
        log.warning(
            "download of %s failed (%s); attempt %d/%d in %.1fs",
            url,
            reason,
            attempt + 1,
            policy.attempts,
            delay,
        )
        time.sleep(delay)


def _download(url: str, partial: Path, timeout: float) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "mnist-operator-trainer"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the part file is already whole
            return
        raise
    with response:
        resumed = have and response.status == 206
        if have:
            log.info("resuming %s at byte %s" if resumed else "restarting %s (no range support)", url, have)
        expected_size = _total_size(response, have if resumed else 0)
        with partial.open("ab" if resumed else "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    # http.client reports a connection closed mid-body as a plain end of file; the size tells.
    got = partial.stat().st_size
    if expected_size is not None and got < expected_size:
        raise ConnectionError(f"connection closed after {got:,} of {expected_size:,} bytes")


def _total_size(response: Any, offset: int) -> int | None:
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _copy_local(url: str, partial: Path) -> None:
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    try:
        shutil.copyfile(source, partial)
    except OSError as error:
        raise DataUnavailableError(f"{url}: cannot read {source}: {error.strerror}; {MIRROR_HINT}") from None


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _parse_npz(path: Path, class_names: tuple[str, ...]) -> MnistData:
    try:
        with np.load(path, allow_pickle=False) as archive:
            x_train, y_train, x_test, y_test = (
                np.asarray(archive[key]) for key in ("x_train", "y_train", "x_test", "y_test")
            )
    except (KeyError, ValueError, OSError) as error:
        raise DataInvalidError(f"{path.name} is not a Keras MNIST archive: {error}") from None
    return _checked(MnistData(x_train, y_train, x_test, y_test, class_names), str(path))


def _checked(data: MnistData, source: str) -> MnistData:
    """Shapes and label ranges of MNIST; anything else is refused before training starts."""
    checks: list[tuple[bool, Callable[[], str]]] = [
        (data.x_train.ndim == 3 and data.x_train.shape[1:] == (28, 28), lambda: "train images are not 28x28"),
        (data.x_test.ndim == 3 and data.x_test.shape[1:] == (28, 28), lambda: "test images are not 28x28"),
        (len(data.x_train) == len(data.y_train), lambda: "train images and labels differ in count"),
        (len(data.x_test) == len(data.y_test), lambda: "test images and labels differ in count"),
        (len(data.x_train) > 0 and len(data.x_test) > 0, lambda: "no images"),
    ]
    for ok, problem in checks:
        if not ok:
            raise DataInvalidError(f"{source}: {problem()}")
    for labels in (data.y_train, data.y_test):
        if labels.ndim != 1 or labels.min() < 0 or labels.max() > 9:
            raise DataInvalidError(f"{source}: labels must be digits 0-9")
    x_train, y_train, x_test, y_test = (
        np.asarray(a, dtype=np.uint8) for a in (data.x_train, data.y_train, data.x_test, data.y_test)
    )
    return MnistData(x_train, y_train, x_test, y_test, data.class_names)
