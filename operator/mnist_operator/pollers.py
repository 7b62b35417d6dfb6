"""The Pushgateways the operator reads: one shared Poller per URL (one request per interval for all the
trainings that push there), the figures each training's status shows, its group's delete when it goes,
and the sweep of groups whose training went while the operator was not looking."""

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mnist_api import MnistTraining

from . import opmetrics
from .config import BasicAuth, Config
from .kube import Kube
from .pushgateway import Poller, RunKey, delete_group
from .reducer import MetricsView
from .state import Key

log = logging.getLogger(__name__)
OnChange = Callable[[str, set[RunKey] | None], None]


class Pollers:
    def __init__(self, config: Config, kube: Kube, on_change: OnChange) -> None:
        """``on_change(url, runs)`` hears of new figures: ``runs`` whose figures changed, or None when
        the Pushgateway at ``url`` became unreachable or reachable again."""
        self.config = config
        self.kube = kube
        self.on_change = on_change
        self.pollers: dict[str, Poller] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.sweeper: asyncio.Task[None] | None = None

    def url_for(self, training: MnistTraining) -> str | None:
        return self._url(training.spec.metrics.pushgateway_url)

    def _url(self, override: str | None) -> str | None:
        return (override or self.config.pushgateway_url or "").rstrip("/") or None

    def auth_for(self, url: str) -> BasicAuth | None:
        # The operator's credentials go to its own Pushgateway only, never to a URL a training's author
        # chose (spec.metrics.pushgatewayUrl), who could otherwise collect them.
        return self.config.pushgateway_auth if url == self.config.pushgateway_url else None

    def watch(self, training: MnistTraining) -> None:
        """Poll the training's Pushgateway (once per URL, however many trainings push there)."""
        url = self.url_for(training)
        if url is not None:
            self._watch_url(url)

    def _watch_url(self, url: str) -> None:
        if url in self.pollers:
            return
        poller = Poller(url, self.config.poll_interval_seconds, self._changed, self.auth_for(url))
        self.pollers[url] = poller
        self.tasks[url] = asyncio.create_task(poller.run(), name=f"poll {url}")

    async def _changed(self, url: str, runs: set[RunKey] | None) -> None:
        self.on_change(url, runs)

    def metrics_for(self, training: MnistTraining) -> MetricsView | None:
        poller = self.pollers.get(self.url_for(training) or "")
        uid = training.metadata.uid
        if poller is None or not uid or poller.polls == 0:
            return None  # nothing to say yet, rather than "no metrics"
        return poller.view((training.metadata.namespace, training.metadata.name, uid))

    async def delete_metrics(self, body: Mapping[str, Any], key: Key) -> None:
        """The training is gone: delete its group. A failed delete is not retried here: the group
        outlives its resource, which is exactly what the next sweep looks for."""
        metadata, spec = body.get("metadata") or {}, body.get("spec") or {}
        metrics = spec.get("metrics") or {}
        url = self._url(metrics.get("pushgatewayUrl"))
        if url and metadata.get("uid"):
            job = metrics.get("job", "mnist")
            await delete_group(url, job, key[0], key[1], metadata["uid"], auth=self.auth_for(url))

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
                deleted += await delete_group(url, job, namespace, name, uid, auth=self.auth_for(url))
        return deleted

    async def stop(self) -> None:
        tasks: Iterable[asyncio.Task[None]] = [
            *self.tasks.values(),
            *([self.sweeper] if self.sweeper else []),
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
