"""What a run remembers across pod restarts besides Keras' weights backup: the per-epoch history and
the training time spent so far, so a resumed run reports complete figures (metrics.json history, the
cumulative ``elapsed_time_seconds``, the best value the checkpoint must beat)."""

import json
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from mnist_api.layout import HISTORY_FILE

from .errors import TrainingDivergedError

log = logging.getLogger(__name__)


def write_json_atomically(path: Path, payload: Any) -> None:
    """Write then rename, so a reader (or a restarted trainer) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


class RunState(keras.callbacks.Callback):  # type: ignore[misc]
    """Keeps ``history.json`` in the run's backup directory; place it before ``BackupAndRestore``."""

    def __init__(self, backup_dir: Path) -> None:
        super().__init__()
        self.path = backup_dir / HISTORY_FILE
        self.history: list[dict[str, float]] = []
        self._first_epoch = True
        self._started = 0.0

    def load(self) -> list[dict[str, float]]:
        try:
            saved: list[dict[str, float]] = json.loads(self.path.read_text(encoding="utf-8"))["epochs"]
        except (OSError, ValueError, KeyError):
            saved = []
        self.history = saved
        return saved

    @property
    def elapsed_seconds(self) -> float:
        return sum(entry.get("seconds", 0.0) for entry in self.history)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.load()
        self._first_epoch = True

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._first_epoch:
            # Placed before BackupAndRestore so an epoch is in the history before it is in the backup;
            # the first epoch this attempt trains tells which recorded epochs the backup really has.
            self._first_epoch = False
            self.history = [entry for entry in self.history if entry["epoch"] <= epoch]
        self._started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        figures = {key: float(value) for key, value in (logs or {}).items()}
        if not math.isfinite(figures.get("loss", 0.0)):
            raise TrainingDivergedError(
                f"the training loss became {figures['loss']} in epoch {epoch + 1}; lower spec.learningRate "
                "or try another optimizer"
            )
        entry = {"epoch": epoch + 1, "seconds": time.monotonic() - self._started, **figures}
        self.history.append(entry)
        write_json_atomically(self.path, {"epochs": self.history})


def best_value(history: list[dict[str, float]], monitor: str) -> float | None:
    values = [entry[monitor] for entry in history if monitor in entry]
    if not values:
        return None
    return max(values) if "accuracy" in monitor else min(values)


class ResilientBackupAndRestore(keras.callbacks.BackupAndRestore):  # type: ignore[misc]
    """Keras' BackupAndRestore (with its double checkpoint), plus the one case that does not cover: a pod
    killed while writing the run's very first backup leaves a torn ``latest.weights.h5`` (or
    ``training_metadata.json``) and no earlier copy to fall back to. Keras then raises at every restart,
    and the Job retries a trainer that can never start (seen in the chaos test: SIGKILL right after the
    first epoch). Such a backup is discarded and the attempt starts from the first epoch again, which is
    all that was lost; ``RunState`` drops the history entries the backup no longer has."""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError) as error:
            backup = Path(self.backup_dir)
            log.warning(
                "the backup in %s cannot be read (%s), and there is no earlier copy: it was cut off while "
                "being written; training starts again from the first epoch",
                backup,
                error,
            )
            for name in ("latest.weights.h5", "training_metadata.json"):
                for path in (backup / name, backup / f"{name}.bkp"):
                    path.unlink(missing_ok=True)
