"""The real control plane as the API server of the operator benchmark.

A fresh etcd + kube-apiserver + kube-controller-manager + kube-scheduler per run
(tests/support/k8s/controlplane.py, about 4 s to start), with the CRD from manifests/crd.yaml, so the
operator meets schema validation, defaulting, real resourceVersions, the job controller creating pods,
and garbage collection. No node agent: the Jobs' pods stay Pending (unschedulable), which costs the
control plane what a full cluster's pending pods cost it and keeps 1,000 trainers from running on 2 cores.

Everything the benchmark reads comes from the API server's own audit log, in the shapes of
:mod:`.recording`, stamped by the server (a watch of the harness's own would stamp events when a busy
harness got round to reading them, and the API server closes watchers that fall behind):

* creations: the ``stageTimestamp`` (microseconds, when the response was complete, i.e. the object
  stored) of each successful create: the harness's MnistTrainings and the operator's Jobs;
* status epochs: the operator's status patches are logged with their body (``level: Request``), so the
  first write carrying ``status.epoch == n`` is known to the microsecond;
* the operator's requests: it authenticates as its own user (``OPERATOR_USER``, in system:masters) and
  every request of that user is logged once, when its response completes. Nothing sits between operator
  and API server.
"""

import asyncio
import json
import ssl
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from mnist_api.resource import GROUP, PLURAL

from .recording import RecordQueries, Seen

OPERATOR_USER = "mnist-bench-operator"
HARNESS_USER = "mnist-bench-harness"
# Audit verbs under the action names the results files count by (a patch is an UPDATE).
ACTIONS = {
    "get": "FETCH",
    "list": "LIST",
    "watch": "WATCH",
    "create": "CREATE",
    "update": "UPDATE",
    "patch": "UPDATE",
    "delete": "DELETE",
    "deletecollection": "DELETE",
}


def audit_flags(directory: Path) -> tuple[list[str], Path]:
    """kube-apiserver flags for an audit log of what the benchmark reads; returns (flags, log path)."""
    directory.mkdir(parents=True, exist_ok=True)
    policy = directory / "audit-policy.yaml"
    status = {"group": GROUP, "resources": [f"{PLURAL}/status"]}
    policy.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "audit.k8s.io/v1",
                "kind": "Policy",
                # One event per request, written when the response is complete.
                "omitStages": ["RequestReceived", "ResponseStarted"],
                "rules": [  # the first rule that matches decides
                    {
                        "level": "Request",
                        "users": [OPERATOR_USER],
                        "verbs": ["patch", "update"],
                        "resources": [status],
                    },
                    {"level": "Metadata", "users": [OPERATOR_USER]},
                    {"level": "Metadata", "users": [HARNESS_USER], "verbs": ["create"]},
                    {"level": "None"},
                ],
            }
        )
    )
    log = directory / "audit.log"
    # Blocking mode (the log backend's default): an event is on disk before its response is sent.
    return [f"--audit-policy-file={policy}", f"--audit-log-path={log}", "--audit-log-format=json"], log


class ClusterRecorder(RecordQueries):
    """Follows the audit log of one run from ``start()`` until ``stop()``."""

    def __init__(self, audit_log: Path) -> None:
        self.audit_log = audit_log
        self.created: dict[tuple[str, str, str], float] = {}
        self.epochs: dict[tuple[str, str, int], float] = {}
        self.statuses: dict[tuple[str, str], float] = {}
        self.uids: dict[tuple[str, str], str] = {}
        self.seen: list[Seen] = []
        self.last_request = 0.0
        self._task: asyncio.Task[None] | None = None
        # Audit timestamps are wall-clock; everything else in the benchmark is monotonic.
        self._wall_minus_monotonic = time.time() - time.monotonic()

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def check(self) -> None:
        """Raise what following the log died of (it should run until ``stop``)."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            raise RuntimeError(f"reading the audit log failed: {self._task.exception()!r}")

    async def _follow(self, every: float = 0.05) -> None:
        offset, partial = 0, b""
        while True:
            await asyncio.sleep(every)
            if not self.audit_log.exists():
                continue
            with self.audit_log.open("rb") as log:
                log.seek(offset)
                chunk = log.read()
            offset += len(chunk)
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()  # an event still being written
            for line in lines:
                if line.strip():
                    self.record(json.loads(line))

    def _monotonic(self, stamp: str) -> float:
        return datetime.fromisoformat(stamp).timestamp() - self._wall_minus_monotonic

    def record(self, event: dict[str, Any]) -> None:
        if event.get("stage") != "ResponseComplete":
            return
        ref, verb = event.get("objectRef") or {}, event.get("verb", "")
        resource, namespace, name = ref.get("resource", ""), ref.get("namespace", ""), ref.get("name", "")
        done = self._monotonic(event["stageTimestamp"])
        succeeded = (event.get("responseStatus") or {}).get("code", 0) < 300
        if verb == "create" and succeeded and not ref.get("subresource"):
            self.created.setdefault((resource, namespace, name), done)
        if event.get("user", {}).get("username") != OPERATOR_USER:
            return  # the harness's own creations: stamped above, not counted as the operator's
        if resource == PLURAL and ref.get("subresource") == "status" and succeeded:
            self.note_status(namespace, name, (event.get("requestObject") or {}).get("status"), done)
        at = self._monotonic(event["requestReceivedTimestamp"])
        self.seen.append(
            Seen(at, verb, ACTIONS.get(verb, verb.upper()), resource, ref.get("subresource", ""))
        )
        # A watch completes when it ends, long after it was made: it does not make the operator busy.
        if verb != "watch":
            self.last_request = max(self.last_request, at)


def harness_ssl(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context
