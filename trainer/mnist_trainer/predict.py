"""Batch prediction: rmldnn's inference run (its MNIST tutorial's last section), with Keras.

Every PNG or JPEG under a folder (or an archive's extracted folder), at any depth, sorted by its path
relative to that folder, is read as the datasets' images are (28x28 grayscale, ``image_folder.read_image``)
and classified in batches. Two files say what the model thinks, in that order:

- ``predictions/output_1.h5``: rmldnn's file. One float32 dataset of shape (classes,) per image, holding
  the model's outputs (the class probabilities, for the zoo's softmax models). h5py lists a file's
  datasets by name, alphabetically, so the names are the image's position, zero-padded ("000", "001",
  ...): iterating the file, as the tutorial does (``for dataset in pred: np.argmax(pred[dataset][()])``),
  yields the images in order. Each dataset's ``file`` attribute is the image's relative path; the file's
  ``class_names`` attribute lists the classes by output index.
- ``predictions/predictions.csv``: for a person or a spreadsheet: ``file``, ``predicted_class`` (its
  name), ``probability`` (the model's output for that class), then one column per class, named after it.

Both are written under temporary names and renamed, so a reader never sees half a file.
"""

import csv
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Final

import h5py
import keras
import numpy as np

from mnist_api.env import TrainerConfig
from mnist_api.layout import METRICS_FILE, RunPaths, dataset_cache_dir

from .datasets import DIGIT_CLASSES, FetchPolicy
from .errors import DataInvalidError, DataUnavailableError
from .image_folder import ImageReader, fetch_archive, is_archive_url, list_images
from .stop_requests import StopRequests

log = logging.getLogger(__name__)

CHUNK_IMAGES: Final = 4096
"""Images decoded and predicted at a time: memory stays flat however many images there are."""
PREDICT_CACHE: Final = "predict"
"""Where, under the data volume, a predict archive is downloaded and extracted (as a dataset would be)."""


def predict_images(
    model: keras.Model,
    source: Path | str,
    paths: RunPaths,
    batch_size: int,
    *,
    class_names: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    sha256: Mapping[str, str] | None = None,
    policy: FetchPolicy | None = None,
    stops: StopRequests | None = None,
) -> int:
    """Classify every image under ``source``; write ``paths.predictions_hdf5`` and
    ``paths.predictions_csv``; return how many images there were.

    ``source`` is a folder (a mounted claim's), or the http(s):// or file:// URL of a .tgz, .tar.gz or
    .zip archive, which is downloaded and extracted into ``cache_dir`` exactly as a dataset archive is
    (retries per ``policy``, the sha256 from ``sha256`` by file name, safe extraction). ``class_names``
    names the model's outputs by index ("0", "1", ... when not given; ``class_names_beside`` finds the
    names a training recorded next to its model). ``stops`` is checked between chunks of images.

    Raises ``DataInvalidError`` when there are no images, one is unreadable, or ``class_names`` does not
    match the model's outputs; ``DataUnavailableError`` when the source cannot be read.
    """
    folder = _source_folder(source, cache_dir, sha256 or {}, policy or FetchPolicy())
    images, skipped = list_images(folder)
    if not images:
        raise DataInvalidError(f"{folder}: no images (PNG or JPEG files) to predict")
    if skipped:
        log.warning("%s: skipped %d files that are not PNG or JPEG", folder, skipped)
    outputs = int(model.output_shape[-1])
    names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(outputs))
    if len(names) != outputs:
        raise DataInvalidError(
            f"the model has {outputs} outputs but {len(names)} class names ({', '.join(names[:12])})"
        )
    hdf5, table = Path(paths.predictions_hdf5), Path(paths.predictions_csv)
    hdf5.parent.mkdir(parents=True, exist_ok=True)
    hdf5_part = hdf5.with_name(f".{hdf5.name}.{os.getpid()}.part")
    table_part = table.with_name(f".{table.name}.{os.getpid()}.part")
    started = time.monotonic()
    try:
        _write_predictions(
            model,
            folder,
            images,
            class_names=names,
            batch_size=batch_size,
            hdf5_path=hdf5_part,
            csv_path=table_part,
            stops=stops,
        )
        os.replace(hdf5_part, hdf5)
        os.replace(table_part, table)
    finally:
        hdf5_part.unlink(missing_ok=True)
        table_part.unlink(missing_ok=True)
    log.info(
        "predicted %s images of %s in %.1fs: %s, %s",
        f"{len(images):,}",
        source,
        time.monotonic() - started,
        hdf5,
        table,
    )
    return len(images)


def predict_for_config(
    model: keras.Model,
    config: TrainerConfig,
    paths: RunPaths,
    *,
    class_names: Sequence[str] | None = None,
    stops: StopRequests | None = None,
) -> int:
    """``predict_images`` with what a ``task: predict`` run's configuration says: ``predict_dir`` (a
    mounted claim's folder) or ``predict_url`` (an archive, cached under the data volume's predict/),
    the batch size, the download policy and ``dataset_sha256`` (by file name, as for datasets)."""
    source: Path | str
    if config.predict_dir is not None:
        source = Path(config.predict_dir)
    elif config.predict_url is not None:
        source = config.predict_url
    else:
        raise ValueError("task predict needs predict_dir or predict_url")
    return predict_images(
        model,
        source,
        paths,
        config.batch_size,
        class_names=class_names,
        cache_dir=Path(dataset_cache_dir(PurePosixPath(config.data_dir), PREDICT_CACHE)),
        sha256=config.dataset_sha256,
        policy=FetchPolicy(
            attempts=config.download_attempts, backoff_seconds=config.download_backoff_seconds
        ),
        stops=stops,
    )


def class_names_beside(model_file: Path, num_classes: int) -> tuple[str, ...]:
    """The class names the training that exported ``model_file`` recorded in the metrics.json beside it
    (``classNames``); "0", "1", ... when there is none, or it does not fit ``num_classes``."""
    digits = tuple(str(i) for i in range(num_classes)) if num_classes != 10 else DIGIT_CLASSES
    try:
        names = json.loads((model_file.parent / METRICS_FILE).read_text(encoding="utf-8"))["classNames"]
    except (OSError, ValueError, KeyError, TypeError):
        return digits
    if not isinstance(names, list) or len(names) != num_classes:
        return digits
    return tuple(str(name) for name in names)


def _source_folder(
    source: Path | str, cache_dir: Path | None, sha256: Mapping[str, str], policy: FetchPolicy
) -> Path:
    if isinstance(source, str) and urllib.parse.urlparse(source).scheme in ("http", "https", "file"):
        if not is_archive_url(source):
            raise DataInvalidError(f"{source}: the images to predict must be a .tgz, .tar.gz or .zip archive")
        if cache_dir is None:
            raise ValueError("an archive URL needs a cache_dir to download and extract it into")
        return fetch_archive(source, cache_dir, sha256, policy)
    folder = Path(source)
    if not folder.is_dir():
        raise DataUnavailableError(f"{folder}: no such folder of images to predict")
    return folder


def _write_predictions(
    model: keras.Model,
    folder: Path,
    images: list[Path],
    *,
    class_names: tuple[str, ...],
    batch_size: int,
    hdf5_path: Path,
    csv_path: Path,
    stops: StopRequests | None,
) -> None:
    width = len(str(len(images) - 1))  # zero-padded to one width: alphabetical order is input order
    chunk = max(batch_size, CHUNK_IMAGES // batch_size * batch_size)
    with (
        h5py.File(hdf5_path, "w") as h5,
        csv_path.open("w", newline="", encoding="utf-8") as table,
        ImageReader(len(images)) as reader,
    ):
        h5.attrs["class_names"] = list(class_names)
        writer = csv.writer(table)
        writer.writerow(["file", "predicted_class", "probability", *class_names])
        for start in range(0, len(images), chunk):
            if stops is not None:
                stops.check()
            batch = images[start : start + chunk]
            pixels = reader.read(batch).astype(np.float32)  # the models rescale raw 0-255 values themselves
            outputs = np.asarray(model.predict(pixels, batch_size=batch_size, verbose=0), dtype=np.float32)
            for offset, (path, row) in enumerate(zip(batch, outputs, strict=True)):
                relative = path.relative_to(folder).as_posix()
                dataset = h5.create_dataset(f"{start + offset:0{width}d}", data=row)
                dataset.attrs["file"] = relative
                best = int(np.argmax(row))
                writer.writerow(
                    [relative, class_names[best], f"{row[best]:.6f}", *(f"{value:.6f}" for value in row)]
                )
