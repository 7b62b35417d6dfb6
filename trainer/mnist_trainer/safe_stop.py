"""The Keras side of ``StopRequests``: Keras' loops stop at the next batch edge, with no hook per batch.

Keras calls every callback's batch hooks at every step, on the training thread, so a check there is paid
at every step of every epoch. ``SafeStop`` has no batch hook instead: a stop request sets the model's own
flags (``stop_training``, ``stop_evaluating``, ``stop_predicting``), on which Keras' loops break after
the step that is running, and ``SafeStop`` raises ``Interrupted`` at the next hook Keras calls after that:

- in ``fit``: at the validation's ``on_test_begin`` (``fit`` hands its callbacks to the validation's
  ``evaluate``), or at ``on_epoch_end`` when there is no validation data. ``SafeStop`` must therefore come
  before every callback that records an epoch (the history, the backup, checkpoints): a half-trained
  epoch is never recorded as finished. Leaving ``fit`` by the flag alone would not do: Keras would
  validate the half-trained epoch and the backup would record it as finished.
- in ``evaluate`` and ``predict``: at ``on_test_end`` and ``on_predict_end``, before their cut-short
  results are returned as if they were whole.
- at every loop's begin hooks and ``on_epoch_begin``: a request that came in before the loop cleared its
  flag still stops it, before its first step.
- at ``on_train_end``: a ``fit`` that a stop request ended never returns as if it had finished.
"""

from collections.abc import Callable
from typing import Any

import keras

from .stop_requests import StopRequests


class SafeStop(keras.callbacks.Callback):  # type: ignore[misc]
    """Stops Keras' loops at the next batch edge when a stop is requested, by raising ``Interrupted``
    between two steps, never inside TensorFlow's own code. Place it first in ``fit``'s callbacks."""

    def __init__(self, requests: StopRequests) -> None:
        super().__init__()
        self.requests = requests
        self._loops_running = 0  # fit's validation runs inside fit
        self._stop_listening: Callable[[], None] | None = None

    def _halt_the_model(self) -> None:
        # Called from the signal handler: set flags only. Each loop clears its own flag when it starts,
        # which is why every begin hook checks the request too.
        model = self.model
        model.stop_training = True
        model.stop_evaluating = True
        model.stop_predicting = True

    def _loop_begins(self) -> None:
        if self._loops_running == 0:
            self._stop_listening = self.requests.listen(self._halt_the_model)
        self._loops_running += 1
        self.requests.check()  # after listening: a request in between is caught by one or the other

    def _loop_ends(self) -> None:
        self._loops_running -= 1
        if self._loops_running == 0 and self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        self.requests.check()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._loop_begins()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.requests.check()

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._loop_begins()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        self._loop_ends()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.requests.check()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._loop_ends()

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._loop_begins()

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        self._loop_ends()
