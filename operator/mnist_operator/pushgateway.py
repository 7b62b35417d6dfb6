"""Reading and cleaning up the Pushgateway: one request per poll for every training.

``GET /api/v1/metrics`` returns every group with its labels, so one call per interval serves all
resources, whatever their number. ``parse_groups`` is pure; ``Poller`` holds the latest snapshot.
A Pushgateway that requires basic auth (``--web.config.file``) is read and cleaned with the operator's
own credentials (``Config.pushgateway_auth``), sent to the operator's default Pushgateway only.
"""

import asyncio
import base64
import contextlib
import logging
import urllib.parse
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from mnist_api.metrics import GROUP_LABEL_NAMESPACE, GROUP_LABEL_TRAINING, GROUP_LABEL_UID

from . import opmetrics
from .config import BasicAuth
from .reducer import MetricsView

log = logging.getLogger(__name__)
RunKey = tuple[str, str, str]  # namespace, name, uid
_SKIPPED = {"labels", "last_push_successful", "push_time_seconds", "push_failure_time_seconds"}


def _auth_headers(auth: BasicAuth | None) -> dict[str, str]:
    if auth is None:
        return {}
    token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def _run_key(labels: Mapping[str, str]) -> RunKey | None:
    try:
        return labels[GROUP_LABEL_NAMESPACE], labels[GROUP_LABEL_TRAINING], labels[GROUP_LABEL_UID]
    except KeyError:
        return None  # not one of ours (or the seeds' job-only groups)


def parse_groups(groups: Iterable[Mapping[str, Any]]) -> dict[RunKey, dict[str, float]]:
    """Gauge values (unlabelled samples) of every group that carries a run's grouping key."""
    runs: dict[RunKey, dict[str, float]] = {}
    for group in groups:
        labels = group.get("labels") or {}
        if (key := _run_key(labels)) is None:
            continue
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


def group_jobs(groups: Iterable[Mapping[str, Any]]) -> dict[RunKey, str]:
    """The ``job`` label of every run's group: with the run's key, the path that deletes it."""
    return {
        key: str(labels.get("job", ""))
        for group in groups
        if (key := _run_key(labels := group.get("labels") or {})) is not None
    }


def describe_http_error(url: str, status: int, reason: str | None) -> str:
    """One line for the status and the log; says what to check when the Pushgateway wants credentials."""
    text = f"{url} answered HTTP {status} {reason or ''}".rstrip()
    if status in (401, 403):
        text += (
            " (the Pushgateway requires basic auth: give the operator its credentials, "
            "MNIST_OPERATOR_PUSHGATEWAY_USERNAME and _PASSWORD; see docs/operator.md)"
        )
    return text


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
    auth: BasicAuth | None = None
    snapshot: dict[RunKey, dict[str, float]] = field(default_factory=dict)
    jobs: dict[RunKey, str] = field(default_factory=dict)
    reachable: bool = True
    error: str | None = None
    polls: int = 0

    def view(self, key: RunKey) -> MetricsView:
        return MetricsView(self.snapshot.get(key, {}), self.reachable, self.error)

    async def poll_once(self, session: aiohttp.ClientSession) -> set[RunKey] | None:
        self.polls += 1
        groups = await self._fetch(session)
        if isinstance(groups, str):
            opmetrics.PUSHGATEWAY_POLLS.labels("error").inc()
            was_reachable, self.reachable = self.reachable, False
            self.error = groups
            if was_reachable:
                log.warning("%s; keeping the last figures", self.error)
                return None
            return set()
        fresh = parse_groups(groups)
        self.jobs = group_jobs(groups)
        changed: set[RunKey] | None = {
            k for k in fresh.keys() | self.snapshot.keys() if fresh.get(k) != self.snapshot.get(k)
        }
        if not self.reachable:
            log.info("Pushgateway %s is reachable again", self.url)
            changed = None
        self.snapshot, self.reachable, self.error = fresh, True, None
        opmetrics.PUSHGATEWAY_POLLS.labels("ok").inc()
        return changed

    async def _fetch(self, session: aiohttp.ClientSession) -> list[Mapping[str, Any]] | str:
        """Every group the Pushgateway holds, or why it could not be read."""
        try:
            async with session.get(
                self.url + "/api/v1/metrics",
                timeout=aiohttp.ClientTimeout(total=10),
                headers=_auth_headers(self.auth),
            ) as reply:
                if reply.status >= 400:
                    return describe_http_error(self.url, reply.status, reply.reason)
                payload = await reply.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            return f"cannot read {self.url}: {type(error).__name__}: {error}"
        groups: list[Mapping[str, Any]] = payload.get("data") or []
        return groups

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


async def delete_group(
    url: str, job: str, namespace: str, name: str, uid: str, *, auth: BasicAuth | None = None
) -> bool:
    """Forget a run's metrics; True once the Pushgateway confirmed it (2xx: it answers 202 whether or
    not the group existed). Anything else (401/403 without the right credentials, a 404 from a wrong
    URL, no answer) is logged, counted, and left for the next sweep (``Pollers.sweep_orphans``)."""
    run = f"{namespace}/{name} (uid {uid})"
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.delete(
                url + group_path(job, namespace, name, uid),
                timeout=aiohttp.ClientTimeout(total=10),
                headers=_auth_headers(auth),
            ) as reply,
        ):
            failure = (
                None if 200 <= reply.status < 300 else describe_http_error(url, reply.status, reply.reason)
            )
    except (aiohttp.ClientError, TimeoutError) as error:
        failure = f"cannot reach {url}: {type(error).__name__}: {error}"
    if failure is None:
        opmetrics.PUSHGATEWAY_DELETES.labels("ok").inc()
        log.info("deleted the metrics of %s from %s", run, url)
        return True
    opmetrics.PUSHGATEWAY_DELETES.labels("error").inc()
    # The failure names the URL.
    log.warning("could not delete the metrics of %s: %s; the next sweep retries", run, failure)
    return False
