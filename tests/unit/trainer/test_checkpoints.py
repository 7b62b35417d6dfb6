"""The run's backup and best-model checkpoint, one serialisation per epoch; a stop mid-epoch records
nothing of that epoch, and a rerun resumes at it."""

import json
import signal
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import keras
import numpy as np
import pytest

from mnist_api.env import TrainerConfig
from mnist_api.layout import RunPaths
from mnist_trainer.callbacks import training_callbacks
from mnist_trainer.checkpoints import BackupAndBestModel, keep_keras_saving_skipsets
from mnist_trainer.errors import Interrupted
from mnist_trainer.models import build_model, loss_for, make_optimizer
from mnist_trainer.run_state import RunState
from mnist_trainer.safe_stop import SafeStop
from mnist_trainer.stop_requests import STOP_SIGNALS, StopRequests

RNG = np.random.default_rng(7)
IMAGES = RNG.integers(0, 256, (96, 28, 28)).astype(np.uint8)
LABELS = RNG.integers(0, 10, 96)


def zoo_model(name: str = "mlp") -> keras.Model:
    keras.utils.set_random_seed(5)
    model = build_model(name)
    # A large step makes the validation loss go up and down, so the best epoch is not simply the last.
    model.compile(optimizer=make_optimizer("adam", 0.05), loss=loss_for(name), metrics=["accuracy"])
    return model


class WeightsPerEpoch(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.weights: list[list[np.ndarray]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.weights.append([np.array(w) for w in self.model.get_weights()])


def fit(model: keras.Model, callbacks: list[Any], epochs: int) -> keras.callbacks.History:
    return model.fit(
        IMAGES[:64],
        LABELS[:64],
        batch_size=16,
        epochs=epochs,
        validation_data=(IMAGES[64:], LABELS[64:]),
        verbose=0,
        callbacks=callbacks,
    )


def test_the_best_checkpoint_is_the_best_epochs_model_and_loads_with_its_optimizer(tmp_path: Path) -> None:
    model = zoo_model()
    best = tmp_path / "checkpoints" / "best.keras"
    weights = WeightsPerEpoch()
    history = fit(model, [BackupAndBestModel(tmp_path / "backup", best, monitor="val_loss"), weights], 6)
    val_loss = history.history["val_loss"]
    best_epoch = int(np.argmin(val_loss))
    loaded = keras.models.load_model(best)
    assert all(
        np.array_equal(a, b) for a, b in zip(loaded.get_weights(), weights.weights[best_epoch], strict=True)
    )
    assert loaded.optimizer.iterations.numpy() == 4 * (best_epoch + 1), "the optimizer's state came along"
    assert loaded.loss == "sparse_categorical_crossentropy"
    test_loss = loaded.evaluate(IMAGES[64:], LABELS[64:], verbose=0, return_dict=True)["loss"]
    assert test_loss == pytest.approx(val_loss[best_epoch], rel=1e-5)
    assert not list(best.parent.glob(".partial-*")), "no temporary file left behind"


def test_a_retried_attempt_keeps_the_earlier_best_until_an_epoch_beats_it(tmp_path: Path) -> None:
    best = tmp_path / "best.keras"
    fit(zoo_model(), [BackupAndBestModel(tmp_path / "backup-1", best, monitor="val_loss")], 1)
    before = best.read_bytes()
    unbeatable = BackupAndBestModel(
        tmp_path / "backup-2", best, monitor="val_loss", initial_value_threshold=0.0
    )
    fit(zoo_model(), [unbeatable], 2)
    assert best.read_bytes() == before


def test_only_the_heartbeat_runs_at_every_training_step(tmp_path: Path) -> None:
    """Keras calls batch hooks at every step: none but the progress log's heartbeat may do work there."""
    config = TrainerConfig(
        namespace="ns",
        name="run",
        uid="uid",
        dataset="mnist",
        data_dir=str(tmp_path),
        output_dir=str(tmp_path),
        model="mlp",
        epochs=2,
        batch_size=16,
        learning_rate=0.001,
        optimizer="adam",
        validation_split=0.1,
        export_formats=["keras"],
        checkpoint_interval=1,
    )
    built = training_callbacks(
        config,
        RunPaths(PurePosixPath(tmp_path), "ns", "run", "uid"),
        StopRequests(),
        {},
        train_images=64,
        validating=True,
        interactive=False,
    )
    batch_hooks = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")
    per_step = {
        type(callback).__name__
        for callback in built.in_order
        for hook in batch_hooks
        if not getattr(getattr(callback, hook), "_is_default", False)  # Keras' mark of its no-op hooks
    }
    assert per_step == {"ProgressLog"}


@pytest.fixture
def stops() -> Iterator[StopRequests]:
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    requests = StopRequests()
    requests.install()
    yield requests
    for signum, handler in previous.items():
        signal.signal(signum, handler)


class SignalAtBatch(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__()
        self.at, self.epoch = (epoch, batch), -1

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if (self.epoch, batch) == self.at:
            signal.raise_signal(signal.SIGTERM)


def test_sigterm_mid_epoch_records_nothing_of_that_epoch_and_a_rerun_resumes_at_it(
    tmp_path: Path, stops: StopRequests
) -> None:
    backup, best = tmp_path / "backup", tmp_path / "best.keras"

    def callbacks(requests: StopRequests) -> list[Any]:
        return [
            SafeStop(requests),
            RunState(backup),
            BackupAndBestModel(backup, best, monitor="val_loss"),
        ]

    model = zoo_model()
    with stops.deferred(), pytest.raises(Interrupted, match="SIGTERM"):
        fit(model, [*callbacks(stops), SignalAtBatch(epoch=2, batch=1)], 5)
    assert [e["epoch"] for e in json.loads((backup / "history.json").read_text())["epochs"]] == [1, 2]
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2

    epochs = WeightsPerEpoch()
    rerun = fit(zoo_model(), [*callbacks(StopRequests()), epochs], 5)
    assert len(rerun.history["loss"]) == 3, "epochs 3 to 5: the stopped epoch is trained again"
    assert [e["epoch"] for e in json.loads((backup / "history.json").read_text())["epochs"]] == [
        1,
        2,
        3,
        4,
        5,
    ]


def test_keras_reuses_its_saving_skipsets_and_the_weights_still_round_trip(tmp_path: Path) -> None:
    from keras.src.saving import saving_lib

    model = zoo_model()
    model.fit(IMAGES[:16], LABELS[:16], epochs=1, verbose=0)
    model.save_weights(tmp_path / "first.weights.h5")
    keep_keras_saving_skipsets()
    assert saving_lib.get_attr_skipset("Functional") is saving_lib.get_attr_skipset("Functional")
    model.save_weights(tmp_path / "second.weights.h5")
    copy = zoo_model()
    copy.load_weights(tmp_path / "second.weights.h5")
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), copy.get_weights(), strict=True))
