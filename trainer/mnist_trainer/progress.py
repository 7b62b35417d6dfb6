"""A progress log that reads well in ``kubectl logs``: one line per epoch, a heartbeat inside long ones.

Keras' own progress bar redraws itself with carriage returns, which a log file shows as one endless line;
the trainer turns it off when stdout is not a TTY and logs through this callback instead.
"""

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import keras

log = logging.getLogger("mnist_trainer.progress")


def format_figures(logs: Mapping[str, Any]) -> str:
    order = ("loss", "accuracy", "val_loss", "val_accuracy")
    return "  ".join(f"{key} {float(logs[key]):.4f}" for key in order if key in logs)


class ProgressLog(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(
        self, epochs: int, train_images: int, heartbeat_seconds: float, steps_per_epoch: int
    ) -> None:
        super().__init__()
        self.epochs = epochs
        self.train_images = train_images
        self.heartbeat_seconds = heartbeat_seconds
        self.steps_per_epoch = steps_per_epoch
        self.images_per_second: list[float] = []
        self._epoch_started = 0.0
        self._last_line = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        first = getattr(self.model, "_initial_epoch", None) or 0
        if first:
            log.info("resuming at epoch %d/%d from the run's backup", first + 1, self.epochs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_started = self._last_line = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.monotonic()
        if now - self._last_line < self.heartbeat_seconds:
            return
        self._last_line = now
        step = batch + 1
        share = 100 * step / max(self.steps_per_epoch, 1)
        figures = format_figures(logs or {})
        log.info(
            "epoch %d/%d  step %d/%d (%.0f%%)  %s  %.0fs into the epoch",
            self._epoch_index() + 1,
            self.epochs,
            step,
            self.steps_per_epoch,
            share,
            figures,
            now - self._epoch_started,
        )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.monotonic() - self._epoch_started
        rate = self.train_images / seconds if seconds > 0 else math.inf
        self.images_per_second.append(rate)
        log.info(
            "epoch %d/%d  %s  %.1fs  %s img/s",
            epoch + 1,
            self.epochs,
            format_figures(logs or {}),
            seconds,
            f"{rate:,.0f}",
        )
        self._current_epoch = epoch + 1

    def _epoch_index(self) -> int:
        return getattr(self, "_current_epoch", getattr(self.model, "_initial_epoch", None) or 0)
