"""The spec's tasks through the trainer as a pod runs it (``python -m mnist_trainer``, env only): train with
numbered checkpoints, then evaluate that model (gangplank's test.py), fine-tune it, predict a folder of
images with it (rmldnn), and the readable failure of a base model that is not there.
Metrics are read back from a real Pushgateway."""

import csv
import json
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from mnist_api.exit_codes import ExitCode
from tests.conftest import contract_env, data_mirror_for, run_trainer
from tests.support.servers import Pushgateway, start_pushgateway


@pytest.fixture(scope="module")
def gateway() -> Any:
    gateway = start_pushgateway()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
    gateway: Pushgateway,
    synthetic_arrays: dict[str, npt.NDArray[np.uint8]],
) -> dict[str, Any]:
    """One short mlp training keeping a checkpoint every epoch; the base model of the other tests."""
    root = tmp_path_factory.mktemp("tasks")
    with data_mirror_for(root, synthetic_arrays) as data:
        env = contract_env(
            root,
            data,
            MNIST_MODEL="mlp",
            MNIST_EPOCHS="3",
            MNIST_CHECKPOINT_INTERVAL="2",
            MNIST_MODEL_CARD="false",
            MNIST_EXPORT_FORMATS='["keras"]',
        )
        run = run_trainer(env)
    assert run.returncode == 0, run.stdout + run.stderr
    run_dir = root / "output" / "default" / "test"
    return {
        "root": root,
        "env": env,
        "run_dir": run_dir,
        "report": json.loads((run_dir / "metrics.json").read_text()),
    }


def _group(gateway: Pushgateway, training: str) -> dict[str, Any]:
    (group,) = [g for g in gateway.groups() if g["labels"].get("training") == training]
    return group


def _gauge(group: dict[str, Any], name: str) -> float:
    return float(group[name]["metrics"][0]["value"])


def test_checkpoint_interval_keeps_every_nth_epoch_besides_the_best(trained: dict[str, Any]) -> None:
    checkpoints = sorted(p.name for p in (trained["run_dir"] / "checkpoints").iterdir())
    assert checkpoints == ["best.keras", "epoch-0002.keras"]
    model = keras.models.load_model(trained["run_dir"] / "checkpoints" / "epoch-0002.keras")
    assert model.count_params() == trained["report"]["model"]["parameters"]


def test_evaluate_tests_the_saved_model_and_pushes_only_test_metrics(
    trained: dict[str, Any], gateway: Pushgateway, synthetic_arrays: dict[str, npt.NDArray[np.uint8]]
) -> None:
    root: Path = trained["root"]
    with data_mirror_for(root / "evaluate", synthetic_arrays) as data:
        env = contract_env(
            root / "evaluate",
            data,
            MNIST_NAME="check",
            MNIST_UID="uid-check",
            MNIST_TASK="evaluate",
            MNIST_BASE_MODEL_PATH=str(trained["run_dir"] / "model.keras"),
            MNIST_PUSHGATEWAY_URL=gateway.url,
            MNIST_IGNORE_EXCEPTIONS="false",
        )
        run = run_trainer(env)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((root / "evaluate" / "output" / "default" / "check" / "metrics.json").read_text())
    # The same model on the same test set: the same figures as the training's own evaluation.
    assert report["task"] == "evaluate" and report["epochs"] == 0 and report["history"] == []
    assert report["test"]["accuracy"] == pytest.approx(trained["report"]["test"]["accuracy"], abs=1e-6)
    group = _group(gateway, "check")
    assert _gauge(group, "gangplank_test_accuracy") == pytest.approx(report["test"]["accuracy"])
    assert "gangplank_test_model_weights" in group, "the seeds' test.py pushes the weights histogram"
    assert not any(name.startswith("gangplank_train_") for name in group), "an evaluation trains nothing"
    assert not (root / "evaluate" / "output" / "default" / "check" / "model.keras").exists()


def test_fine_tuning_trains_the_base_model_on_for_the_spec_epochs(
    trained: dict[str, Any], synthetic_arrays: dict[str, npt.NDArray[np.uint8]]
) -> None:
    root: Path = trained["root"]
    with data_mirror_for(root / "tune", synthetic_arrays) as data:
        env = contract_env(
            root / "tune",
            data,
            MNIST_NAME="tuned",
            MNIST_UID="uid-tuned",
            MNIST_MODEL="convnet",  # ignored: the base model decides the architecture
            MNIST_EPOCHS="1",
            MNIST_LEARNING_RATE="0.0005",
            MNIST_BASE_MODEL_PATH=str(trained["run_dir"] / "model.keras"),
            MNIST_MODEL_CARD="false",
            MNIST_EXPORT_FORMATS='["keras"]',
        )
        run = run_trainer(env)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((root / "tune" / "output" / "default" / "tuned" / "metrics.json").read_text())
    assert report["baseModel"].endswith("model.keras") and report["model"]["name"] == "mlp"
    assert report["epochs"] == 1
    # It started from the trained weights, not from scratch: its first epoch is already past the
    # base model's first one.
    assert report["history"][0]["loss"] < trained["report"]["history"][0]["loss"]
    assert report["test"]["accuracy"] >= trained["report"]["test"]["accuracy"] - 0.02


def test_a_base_model_that_is_not_there_fails_with_a_reason(tmp_path: Path) -> None:
    env = contract_env(
        tmp_path,
        None,
        MNIST_TASK="evaluate",
        MNIST_BASE_MODEL_PATH=str(tmp_path / "models" / "default" / "digits" / "model.keras"),
    )
    run = run_trainer(env)
    assert run.returncode == ExitCode.DATA_UNAVAILABLE, run.stdout + run.stderr
    assert "base model" in run.stdout and "does not exist" in run.stdout


def test_predict_classifies_a_folder_with_the_saved_model_and_pushes_the_count(
    trained: dict[str, Any], gateway: Pushgateway, synthetic_arrays: dict[str, npt.NDArray[np.uint8]]
) -> None:
    root: Path = trained["root"] / "predict"
    images = root / "claims" / "digits" / "batch-1"
    images.mkdir(parents=True)
    x_test = synthetic_arrays["x_test"][:12]
    for k, image in enumerate(x_test):
        Image.fromarray(image).save(images / f"scan_{k:02d}.png")
    env = contract_env(
        root,
        None,
        MNIST_NAME="scans",
        MNIST_UID="uid-scans",
        MNIST_TASK="predict",
        MNIST_BASE_MODEL_PATH=str(trained["run_dir"] / "model.keras"),
        MNIST_PREDICT_DIR=str(images),
        MNIST_PUSHGATEWAY_URL=gateway.url,
    )
    run = run_trainer(env)
    assert run.returncode == 0, run.stdout + run.stderr
    run_dir = root / "output" / "default" / "scans"
    report = json.loads((run_dir / "metrics.json").read_text())
    assert report["task"] == "predict" and report["predictions"]["images"] == 12
    expected = np.argmax(
        keras.models.load_model(trained["run_dir"] / "model.keras").predict(x_test, verbose=0), 1
    )
    with h5py.File(run_dir / "predictions" / "output_1.h5", "r") as predictions:
        # The seed's own loop: one (10,) dataset per image, in file order.
        assert [int(np.argmax(predictions[name][()])) for name in predictions] == list(expected)
    with (run_dir / "predictions" / "predictions.csv").open() as rows:
        table = list(csv.DictReader(rows))
    assert [row["file"] for row in table] == [f"scan_{k:02d}.png" for k in range(12)]
    assert _gauge(_group(gateway, "scans"), "gangplank_predict_images") == 12


def test_tensorboard_event_files_hold_every_epochs_loss(trained: dict[str, Any]) -> None:
    # Read back with TensorBoard's own reader, as `tensorboard --logdir` would.
    from tensorboard.backend.event_processing.event_accumulator import TENSORS, EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    run = trained["run_dir"] / "tensorboard" / "uid-1"
    history = trained["report"]["history"]
    for folder, key in (("train", "loss"), ("validation", "val_loss")):
        events = EventAccumulator(str(run / folder), size_guidance={TENSORS: 0})
        events.Reload()
        losses = {e.step: float(make_ndarray(e.tensor_proto)) for e in events.Tensors("epoch_loss")}
        assert sorted(losses) == [epoch - 1 for epoch in range(1, len(history) + 1)], folder
        for step, value in losses.items():
            assert value == pytest.approx(history[step][key], rel=1e-4), (folder, step)
