"""Genuine Fashion-MNIST written out as image folders (PNG and JPEG, rmldnn's training/<class>/ and
testing/<class>/), trained through the image-folder path (a .tgz over loopback HTTP, and a mounted
folder) and through the idx path with the same seed: the same images must give the same accuracy.

A subset keeps it fast: 6,000 training and 1,000 test images, the mlp, two epochs. Both paths get the
images in the same order (sorted by class, as the folder loader lists them), so the seeded split and
shuffle match too: PNG is lossless and must match the idx run exactly; JPEG at quality 95 within 0.01.
"""

import hashlib
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from mnist_api.env import TrainerConfig
from mnist_trainer.datasets import DIGIT_CLASSES, FASHION_CLASSES
from mnist_trainer.idx import parse_idx
from mnist_trainer.pipeline import load_data, run_training
from mnist_trainer.stop_requests import StopRequests
from tests.conftest import contract_env, run_trainer
from tests.support.mnist_data import write_idx_quartet
from tests.support.servers import Mirror, serve_directory

FASHION = Path("/usr/share/datasets/fashion-mnist")
N_TRAIN, N_TEST = 6000, 1000

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Served:
    mirror: Mirror
    sha256: dict[str, str]
    png: Path
    jpeg: Path
    arrays: dict[str, npt.NDArray[np.uint8]]


def fashion_subset() -> dict[str, npt.NDArray[np.uint8]]:
    if not FASHION.is_dir():
        if os.environ.get("CI"):
            pytest.fail("dataset-fashion-mnist is not installed: .ci/run must apt-get install it")
        pytest.skip("apt-get install dataset-fashion-mnist")
    arrays = {}
    for prefix, split, count in (("train", "train", N_TRAIN), ("t10k", "test", N_TEST)):
        images = parse_idx((FASHION / f"{prefix}-images-idx3-ubyte.gz").read_bytes())[:count]
        labels = parse_idx((FASHION / f"{prefix}-labels-idx1-ubyte.gz").read_bytes())[:count]
        order = np.argsort(labels, kind="stable")  # the folder loader's order: by class, then by name
        arrays[f"x_{split}"], arrays[f"y_{split}"] = images[order], labels[order]
    return arrays


def write_image_folder(root: Path, arrays: dict[str, npt.NDArray[np.uint8]], suffix: str) -> Path:
    for folder, split in (("training", "train"), ("testing", "test")):
        for label in range(10):
            (root / folder / str(label)).mkdir(parents=True)
        for i, (pixels, label) in enumerate(zip(arrays[f"x_{split}"], arrays[f"y_{split}"], strict=True)):
            Image.fromarray(pixels).save(root / folder / str(label) / f"{i:05d}{suffix}", quality=95)
    return root


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    arrays = fashion_subset()
    root = tmp_path_factory.mktemp("fashion-folders")
    png = write_image_folder(root / "png" / "fashion", arrays, ".png")
    jpeg = write_image_folder(root / "jpeg", arrays, ".JPG")
    files = write_idx_quartet(root / "mirror" / "idx", arrays)
    with tarfile.open(root / "mirror" / "fashion-png.tgz", "w:gz") as tar:
        tar.add(png, arcname="fashion")  # one level down, as rmldnn's mnist.tgz
    files["fashion-png.tgz"] = root / "mirror" / "fashion-png.tgz"
    sums = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    with serve_directory(root / "mirror") as mirror:
        yield Served(mirror, sums, png, jpeg, arrays)


def environment(tmp_path: Path, served: Served, **overrides: str) -> dict[str, str]:
    return contract_env(
        tmp_path,
        None,
        MNIST_DATASET="fashion-mnist",
        MNIST_DATASET_SHA256=json.dumps(served.sha256),
        MNIST_MODEL="mlp",
        MNIST_EPOCHS="2",
        MNIST_EXPORT_FORMATS='["keras"]',
        **overrides,
    )


def train_in_process(env: dict[str, str]) -> dict[str, Any]:
    return run_training(TrainerConfig.from_env(env), {}, StopRequests())


def test_png_and_jpeg_folders_train_as_the_idx_files_do(tmp_path: Path, served: Served) -> None:
    url = served.mirror.url
    idx = train_in_process(environment(tmp_path / "idx", served, MNIST_DATASET_URL=url + "idx/"))
    tgz_env = environment(tmp_path / "tgz", served, MNIST_DATASET_URL=url + "fashion-png.tgz")
    # The archive path decodes to the very arrays the idx files hold.
    loaded = load_data(TrainerConfig.from_env(tgz_env))
    for key, array in served.arrays.items():
        assert np.array_equal(getattr(loaded, key), array), key
    png_tgz = train_in_process(tgz_env)
    png_dir = train_in_process(environment(tmp_path / "dir", served, MNIST_DATASET_DIR=str(served.png)))
    # The JPEG folder as a pod runs it: `python -m mnist_trainer`, its environment only.
    run = run_trainer(environment(tmp_path / "jpeg", served, MNIST_DATASET_DIR=str(served.jpeg)))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    jpeg = run.metrics_json()

    accuracy = {
        name: report["test"]["accuracy"]
        for name, report in (("idx", idx), ("png-tgz", png_tgz), ("png-dir", png_dir), ("jpeg-dir", jpeg))
    }
    print("\ntest accuracy:", json.dumps(accuracy))
    assert accuracy["idx"] >= 0.7, "the mlp learned too little for the comparison to mean anything"
    for name in ("png-tgz", "png-dir", "jpeg-dir"):
        assert abs(accuracy[name] - accuracy["idx"]) <= 0.01, accuracy
    assert idx["classNames"] == list(FASHION_CLASSES)
    for report in (png_tgz, png_dir, jpeg):
        assert report["classNames"] == list(DIGIT_CLASSES)  # the folders' names
        assert sorted(report["test"]["perClassAccuracy"]) == list(DIGIT_CLASSES)
    assert "image folder" in run.stdout and "10 classes, 6,000 train and 1,000 test images" in run.stdout


def test_a_second_load_reads_the_decoded_cache(tmp_path: Path, served: Served) -> None:
    env = environment(tmp_path, served, MNIST_DATASET_DIR=str(served.jpeg))
    first = load_data(TrainerConfig.from_env(env))
    cached = list((tmp_path / "data" / "fashion-mnist").glob("images-*.npz"))
    assert len(cached) == 1
    again = load_data(TrainerConfig.from_env(env))
    assert np.array_equal(first.x_train, again.x_train) and np.array_equal(first.y_test, again.y_test)
    # JPEG at quality 95 is close to the originals, not equal to them.
    difference = np.abs(first.x_train.astype(int) - served.arrays["x_train"]).mean()
    assert 0 < difference < 3
