"""Writing each training's status: every change recomputes it with the pure reducer, changes within a
short window make one write, and a phase change or a retried trainer also makes an Event. Writes wait
while Jobs are being created (priority.py): a user waits for a Job, not for a status saying "Pending"."""

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from mnist_api import MnistTraining, Phase

from . import opmetrics
from .backoff import Backoff
from .clock import utc_now
from .kube import Kube
from .priority import CreationsFirst
from .reducer import MetricsView, reduce_status
from .state import Key, Store, Tracked

log = logging.getLogger(__name__)
FINAL_PHASES = {Phase.SUCCEEDED.value, Phase.FAILED.value}
RETRY_SECONDS = (5.0,)  # after a failed status write, as often as it takes
EventPoster = Callable[[Mapping[str, Any], str, str, str], None]
MetricsFor = Callable[[MnistTraining], MetricsView | None]


class StatusWriter:
    def __init__(
        self,
        store: Store,
        kube: Kube,
        post_event: EventPoster,
        metrics_for: MetricsFor,
        *,
        coalesce_seconds: float,
        creations: CreationsFirst | None = None,
        retry_seconds: tuple[float, ...] = RETRY_SECONDS,
        now: Callable[[], str] = utc_now,
    ) -> None:
        self.store = store
        self.kube = kube
        self.post_event = post_event
        self.metrics_for = metrics_for
        self.coalesce_seconds = coalesce_seconds
        self.creations = creations or CreationsFirst()
        self.retry_seconds = retry_seconds
        self._backoffs: dict[Key, Backoff] = {}
        self.now = now
        self._locks: dict[Key, asyncio.Lock] = {}
        self._due: set[Key] = set()  # trainings with a coalesced refresh on its way
        self._refreshes: set[asyncio.Task[None]] = set()

    def request_refresh(self, key: Key, *, at_once: bool = False) -> None:
        """Refresh the training's status soon: every change within ``coalesce_seconds`` makes one write.
        A new Job, its pod and the Job's first status change arrive within a few hundred ms and would
        otherwise make three writes (and three watch events back) per training. ``at_once`` skips that
        window, for new figures from a Pushgateway poll: the next poll is a whole interval away, so
        waiting would only add to the lag a user sees. Never waits for the write: the children's events
        reach the operator through one stream, which one slow write must not hold up."""
        if key in self._due:
            return
        self._due.add(key)
        delay = 0.0 if at_once else self.coalesce_seconds
        task = asyncio.create_task(self._refresh_after(key, delay), name=f"refresh {key[0]}/{key[1]}")
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def _refresh_after(self, key: Key, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self.creations.turn():
            self._due.discard(key)  # from here on, a new change asks for another refresh
            backoff = self._backoffs.setdefault(key, Backoff(self.retry_seconds))
            try:
                await self.refresh(key)
            except Exception as error:  # e.g. the API server is briefly unreachable: nothing may be lost
                retry_in = backoff.next_delay()
                log.warning("status of %s/%s not written (%s); retrying in %gs", *key, error, retry_in)
            else:
                backoff.reset()
                return
        await asyncio.sleep(retry_in)  # not in its turn: other writes go meanwhile
        self.request_refresh(key)

    async def refresh(self, key: Key) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self.store.get(key)
            if entry is None or entry.training is None or (entry.job is None and entry.waiting):
                return  # nothing to reduce yet, or the create handler's status says why there is no Job
            previous = entry.written_status or {}
            status = reduce_status(
                entry.training,
                entry.job,
                list(entry.pods.values()),
                self.metrics_for(entry.training),
                previous,
                self.now(),
                entry.workload,
            )
            if _same(status, previous):
                return
            # A merge patch keeps keys it does not mention: null out the ones that went away.
            patch = {**{k: None for k in previous if k not in status}, **status}
            await self.kube.patch_training_status(key[0], key[1], patch)
            opmetrics.STATUS_PATCHES.inc()
            entry.written_status = status
            self._announce(entry.training, entry, previous, status)

    def forget(self, key: Key) -> None:
        self._locks.pop(key, None)
        self._backoffs.pop(key, None)

    def _announce(
        self,
        training: MnistTraining,
        entry: Tracked,
        previous: Mapping[str, Any],
        status: Mapping[str, Any],
    ) -> None:
        before, after = previous.get("phase"), status.get("phase")
        if entry.created_job is not None:
            # One Event for a new training, not JobCreated and then Pending: `kubectl describe` shows the
            # Job's name and what the training waits for in one line, and a burst of creations costs the
            # API server one Event per training fewer. Another phase (a pod that started at once) still
            # gets its own Event below.
            message = f"created Job {entry.created_job}"
            if after == Phase.PENDING.value:
                message += f"; {status.get('message') or after}"
                before = after
            entry.created_job = None
            self.post_event(reference(training), "Normal", "JobCreated", message)
        retries_before, retries_after = previous.get("attempts") or 0, status.get("attempts") or 0
        if retries_after > max(retries_before, 1) and after not in FINAL_PHASES:
            opmetrics.TRAINER_RETRIES.inc()
            self.post_event(
                reference(training),
                "Warning",
                "TrainerRetried",
                f"attempt {retries_after}: {status.get('message')}",
            )
        if before == after:
            return
        kind = "Warning" if after == Phase.FAILED.value else "Normal"
        self.post_event(reference(training), kind, str(after), str(status.get("message") or after))
        if after in FINAL_PHASES:
            opmetrics.TRAININGS_FINISHED.labels(after).inc()

    async def stop(self) -> None:
        tasks = list(self._refreshes)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _same(status: Mapping[str, Any], previous: Mapping[str, Any]) -> bool:
    return dict(status) == {k: v for k, v in previous.items() if k in status or v is not None}


def reference(training: MnistTraining) -> dict[str, Any]:
    """What an Event names as its involved object."""
    meta = training.metadata
    return {
        "apiVersion": training.api_version,
        "kind": training.kind,
        "metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
    }
