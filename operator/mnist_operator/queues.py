"""Kueue's word on queued trainings. A training labelled with a LocalQueue (``kueue.x-k8s.io/queue-name``)
gets a suspended Job, which Kueue admits by unsuspending it; until then the status says Queued and why,
in the words of the Job's Workload (its QuotaReserved, Admitted and Evicted conditions).

Workloads are read, not watched: every poll interval, and only while some training waits, one list per
namespace that holds a waiting training. Without Kueue there is nothing to watch (its CRD is absent), and
a cluster's Workloads are mostly other teams' whose events the operator would only discard.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .config import Config
from .kube import ApiError, Kube
from .state import Key, Store, workload_summary

log = logging.getLogger(__name__)


class Queues:
    def __init__(self, config: Config, kube: Kube, store: Store, on_change: Callable[[Key], None]) -> None:
        """``on_change(key)`` hears that a queued training's Workload changed."""
        self.config = config
        self.kube = kube
        self.store = store
        self.on_change = on_change
        self.task: asyncio.Task[None] | None = None
        self._warned: set[str] = set()

    async def check(self) -> None:
        """Read the Workloads of every waiting training's namespace once; refresh those that changed."""
        waiting = self.store.queued()
        self.store.drop_workloads_except(set(waiting.values()))
        for namespace in sorted({ns for ns, _ in waiting}):
            try:
                items = await self.kube.list_workloads(namespace)
            except ApiError as error:
                if namespace not in self._warned:  # e.g. RBAC without workloads: once per namespace
                    log.warning("cannot list Kueue Workloads in %s: %s", namespace, error)
                    self._warned.add(namespace)
                continue
            by_job = {}
            for item in items or []:
                summary = workload_summary(item)
                if summary["job"]:
                    by_job[summary["job"]] = summary
            for (job_namespace, job), key in waiting.items():
                if job_namespace == namespace and self.store.set_workload(key, by_job.get(job)):
                    self.on_change(key)

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # the API server briefly unreachable: try again next interval
                log.exception("reading Kueue Workloads failed")
            await asyncio.sleep(self.config.poll_interval_seconds)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="kueue workloads")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
