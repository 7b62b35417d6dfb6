"""The operator's behaviour, between kopf's handlers (thin) and the pure builders and reducer.

Job and pod changes arrive from the watch streams into the Store; Pushgateway figures arrive from one
shared Poller per Pushgateway; every change recomputes the training's status with the pure reducer and
writes it only when it differs from what was last written.
"""

import asyncio
import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mnist_api import MnistTraining, Phase

from . import opmetrics
from .builders import build_trainer_job
from .config import BasicAuth, Config
from .kube import Kube
from .naming import job_name
from .pushgateway import Poller, RunKey, delete_group
from .reducer import MetricsView, reduce_status
from .state import ChildKind, Key, Store, training_key, validate_training

log = logging.getLogger(__name__)
FINAL_PHASES = {Phase.SUCCEEDED.value, Phase.FAILED.value}
RETRY_SECONDS = 5.0  # after a failed status write
EventPoster = Callable[[Mapping[str, Any], str, str, str], None]


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Operator:
    config: Config
    kube: Kube
    post_event: EventPoster
    now: Callable[[], str] = utc_now
    store: Store = field(default_factory=Store)
    pollers: dict[str, Poller] = field(default_factory=dict)
    poller_tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    sweeper: asyncio.Task[None] | None = None
    _locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    _due: set[Key] = field(default_factory=set)  # trainings with a coalesced refresh on its way
    _refreshes: set[asyncio.Task[None]] = field(default_factory=set)

    # -- the resource -----------------------------------------------------------------------------
    async def ensure_job(self, body: Mapping[str, Any]) -> str:
        """Create the training's Job unless it exists; idempotent across operator restarts."""
        training = validate_training(body)
        job, created = await self.kube.create_job(build_trainer_job(training, self.config))
        owners = [ref.get("uid") for ref in job["metadata"].get("ownerReferences") or []]
        if training.metadata.uid not in owners:
            raise RuntimeError(
                f"Job {job['metadata']['name']} exists but belongs to another resource (uid {owners}); "
                "it will be garbage-collected, retrying"
            )
        if created:
            opmetrics.TRAININGS_CREATED.inc()
            self.post_event(body, "Normal", "JobCreated", f"created Job {job['metadata']['name']}")
        # The status follows from the Job's own watch event; writing it here too would only race kopf's
        # bookkeeping patch of the same object.
        self._track(body)
        self._watch_pushgateway(training)
        return str(job["metadata"]["name"])

    async def set_suspended(self, body: Mapping[str, Any], suspend: bool) -> None:
        training = validate_training(body)
        await self.kube.patch_job_suspend(training.metadata.namespace, job_name(training), suspend)

    async def training_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        if event_type == "DELETED":
            await self.forget(body)
            return
        if event_type == "MODIFIED" and self.store.unchanged(body):
            # Validating and reducing again would find what we wrote: at 1,000 trainings on a real API
            # server these echoes were most of the operator's events (bench/operator_scale.py).
            return
        key = self._track(body)
        entry = self.store.get(key)
        if entry is None or entry.training is None:
            return
        self._watch_pushgateway(entry.training)
        if entry.job is None and not entry.written_status:
            # A brand-new resource: its first status comes with its Job's first event. Writing "no Job
            # yet" here would queue a PATCH in front of the Job's creation and race kopf's bookkeeping
            # patch of the same object (bench/operator_scale.py measured 3x slower creates at N=1,000).
            return
        await self.request_refresh(key)

    def _track(self, body: Mapping[str, Any]) -> Key:
        """Store the resource; one seen for the first time (e.g. after a restart) counts in its phase."""
        known = self.store.get(training_key(body))
        key = self.store.update_training(body)
        phase = (body.get("status") or {}).get("phase")
        if (known is None or known.training is None) and phase:
            opmetrics.TRAININGS_BY_PHASE.labels(phase).inc()
        return key

    async def forget(self, body: Mapping[str, Any]) -> None:
        """The resource is gone: its children go by garbage collection, its metrics we delete here."""
        metadata, spec = body.get("metadata") or {}, body.get("spec") or {}
        key = training_key(body)
        entry = self.store.get(key)
        if entry is not None and entry.written_status and entry.written_status.get("phase"):
            opmetrics.TRAININGS_BY_PHASE.labels(entry.written_status["phase"]).dec()
        self.store.forget(key)
        url = self._pushgateway_url((spec.get("metrics") or {}).get("pushgatewayUrl"))
        if url and metadata.get("uid"):
            job = (spec.get("metrics") or {}).get("job", "mnist")
            # A failed delete is not retried here: the group outlives its resource, which is exactly what
            # the next sweep looks for.
            await delete_group(url, job, key[0], key[1], metadata["uid"], auth=self._auth_for(url))

    # -- children ---------------------------------------------------------------------------------
    async def child_event(self, kind: ChildKind, event_type: str | None, body: Mapping[str, Any]) -> None:
        key = self.store.update_child(kind, event_type, body)
        if key is not None:
            await self.request_refresh(key)

    # -- metrics ----------------------------------------------------------------------------------
    def _pushgateway_url(self, override: str | None) -> str | None:
        return (override or self.config.pushgateway_url or "").rstrip("/") or None

    def _auth_for(self, url: str) -> BasicAuth | None:
        # The operator's credentials go to its own Pushgateway only, never to a URL a training's author
        # chose (spec.metrics.pushgatewayUrl), who could otherwise collect them.
        return self.config.pushgateway_auth if url == self.config.pushgateway_url else None

    def _watch_pushgateway(self, training: MnistTraining) -> None:
        url = self._pushgateway_url(training.spec.metrics.pushgateway_url)
        if url is not None:
            self._watch_url(url)

    def _watch_url(self, url: str) -> None:
        if url in self.pollers:
            return
        poller = Poller(url, self.config.poll_interval_seconds, self._metrics_changed, self._auth_for(url))
        self.pollers[url] = poller
        self.poller_tasks[url] = asyncio.create_task(poller.run(), name=f"poll {url}")

    def start(self) -> None:
        """Poll the default Pushgateway from the start (a sweep needs no training to exist) and sweep."""
        if self.config.pushgateway_url:
            self._watch_url(self.config.pushgateway_url)
        self.sweeper = asyncio.create_task(self._sweep_forever(), name="sweep Pushgateway groups")

    async def _sweep_forever(self) -> None:
        # The first sweep follows the first poll, so groups of trainings deleted while the operator was
        # down go at start-up; later ones every sweep_interval_seconds.
        await asyncio.sleep(self.config.poll_interval_seconds * 2)
        while True:
            try:
                await self.sweep_orphans()
            except Exception as error:  # the API server briefly away: the next sweep tries again
                log.warning(
                    "sweep of Pushgateway groups failed (%s); next in %gs",
                    error,
                    self.config.sweep_interval_seconds,
                )
            await asyncio.sleep(self.config.sweep_interval_seconds)

    async def sweep_orphans(self) -> int:
        """Delete the Pushgateway groups of runs whose resource no longer exists; returns how many.

        The groups are read before the resources are listed: a group read was pushed by a run whose
        resource existed then, so if that resource still exists the list has its uid.
        """
        groups = {url: dict(poller.jobs) for url, poller in self.pollers.items() if poller.reachable}
        if not any(groups.values()):
            return 0
        live = await self.kube.training_uids(self.config.namespaces)
        deleted = 0
        for url, jobs in groups.items():
            for (namespace, name, uid), job in jobs.items():
                if uid in live or (self.config.namespaces and namespace not in self.config.namespaces):
                    continue  # a live run, or another operator's namespace
                opmetrics.ORPHANED_GROUPS.inc()
                log.info(
                    "metrics of %s/%s (uid %s) outlived their training; deleting them", namespace, name, uid
                )
                deleted += await delete_group(url, job, namespace, name, uid, auth=self._auth_for(url))
        return deleted

    async def _metrics_changed(self, url: str, runs: set[RunKey] | None) -> None:
        if runs is None:  # reachability changed: every training on this Pushgateway says so
            keys = {
                key
                for key in self.store.keys()  # noqa: SIM118 - Store is not a dict
                if (entry := self.store.get(key)) is not None
                and entry.training is not None
                and self._pushgateway_url(entry.training.spec.metrics.pushgateway_url) == url
            }
        else:
            keys = {(namespace, name) for namespace, name, _ in runs}
        await asyncio.gather(*(self.request_refresh(key) for key in keys))

    def metrics_for(self, training: MnistTraining) -> MetricsView | None:
        url = self._pushgateway_url(training.spec.metrics.pushgateway_url)
        poller = self.pollers.get(url or "")
        uid = training.metadata.uid
        if poller is None or not uid or poller.polls == 0:
            return None  # nothing to say yet, rather than "no metrics"
        return poller.view((training.metadata.namespace, training.metadata.name, uid))

    # -- status -----------------------------------------------------------------------------------
    async def request_refresh(self, key: Key) -> None:
        """Refresh the training's status soon: every change within ``status_coalesce_seconds`` makes one
        write. A new Job, its pod and the Job's first status change arrive within a few hundred ms and
        used to make three writes (and three watch events back) per training. Never waits for the write:
        the children's events reach the operator through one stream, which one slow write must not hold up.
        """
        if key in self._due:
            return
        self._due.add(key)
        window = self.config.status_coalesce_seconds
        task = asyncio.create_task(self._refresh_after(key, window), name=f"refresh {key[0]}/{key[1]}")
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def _refresh_after(self, key: Key, delay: float) -> None:
        await asyncio.sleep(delay)
        self._due.discard(key)  # from here on, a new change asks for another refresh
        try:
            await self.refresh(key)
        except Exception as error:  # e.g. the API server is briefly unreachable: nothing may be lost
            log.warning("status of %s/%s not written (%s); retrying in %gs", *key, error, RETRY_SECONDS)
            await asyncio.sleep(RETRY_SECONDS)
            await self.request_refresh(key)

    async def refresh(self, key: Key) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self.store.get(key)
            if entry is None or entry.training is None:
                return
            previous = entry.written_status or {}
            status = reduce_status(
                entry.training,
                entry.job,
                list(entry.pods.values()),
                self.metrics_for(entry.training),
                previous,
                self.now(),
            )
            if _same(status, previous):
                return
            # A merge patch keeps keys it does not mention: null out the ones that went away.
            patch = {**{k: None for k in previous if k not in status}, **status}
            await self.kube.patch_training_status(key[0], key[1], patch)
            opmetrics.STATUS_PATCHES.inc()
            entry.written_status = status
            self._announce(entry.training, previous, status)

    def _announce(
        self, training: MnistTraining, previous: Mapping[str, Any], status: Mapping[str, Any]
    ) -> None:
        before, after = previous.get("phase"), status.get("phase")
        retries_before, retries_after = previous.get("attempts") or 0, status.get("attempts") or 0
        if retries_after > max(retries_before, 1) and after not in FINAL_PHASES:
            opmetrics.TRAINER_RETRIES.inc()
            self.post_event(
                _ref(training),
                "Warning",
                "TrainerRetried",
                f"attempt {retries_after}: {status.get('message')}",
            )
        if before == after:
            return
        kind = "Warning" if after == Phase.FAILED.value else "Normal"
        self.post_event(_ref(training), kind, str(after), str(status.get("message") or after))
        if after in FINAL_PHASES:
            opmetrics.TRAININGS_FINISHED.labels(after).inc()
        # Moved from one phase to the other: O(1) per transition, whatever the number of trainings.
        if before:
            opmetrics.TRAININGS_BY_PHASE.labels(before).dec()
        opmetrics.TRAININGS_BY_PHASE.labels(after).inc()

    # -- cleanup ----------------------------------------------------------------------------------
    async def expire_if_due(self, body: Mapping[str, Any]) -> bool:
        """Delete a finished training once ``spec.runPolicy.ttlSecondsAfterFinished`` has passed."""
        training = validate_training(body)
        ttl = training.spec.run_policy.ttl_seconds_after_finished
        status = body.get("status") or {}
        finished = status.get("completionTime")
        uid = training.metadata.uid
        if ttl is None or status.get("phase") not in FINAL_PHASES or not finished or not uid:
            return False
        done = datetime.datetime.fromisoformat(str(finished).replace("Z", "+00:00"))
        if datetime.datetime.now(datetime.UTC) < done + datetime.timedelta(seconds=ttl):
            return False
        await self.kube.delete_training(training.metadata.namespace, training.metadata.name, uid)
        return True

    async def stop(self) -> None:
        tasks = [*self.poller_tasks.values(), *self._refreshes, *([self.sweeper] if self.sweeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _same(status: Mapping[str, Any], previous: Mapping[str, Any]) -> bool:
    return dict(status) == {k: v for k, v in previous.items() if k in status or v is not None}


def _ref(training: MnistTraining) -> dict[str, Any]:
    meta = training.metadata
    return {
        "apiVersion": training.api_version,
        "kind": training.kind,
        "metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
    }
