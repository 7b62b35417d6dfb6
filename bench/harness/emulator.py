"""kmock as the API server of a benchmark, with server-side timestamps of what the operator does.

Timing happens inside the emulator (one process, one monotonic clock, no watch client of our own) so a
Job's "appeared" time is when kmock stored it, not when some observer noticed it.

Three departures from stock kmock 0.8, each explained where it is made:

* served requests leave kmock's request log (kmock matches each request against the whole log: O(R²));
* named lookups go by key instead of scanning every object (O(N) per request);
* optionally, every write gets a ``metadata.resourceVersion``, as from a real API server, so kopf's
  consistency check (which waits for the version of its own patch) can work.

The first two change what a request costs, never what it answers.
"""

import time
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from mnist_api.resource import GROUP, PLURAL, VERSION

from .recording import HARNESS_HEADER, RecordQueries, Seen

TRAININGS = f"{GROUP}/{VERSION}/{PLURAL}"
JOBS = "batch/v1/jobs"


@attrs.define(kw_only=True)
class TimedEmulator(RecordQueries, kmock.KubernetesEmulator):
    """A KubernetesEmulator that stamps creations and status writes and keeps a light request log.

    kmock keeps every request in full already; we keep our own compact log so counting needs neither
    kmock's private list nor a copy of thousands of request bodies.
    """

    created: dict[tuple[str, str, str], float] = attrs.field(factory=dict)
    """(plural, namespace, name) -> when the object was first stored."""
    epochs: dict[tuple[str, str, int], float] = attrs.field(factory=dict)
    """(namespace, name, epoch) -> when a status write first carried ``status.epoch == epoch``."""
    uids: dict[tuple[str, str], str] = attrs.field(factory=dict)
    seen: list[Seen] = attrs.field(factory=list)
    last_request: float = 0.0
    resource_versions: bool = False
    """Stamp ``metadata.resourceVersion`` on every write, as a real API server does. kmock sets none,
    so kopf cannot recognise the event of its own bookkeeping patch and treats an older event of the
    same object as a fresh state (see docs/benchmarks.md); with versions its consistency check works."""
    _version: int = 0

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        now = time.monotonic()
        plural = request.resource.plural if request.resource is not None else ""
        action = request.action.value if request.action is not None else ""
        if HARNESS_HEADER not in request.headers:  # the operator's request, not the harness's
            self.last_request = now
            self.seen.append(Seen(now, request.method.value, action, str(plural), request.subresource or ""))
        writes = (kmock.action.CREATE, kmock.action.UPDATE)
        if self.resource_versions and request.action in writes and isinstance(request.data, dict):
            # kmock stores a create's body and merges a patch's body as they are: the version rides in.
            self._version += 1
            request.data.setdefault("metadata", {})["resourceVersion"] = str(self._version)
        try:
            response = await super()._handle(request)
        finally:
            self._forget(request)
        # Reached only when kmock stored the change: a 409 or 404 raises inside super()._handle().
        data = request.data if isinstance(request.data, dict) else {}
        if request.action == kmock.action.CREATE and response.status < 300:
            meta = data.get("metadata") or {}
            key = (str(plural), request.namespace or meta.get("namespace") or "", meta.get("name") or "")
            self.created.setdefault(key, time.monotonic())
        elif request.action == kmock.action.UPDATE and plural == PLURAL and response.status < 300:
            self.note_status(
                request.namespace or "", request.name or "", data.get("status"), time.monotonic()
            )
        return response

    def _forget(self, request: kmock.Request) -> None:
        """Drop a served request from kmock's own request log.

        kmock 0.8 decides which reaction serves a request with ``request in reaction_view``, and a view
        answers that by filtering EVERY request the server has logged so far: each request costs
        O(requests so far), a run O(R²). At 1,000 resources the baseline alone had 967 of 1,000 Jobs
        after 10 minutes; at 300 it took 225 s instead of 4.6 s, 92% of it in kmock's filtering. A served
        request is never matched again, so keeping only in-flight ones (long-lived watches included)
        changes no answer and makes each request O(1) again. The benchmark reads ``seen`` instead."""
        log = self._requests
        for index in range(len(log) - 1, -1, -1):
            if log[index] is request:  # by identity: attrs equality would compare whole bodies
                del log[index]
                return

    def _KubernetesEmulator__get_objs(  # noqa: N802 - overrides kmock's name-mangled private method
        self, request: kmock.Request, strict: bool
    ) -> list[kmock.Object]:
        """Find the object of a named request by key, not by scanning every object.

        kmock 0.8 answers every fetch, patch, delete and create by checking all stored objects: O(N)
        per request at N resources (plus their Jobs), which at 1,000 resources would make the
        emulator, not the operator, what the benchmark measures. A strict named lookup is a dict key
        (kmock's resource hashes by group, version and plural, as it compares); lists and watches,
        which do want every object, keep kmock's own scan."""
        if strict and request.name is not None and request.resource is not None:
            key = (request.resource, request.namespace, request.name)
            return [self.objects[key]] if key in self.objects else []
        found: list[kmock.Object] = super()._KubernetesEmulator__get_objs(request, strict)  # type: ignore[misc]
        return found


def declare_resources(emulator: kmock.KubernetesEmulator) -> None:
    """What tests/kmock/conftest.py declares: kopf's discovery needs verbs on every resource it watches,
    and it waits for namespaces and CRDs to be discoverable before starting any watcher."""
    verbs = {"get", "list", "watch", "create", "update", "patch", "delete"}
    info = kmock.ResourceInfo
    emulator.resources[TRAININGS] = info(
        kind="MnistTraining", namespaced=True, verbs=verbs, subresources={"status"}
    )
    emulator.resources[JOBS] = info(kind="Job", namespaced=True, verbs=verbs, subresources={"status"})
    emulator.resources["v1/pods"] = info(kind="Pod", namespaced=True, verbs=verbs, subresources={"status"})
    emulator.resources["v1/events"] = info(kind="Event", namespaced=True, verbs=verbs)
    emulator.resources["v1/namespaces"] = info(kind="Namespace", namespaced=False, verbs=verbs)
    crds = "apiextensions.k8s.io/v1/customresourcedefinitions"
    emulator.resources[crds] = info(kind="CustomResourceDefinition", namespaced=False, verbs=verbs)


def write_kubeconfig(path: Path, server_url: str) -> Path:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server_url.rstrip("/")}}],
        "users": [{"name": "kmock", "user": {"token": "bench"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def training_body(namespace: str, name: str, uid: str, epochs: int = 3) -> dict[str, Any]:
    """A minimal MnistTraining; kmock assigns no uid, so the benchmark gives each one its own."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MnistTraining",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "generation": 1},
        "spec": {"epochs": epochs},
    }
