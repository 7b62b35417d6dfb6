"""Stop signals: raised at once in pure Python, only at safe points while TensorFlow runs."""

import signal
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import pytest

from mnist_trainer.errors import Interrupted
from mnist_trainer.safe_stop import SafeStop
from mnist_trainer.stop_requests import STOP_SIGNALS, StopRequests


@pytest.fixture
def stops() -> Iterator[StopRequests]:
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    # As an interactive shell starts pytest; a background job (`make test &`) inherits an ignored SIGINT,
    # which install() rightly leaves ignored (test_an_ignored_sigint_stays_ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    requests = StopRequests()
    requests.install()
    yield requests
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_outside_tensorflow_a_signal_stops_at_once(stops: StopRequests, signum: signal.Signals) -> None:
    with pytest.raises(Interrupted, match=signum.name):
        signal.raise_signal(signum)
        pytest.fail("the handler did not raise")


def test_while_deferred_a_signal_is_only_recorded_until_the_next_check(stops: StopRequests) -> None:
    with stops.deferred():
        signal.raise_signal(signal.SIGTERM)
        assert stops.requested_by == "SIGTERM"
        with pytest.raises(Interrupted, match="SIGTERM"):
            stops.check()


def test_work_that_finished_after_the_signal_is_not_undone(stops: StopRequests) -> None:
    with stops.deferred():
        signal.raise_signal(signal.SIGTERM)
    assert stops.requested_by == "SIGTERM"  # no raise at the block's end


def test_at_once_inside_deferred_raises_immediately_and_on_entry(stops: StopRequests) -> None:
    with stops.deferred():
        with pytest.raises(Interrupted), stops.at_once():
            signal.raise_signal(signal.SIGTERM)
            pytest.fail("the handler did not raise")
        with pytest.raises(Interrupted), stops.at_once():
            pytest.fail("a request already recorded must stop before the block runs")
        signal.raise_signal(signal.SIGINT)  # deferred again after the inner block
        assert stops.requested_by == "SIGINT"


def test_an_ignored_sigint_stays_ignored() -> None:
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
    try:
        StopRequests().install()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN  # the kubelet's stop always counts
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Recorder(keras.callbacks.Callback):  # type: ignore[misc]
    """Logs the hooks Keras calls; sends SIGTERM to this process after one given training batch."""

    def __init__(self, signal_after: tuple[int, int]) -> None:
        super().__init__()
        self.signal_after = signal_after
        self.events: list[tuple[str, int, int]] = []
        self.epoch = -1

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.events.append(("batch", self.epoch, batch))
        if (self.epoch, batch) == self.signal_after:
            signal.raise_signal(signal.SIGTERM)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.events.append(("epoch_end", epoch, -1))


def test_fit_stops_at_the_next_batch_edge_without_ending_the_half_trained_epoch(stops: StopRequests) -> None:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = np.zeros((40, 4), np.float32), np.zeros(40, np.int64)
    recorder = Recorder(signal_after=(1, 2))  # 5 batches per epoch; the signal comes mid-epoch 2
    with stops.deferred(), pytest.raises(Interrupted, match="SIGTERM"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[SafeStop(stops), recorder])
    assert recorder.events[-1] == ("batch", 1, 2), "no batch may start after the signal"
    assert ("epoch_end", 0, -1) in recorder.events
    assert ("epoch_end", 1, -1) not in recorder.events, "the interrupted epoch must not count as finished"


class SignalAtBatchBegin(keras.callbacks.Callback):  # type: ignore[misc]
    """Sends SIGTERM to this process as one given batch begins, before its step runs."""

    def __init__(self, signal_at: tuple[int, int]) -> None:
        super().__init__()
        self.signal_at = signal_at
        self.epoch = -1
        self.trained: list[tuple[int, int]] = []
        self.ended: list[int] = []
        self.validation_batches = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.trained.append((self.epoch, batch))
        if (self.epoch, batch) == self.signal_at:
            signal.raise_signal(signal.SIGTERM)

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.validation_batches += 1

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.ended.append(epoch)


def tiny_classifier() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def test_fit_with_validation_stops_after_the_running_step_and_never_validates_the_half_epoch(
    stops: StopRequests,
) -> None:
    model = tiny_classifier()
    x, y = np.zeros((40, 4), np.float32), np.zeros(40, np.int64)
    probe = SignalAtBatchBegin(signal_at=(1, 2))  # 5 batches per epoch; the signal comes mid-epoch 2
    with stops.deferred(), pytest.raises(Interrupted, match="SIGTERM"):
        model.fit(
            x,
            y,
            batch_size=8,
            epochs=3,
            verbose=0,
            validation_data=(x[:16], y[:16]),
            callbacks=[SafeStop(stops), probe],
        )
    assert probe.trained[-1] == (1, 2), "the step that was starting ran; no later one"
    assert probe.ended == [0], "the interrupted epoch must not count as finished"
    assert probe.validation_batches == 2, "only the finished epoch was validated"


def test_a_request_before_fit_stops_it_before_its_first_step(stops: StopRequests) -> None:
    probe = SignalAtBatchBegin(signal_at=(-1, -1))
    with stops.deferred():
        signal.raise_signal(signal.SIGTERM)
        with pytest.raises(Interrupted):
            tiny_classifier().fit(
                np.zeros((8, 4), np.float32),
                np.zeros(8),
                epochs=1,
                verbose=0,
                callbacks=[SafeStop(stops), probe],
            )
    assert probe.trained == []


class SignalAtTestBatch(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self, signal_at: int) -> None:
        super().__init__()
        self.signal_at = signal_at
        self.batches = 0

    def _batch(self, batch: int) -> None:
        self.batches += 1
        if batch == self.signal_at:
            signal.raise_signal(signal.SIGTERM)

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batch(batch)

    def on_predict_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batch(batch)


@pytest.mark.parametrize("loop", ["evaluate", "predict"])
def test_evaluate_and_predict_stop_after_the_running_batch_and_return_nothing(
    stops: StopRequests, loop: str
) -> None:
    model = tiny_classifier()
    x, y = np.zeros((80, 4), np.float32), np.zeros(80, np.int64)
    probe = SignalAtTestBatch(signal_at=3)  # of 10 batches
    with stops.deferred(), pytest.raises(Interrupted, match="SIGTERM"):
        if loop == "evaluate":
            model.evaluate(x, y, batch_size=8, verbose=0, callbacks=[SafeStop(stops), probe])
        else:
            model.predict(x, batch_size=8, verbose=0, callbacks=[SafeStop(stops), probe])
    assert probe.batches == 4


def test_a_finished_loop_leaves_no_listener_behind(stops: StopRequests) -> None:
    """A later stop must not reach into a model whose loops are over (the handler would set its flags)."""
    model = tiny_classifier()
    x, y = np.zeros((16, 4), np.float32), np.zeros(16, np.int64)
    safe_stop = SafeStop(stops)
    with stops.deferred():
        model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y), callbacks=[safe_stop])
        model.evaluate(x, y, verbose=0, callbacks=[safe_stop])
        signal.raise_signal(signal.SIGTERM)
    assert not model.stop_training
