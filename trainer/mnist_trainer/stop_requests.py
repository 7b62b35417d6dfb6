"""SIGTERM and SIGINT, honoured only where unwinding the training is safe.

Python runs a signal handler between two bytecodes of the main thread, so an exception raised there
surfaces wherever the trainer happens to be. Inside TensorFlow's C++ bindings (a tensor conversion at
the start of an epoch, in the case CI caught) that unwinding crashed the process with SIGSEGV: exit
-11 instead of 143, and no log line saying why. So while TensorFlow runs the handler only records the
request, and the trainer raises it at points it controls: between stages, and in Keras' loops at the next
batch edge (``SafeStop``, a Keras callback, has the handler set the model's own stop flags, and raises at
the loop's next hook). Pure-Python stretches that may block for long, such as downloads, still stop at
once.

This module imports nothing heavy: ``__main__`` installs the handler before TensorFlow loads.
"""

import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType

from .errors import Interrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
    """Records stop signals; raises ``Interrupted`` at once or at the next ``check()``."""

    def __init__(self) -> None:
        self.requested_by: str | None = None
        self._raise_at_once = True
        self._listeners: list[Callable[[], None]] = []

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            # An ignored SIGINT stays ignored, as Python itself does: a shell starts background jobs so
            # that Ctrl-C at the terminal does not reach them.
            if signum == signal.SIGINT and signal.getsignal(signum) is signal.SIG_IGN:
                continue
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.requested_by = signal.Signals(signum).name
        for listener in list(self._listeners):
            listener()
        if self._raise_at_once:
            raise Interrupted(self.requested_by)

    def listen(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` from the signal handler when a stop is requested; returns what removes it.

        It runs between two bytecodes of the main thread, wherever that is: it must only set flags.
        """
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def check(self) -> None:
        """A safe point: stop here if a signal came in since."""
        if self.requested_by is not None:
            raise Interrupted(self.requested_by)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """TensorFlow runs inside: signals wait for the next ``check()``.

        None at the block's end: work that finished after the signal came in is reported as finished.
        """
        outer, self._raise_at_once = self._raise_at_once, False
        try:
            yield
        finally:
            self._raise_at_once = outer

    @contextlib.contextmanager
    def at_once(self) -> Iterator[None]:
        """Pure Python inside (no TensorFlow): a signal stops it immediately."""
        self.check()
        outer, self._raise_at_once = self._raise_at_once, True
        try:
            yield
        finally:
            self._raise_at_once = outer
