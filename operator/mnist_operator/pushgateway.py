"""Reading and cleaning up the Pushgateway: one request per poll for every training.

``GET /api/v1/metrics`` returns every group with its labels, so one call per interval serves all
resources, whatever their number. ``parse_groups`` is pure; ``Poller`` holds the latest snapshot.
"""

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from mnist_api.metrics import GROUP_LABEL_NAMESPACE, GROUP_LABEL_TRAINING, GROUP_LABEL_UID

from . import opmetrics
from .reducer import MetricsView

log = logging.getLogger(__name__)
RunKey = tuple[str, str, str]  # namespace, name, uid
_SKIPPED = {"labels", "last_push_successful", "push_time_seconds", "push_failure_time_seconds"}


def parse_groups(groups: Iterable[Mapping[str, Any]]) -> dict[RunKey, dict[str, float]]:
    """Gauge values (unlabelled samples) of every group that carries a run's grouping key."""
    runs: dict[RunKey, dict[str, float]] = {}
    for group in groups:
        labels = group.get("labels") or {}
        try:
            key = (labels[GROUP_LABEL_NAMESPACE], labels[GROUP_LABEL_TRAINING], labels[GROUP_LABEL_UID])
        except KeyError:
            continue  # not one of ours (or the seeds' job-only groups)
        values: dict[str, float] = {}
        for name, family in group.items():
            if name in _SKIPPED or not isinstance(family, Mapping) or family.get("type") != "GAUGE":
                continue
            for sample in family.get("metrics") or []:
                extra = set(sample.get("labels") or {}) - set(labels) - {"instance"}
                if not extra:
                    with contextlib.suppress(KeyError, ValueError):
                        values[name] = float(sample["value"])
        runs.setdefault(key, {}).update(values)
    return runs


def group_path(job: str, namespace: str, name: str, uid: str) -> str:
    parts = ["job", job, GROUP_LABEL_NAMESPACE, namespace, GROUP_LABEL_TRAINING, name, GROUP_LABEL_UID, uid]
    return "/metrics/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)


@dataclass
class Poller:
    """Polls one Pushgateway; calls ``on_change`` with the runs whose figures changed, or with ``None``
    when the Pushgateway became unreachable or reachable again (every training using it is affected)."""

    url: str
    interval: float
    on_change: Callable[[str, set[RunKey] | None], Coroutine[Any, Any, None]]
    snapshot: dict[RunKey, dict[str, float]] = field(default_factory=dict)
    reachable: bool = True
    error: str | None = None
    polls: int = 0

    def view(self, key: RunKey) -> MetricsView:
        return MetricsView(self.snapshot.get(key, {}), self.reachable, self.error)

    async def poll_once(self, session: aiohttp.ClientSession) -> set[RunKey] | None:
        self.polls += 1
        try:
            async with session.get(
                self.url + "/api/v1/metrics", timeout=aiohttp.ClientTimeout(total=10)
            ) as reply:
                reply.raise_for_status()
                payload = await reply.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            opmetrics.PUSHGATEWAY_POLLS.labels("error").inc()
            was_reachable, self.reachable = self.reachable, False
            self.error = f"cannot read {self.url}: {type(error).__name__}: {error}"
            if was_reachable:
                log.warning("%s; keeping the last figures", self.error)
                return None
            return set()
        fresh = parse_groups(payload.get("data") or [])
        changed: set[RunKey] | None = {
            k for k in fresh.keys() | self.snapshot.keys() if fresh.get(k) != self.snapshot.get(k)
        }
        if not self.reachable:
            log.info("Pushgateway %s is reachable again", self.url)
            changed = None
        self.snapshot, self.reachable, self.error = fresh, True, None
        opmetrics.PUSHGATEWAY_POLLS.labels("ok").inc()
        return changed

    async def run(self) -> None:
        # The status writes a poll triggers run beside the loop, not inside it: a burst of 1,000 changed
        # runs must not delay the next poll (and every other training's figures) until it is written.
        pending: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession() as session:
            while True:
                changed = await self.poll_once(session)
                if changed is None or changed:
                    task = asyncio.create_task(self.on_change(self.url, changed))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                await asyncio.sleep(self.interval)


async def delete_group(url: str, job: str, namespace: str, name: str, uid: str) -> bool:
    """Forget a run's metrics; True when the Pushgateway answered (a missing group is fine)."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.delete(
                url + group_path(job, namespace, name, uid), timeout=aiohttp.ClientTimeout(total=10)
            ) as reply,
        ):
            return reply.status < 500
    except (aiohttp.ClientError, TimeoutError) as error:
        log.warning("could not delete the metrics of %s/%s from %s: %s", namespace, name, url, error)
        return False
