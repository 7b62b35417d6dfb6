"""The Keras side of ``StopRequests``: training stops at the next batch or epoch edge."""

from typing import Any

import keras

from .stop_requests import StopRequests


class SafeStop(keras.callbacks.Callback):  # type: ignore[misc]
    """Raises a recorded stop request between two steps, never inside TensorFlow's own code.

    Raising (rather than setting ``model.stop_training``) leaves ``fit`` before the epoch's end: Keras
    would otherwise validate the half-trained epoch and the backup would record it as finished.
    """

    def __init__(self, requests: StopRequests) -> None:
        super().__init__()
        self.requests = requests

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.requests.check()

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.requests.check()

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.requests.check()

    def on_predict_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.requests.check()
