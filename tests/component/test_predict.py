"""Batch prediction as rmldnn's MNIST tutorial runs it: ten digit images in, output_1.h5 out, read with
the tutorial's own h5py loop; and the same from an archive served over loopback."""

import csv
import hashlib
import tarfile
from pathlib import Path, PurePosixPath

import h5py
import keras
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from mnist_api.layout import RunPaths
from mnist_trainer.datasets import FASHION_CLASSES, FetchPolicy
from mnist_trainer.errors import DataInvalidError
from mnist_trainer.image_folder import read_image
from mnist_trainer.models import build_model, make_optimizer
from mnist_trainer.predict import class_names_beside, predict_images
from tests.support.servers import serve_directory

# The tutorial's digit_0.jpg .. digit_9.jpg show these digits, in this order (its printed answer).
SEEDS_DIGITS = [3, 5, 1, 9, 4, 7, 2, 0, 6, 8]


@pytest.fixture(scope="module")
def model(synthetic_arrays: dict[str, npt.NDArray[np.uint8]]) -> keras.Model:
    keras.utils.set_random_seed(0)
    trained = build_model("mlp")
    trained.compile(
        optimizer=make_optimizer("adam", 0.003), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    trained.fit(
        synthetic_arrays["x_train"].astype(np.float32), synthetic_arrays["y_train"], epochs=5, verbose=0
    )
    return trained


def run_paths(tmp_path: Path) -> RunPaths:
    return RunPaths(PurePosixPath(tmp_path / "output"), "default", "digits", "uid-1")


def test_the_seeds_ten_digits_come_out_in_order_through_their_h5py_loop(
    tmp_path: Path, model: keras.Model, synthetic_arrays: dict[str, npt.NDArray[np.uint8]]
) -> None:
    x_test, y_test = synthetic_arrays["x_test"], synthetic_arrays["y_test"]
    # Clear examples, as the tutorial's are: of each digit, the first the model is sure of (JPEG's losses
    # must not tip it over).
    confidence = model.predict(x_test.astype(np.float32), verbose=0)
    digits = tmp_path / "mnist_digits"
    digits.mkdir()
    for k, label in enumerate(SEEDS_DIGITS):
        sure = np.flatnonzero((y_test == label) & (confidence[:, label] > 0.9))
        Image.fromarray(x_test[sure[0]]).save(digits / f"digit_{k}.jpg", quality=90)
    paths = run_paths(tmp_path)

    assert predict_images(model, digits, paths, batch_size=4) == 10

    # What the model says about the very pixels the JPEGs decode to.
    decoded = np.stack([read_image(digits / f"digit_{k}.jpg") for k in range(10)])
    expected = model.predict(decoded.astype(np.float32), verbose=0)
    # The tutorial's snippet, verbatim but for the path and collecting instead of printing.
    pred = h5py.File(Path(paths.predictions_hdf5), "r")
    answers = []
    for dataset in pred:
        answers.append(np.argmax(pred[dataset][()]))
    files = [pred[dataset].attrs["file"] for dataset in pred]
    shapes = {(pred[dataset].shape, pred[dataset].dtype) for dataset in pred}
    pred.close()
    assert files == [f"digit_{k}.jpg" for k in range(10)]
    assert shapes == {((10,), np.dtype("float32"))}
    assert answers == list(np.argmax(expected, axis=1))
    assert answers == SEEDS_DIGITS  # the tutorial's "3 5 1 9 4 7 2 0 6 8"

    with Path(paths.predictions_csv).open(newline="") as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == 10
    assert [row["file"] for row in rows] == files
    assert [int(row["predicted_class"]) for row in rows] == answers
    for row, outputs in zip(rows, expected, strict=True):
        assert float(row["probability"]) == pytest.approx(outputs.max(), abs=1e-5)
        assert [float(row[str(c)]) for c in range(10)] == pytest.approx(outputs.tolist(), abs=1e-5)


def test_an_archive_over_http_keeps_path_order_past_ten_images_and_names_classes(
    tmp_path: Path, model: keras.Model, synthetic_arrays: dict[str, npt.NDArray[np.uint8]]
) -> None:
    images = tmp_path / "batch" / "scans"
    (images / "more").mkdir(parents=True)
    for k in range(12):  # digit_10 sorts before digit_2: the order is the paths', whatever the names say
        Image.fromarray(synthetic_arrays["x_test"][k]).save(images / f"digit_{k}.png")
    Image.fromarray(synthetic_arrays["x_test"][12]).resize((56, 56)).save(images / "more" / "big.PNG")
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "batch.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "batch", arcname="batch")
    sums = {"batch.tar.gz": hashlib.sha256((served / "batch.tar.gz").read_bytes()).hexdigest()}
    paths = run_paths(tmp_path)
    with serve_directory(served) as mirror:
        count = predict_images(
            model,
            mirror.url + "batch.tar.gz",
            paths,
            batch_size=5,
            class_names=FASHION_CLASSES,
            cache_dir=tmp_path / "cache",
            sha256=sums,
            policy=FetchPolicy(attempts=2, backoff_seconds=0.01),
        )
    assert count == 13
    expected_files = ["batch/scans/digit_0.png", "batch/scans/digit_1.png", "batch/scans/digit_10.png"]
    with h5py.File(Path(paths.predictions_hdf5), "r") as pred:
        names = list(pred)
        files = [pred[name].attrs["file"] for name in pred]
        argmax = [int(np.argmax(pred[name][()])) for name in pred]
        assert list(pred.attrs["class_names"]) == list(FASHION_CLASSES)
    assert names == [f"{i:02d}" for i in range(13)]
    assert files[:3] == expected_files and files[-1] == "batch/scans/more/big.PNG"
    assert files == sorted(files)
    with Path(paths.predictions_csv).open(newline="") as table:
        rows = list(csv.DictReader(table))
    assert [row["file"] for row in rows] == files
    assert [row["predicted_class"] for row in rows] == [FASHION_CLASSES[i] for i in argmax]
    assert list(rows[0])[3:] == list(FASHION_CLASSES)


def test_class_names_must_fit_the_model_and_come_from_its_training(
    tmp_path: Path, model: keras.Model
) -> None:
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(tmp_path / "in" / "blank.png")
    with pytest.raises(DataInvalidError, match="the model has 10 outputs but 2 class names"):
        predict_images(model, tmp_path / "in", run_paths(tmp_path), 8, class_names=["cat", "dog"])
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("not an image")
    with pytest.raises(DataInvalidError, match="empty: no images"):
        predict_images(model, tmp_path / "empty", run_paths(tmp_path), 8)
    assert not Path(run_paths(tmp_path).predictions_hdf5).exists()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text('{"classNames": ["cat", "dog", "cow"]}')
    assert class_names_beside(run_dir / "model.keras", 3) == ("cat", "dog", "cow")
    assert class_names_beside(run_dir / "model.keras", 10) == tuple(str(i) for i in range(10))
