"""Job creations first: status writes (and the Events that follow them) wait while Jobs are being created.

When many trainings arrive at once, every request the operator makes competes for the same API server
(and, in the operator, the same worker threads) with the Job creations users wait for. A status write
that goes first delays a Job; a Job that goes first delays only a status that says "Pending" anyway. At
1,000 trainings created together, letting the status writes of the first trainings interleave with the
Job creations of the later ones made the slowest Job wait twice as long as a bare kopf operator's
(docs/benchmarks.md, section 5).

A status never waits indefinitely: after ``max_wait`` seconds, while creations still go on, status writes
proceed ``trickle`` at a time (the API server's audit log of such a burst showed them flooding in at
once when a plain timeout expired, slowing the Jobs still being created).
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

# Long enough to cover a burst of a thousand creations on a small control plane, short enough that a
# status stays fresh under a stream of creations that does not end.
MAX_WAIT_SECONDS = 30.0
TRICKLE = 1


class CreationsFirst:
    def __init__(self, max_wait: float = MAX_WAIT_SECONDS, trickle: int = TRICKLE) -> None:
        self.max_wait = max_wait
        self.trickle = trickle
        self._active = 0
        self._trickling = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._turns = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def creating(self) -> AsyncIterator[None]:
        """Around one training's Job (and Service) creation."""
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()
                async with self._turns:
                    self._turns.notify_all()  # the trickle's waiters go all at once now

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Around one status write: at once when no creation is under way; else after the creations,
        or after ``max_wait`` seconds as one of ``trickle`` writes at a time."""
        if self._active:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self.max_wait)
        trickling = False
        if self._active:
            async with self._turns:
                await self._turns.wait_for(lambda: not self._active or self._trickling < self.trickle)
                if self._active:
                    self._trickling += 1
                    trickling = True
        try:
            yield
        finally:
            if trickling:
                async with self._turns:
                    self._trickling -= 1
                    self._turns.notify()
