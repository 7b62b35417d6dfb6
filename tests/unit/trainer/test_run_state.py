"""Resuming from the run's backup when the pod was killed in the middle of writing it."""

import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mnist_trainer.run_state import ResilientBackupAndRestore  # noqa: E402


def tiny_model() -> "keras.Model":
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def fit(backup: Path, epochs: int) -> "keras.callbacks.History":
    inputs = np.random.default_rng(0).random((16, 4), dtype=np.float32)
    labels = np.arange(16) % 2
    callback = ResilientBackupAndRestore(str(backup), double_checkpoint=True, delete_checkpoint=False)
    return tiny_model().fit(inputs, labels, epochs=epochs, verbose=0, callbacks=[callback])


@pytest.mark.parametrize("torn", ["latest.weights.h5", "training_metadata.json"])
def test_a_first_backup_cut_off_mid_write_is_discarded_and_training_starts_over(
    tmp_path: Path, torn: str
) -> None:
    """SIGKILL while the first epoch's backup was being written: a torn file and no .bkp to fall back on.
    Keras' own callback raises at every restart; ours starts from the first epoch."""
    fit(tmp_path, epochs=1)
    (tmp_path / torn).write_bytes(b"\\x89HDF\\r\\n" if torn.endswith(".h5") else b'{"epoch": 1, "ba')
    assert not list(tmp_path.glob("*.bkp"))
    with pytest.raises((OSError, ValueError)):
        tiny_model().fit(
            np.zeros((4, 4), np.float32),
            np.zeros(4),
            epochs=2,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path), double_checkpoint=True)],
        )
    history = fit(tmp_path, epochs=2)
    assert len(history.history["loss"]) == 2, "both epochs trained: nothing was restored"
    assert json.loads((tmp_path / "training_metadata.json").read_text())["epoch"] == 2


def test_an_intact_backup_is_restored_as_keras_does(tmp_path: Path) -> None:
    fit(tmp_path, epochs=1)
    history = fit(tmp_path, epochs=3)
    assert len(history.history["loss"]) == 2, "epoch 1 came from the backup"
