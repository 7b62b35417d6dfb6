"""Kubernetes Events about trainings, posted by the operator itself.

``kopf.event`` works only inside kopf's own per-object handler tasks (it finds its queue through context
variables set there), and Job and pod changes are handled outside them (children.py), as are the
Pushgateway's. So every Event goes through here: built by a pure function, posted in the background, and
never allowed to fail a reconcile (an Event is a courtesy; the status is the record).
"""

import asyncio
import datetime
import logging
from collections.abc import Callable, Mapping
from typing import Any

from .kube import Kube

log = logging.getLogger(__name__)
MAX_MESSAGE = 1024  # what kubectl shows in full; the API server itself allows more


def build_event(
    involved: Mapping[str, Any],
    event_type: str,
    reason: str,
    message: str,
    *,
    now: datetime.datetime,
    component: str,
    instance: str,
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (a resource body or a reference with apiVersion, kind and
    metadata), in the form ``kubectl get events`` and ``kubectl describe`` read."""
    metadata = involved.get("metadata") or {}
    namespace = metadata.get("namespace") or "default"
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": namespace, "generateName": f"{metadata.get('name') or 'event'}."},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": metadata.get("name"),
            "namespace": namespace,
            "uid": metadata.get("uid"),
        },
        "type": event_type,
        "reason": reason,
        "message": message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…",
        "source": {"component": component},  # the FROM column of `kubectl describe`
        "reportingComponent": component,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventRecorder:
    """Called like ``recorder(body, "Normal", "JobCreated", message)``; posts in a background task."""

    def __init__(
        self,
        kube: Kube,
        *,
        component: str,
        instance: str,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.kube = kube
        self.component = component
        self.instance = instance
        self.clock = clock
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, involved: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        event = build_event(
            involved,
            event_type,
            reason,
            message,
            now=self.clock(),
            component=self.component,
            instance=self.instance,
        )
        task = asyncio.create_task(self._post(event), name=f"event {reason}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, event: dict[str, Any]) -> None:
        try:
            await self.kube.create_event(event["metadata"]["namespace"], event)
        except Exception as error:
            log.warning("could not post the %s Event: %s", event["reason"], error)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait for the Events on their way (at shutdown: the last phase change is worth its Event)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
