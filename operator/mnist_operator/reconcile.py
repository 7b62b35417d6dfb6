"""The operator's behaviour, assembled: kopf's handlers (thin) call :class:`Operator`, which hands each
call to the one part that does that job.

- :class:`~.trainings.Trainings`: creating each training's Job, honouring edits, forgetting deleted
  trainings, deleting finished ones after their TTL;
- :class:`~.status_writer.StatusWriter`: the status, recomputed by the pure reducer on every change of
  the training, its Job, its pods or its figures; coalesced writes and Events;
- :class:`~.pollers.Pollers`: one Poller per Pushgateway, the figures each status shows, the sweep of
  groups whose training is gone.

Job and pod changes arrive from the watch streams (children.py) into the shared Store (state.py).
"""

from collections.abc import Callable, Mapping
from typing import Any

from . import opmetrics
from .clock import utc_now
from .config import Config
from .kube import Kube
from .pollers import Pollers
from .priority import CreationsFirst
from .pushgateway import RunKey
from .queues import Queues
from .state import ChildKind, Store
from .status_writer import EventPoster, StatusWriter
from .trainings import Trainings


class Operator:
    def __init__(
        self, config: Config, kube: Kube, post_event: EventPoster, now: Callable[[], str] = utc_now
    ) -> None:
        self.config = config
        self.store = Store()
        self.pollers = Pollers(config, kube, self._metrics_changed)
        self.creations = CreationsFirst()
        self.status = StatusWriter(
            self.store,
            kube,
            post_event,
            self.pollers.metrics_for,
            coalesce_seconds=config.status_coalesce_seconds,
            creations=self.creations,
            now=now,
        )
        self.trainings = Trainings(
            config,
            kube,
            self.store,
            status=self.status,
            pollers=self.pollers,
            post_event=post_event,
            creations=self.creations,
        )
        self.queues = Queues(config, kube, self.store, self.status.request_refresh)
        # The per-phase gauge is counted from the store when Prometheus scrapes, not kept by hand.
        opmetrics.PHASES.source = self.phases

    def phases(self) -> list[str]:
        """The phase of every training the operator knows (called from the metrics server's thread:
        ``Store.keys`` copies the keys in one step)."""
        entries = (self.store.get(key) for key in self.store.keys())  # noqa: SIM118 - not a dict
        written = [
            entry.written_status for entry in entries if entry is not None and entry.training is not None
        ]
        return [str(status["phase"]) for status in written if status and status.get("phase")]

    # -- what kopf's handlers and the children's watches call ---------------------------------------
    async def ensure_job(self, body: Mapping[str, Any]) -> str:
        return await self.trainings.ensure_job(body)

    async def set_suspended(self, body: Mapping[str, Any], suspend: bool) -> None:
        await self.trainings.set_suspended(body, suspend)

    async def training_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        await self.trainings.training_event(event_type, body)

    async def child_event(self, kind: ChildKind, event_type: str | None, body: Mapping[str, Any]) -> None:
        self.trainings.child_event(kind, event_type, body)

    async def expire_if_due(self, body: Mapping[str, Any]) -> bool:
        return await self.trainings.expire_if_due(body)

    def start(self) -> None:
        self.pollers.start()
        self.queues.start()

    async def stop(self) -> None:
        await self.queues.stop()
        await self.pollers.stop()
        await self.status.stop()

    def _metrics_changed(self, url: str, runs: set[RunKey] | None) -> None:
        # None: the Pushgateway went away or came back, which every training reading it says.
        keys = self.trainings.trainings_on(url) if runs is None else {(ns, name) for ns, name, _ in runs}
        for key in keys:
            self.status.request_refresh(key, at_once=True)
