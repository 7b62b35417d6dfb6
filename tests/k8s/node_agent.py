"""A test node agent: the one part of Kubernetes the tier-3 tests play themselves (the kubelet).

It registers a Node, keeps it Ready (a Lease in kube-node-lease renewed every few seconds, plus a
NodeStatus heartbeat), watches the pods bound to it and runs each as local processes
(:mod:`.pod_worker`), reporting phase, conditions and container statuses back through the API.

What it honours: command + args; env (values, $(VAR) expansion, fieldRef, resourceFieldRef,
secretKeyRef, configMapKeyRef, envFrom); workingDir; init containers (sequentially, first);
restartPolicy Never / OnFailure / Always (restart in place, restartCount bumped, short back-off);
volumes emptyDir (per pod), persistentVolumeClaim (one directory per namespace+claim, shared by every
pod and node), secret / configMap / downwardAPI / projected (incl. serviceAccountToken via
TokenRequest) materialized as files, hostPath (confined under the cluster root); deletion (SIGTERM,
SIGKILL after the grace period, then the pod object is removed).

What it cannot honour:
- the container **image is ignored**: ``command`` must name a program on this host (tests use
  ``sys.executable``); a container without ``command`` fails with StartError;
- nothing is mounted: each mountPath is *rewritten* to its host directory wherever it appears in the
  command, args, env values and workingDir (see :mod:`.podspec`), and published as JSON in env
  ``TEST_NODE_AGENT_MOUNTS``; paths hard-coded inside a program are not rewritten;
- no isolation: every pod shares the host network (podIP = hostIP = 127.0.0.1), PID space and user;
  resources/limits are not enforced, probes are not run (a started container counts as ready);
- ``kubectl logs/exec/port-forward`` need a kubelet endpoint: the Node advertises a port on 127.0.0.1
  that is held but never listened on, so they fail fast with "connection refused"; read output with
  :meth:`NodeAgent.logs` instead.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from .pod_worker import LOOPBACK, PodWorker, WorkerContext
from .podspec import Json, Layout, Lookups

log = logging.getLogger(__name__)

# Host env a pod process inherits. A container starts from its image's env, not the host's; we have
# no image, so only what a program needs to run at all (and CPU-quirk settings some numerics need).
PASSTHROUGH_ENV = ("PATH", "LANG", "TZ", "TMPDIR", "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR")
PASSTHROUGH_PREFIXES = ("LC_", "OPENBLAS_", "OMP_", "MKL_")
LEASE_SECONDS = 40
LEASE_RENEW_EVERY = 10.0
STATUS_HEARTBEAT_EVERY = 30.0


def _rfc3339(micro: bool = False) -> str:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.now(UTC).strftime(fmt)


def read_logs(layout: Layout, namespace: str, pod: str, container: str | None = None) -> str:
    """Captured stdout+stderr of a container of the newest pod called ``namespace/pod``.

    Restarts append to the same file. Without ``container`` the pod's first container is used
    (kubectl's default); init containers are read by naming them.
    """
    pod_root = layout.root / "pods" / namespace / pod
    if not pod_root.is_dir():
        raise FileNotFoundError(f"no pod {namespace}/{pod} has run on a test node")
    newest = max(pod_root.iterdir(), key=lambda p: p.stat().st_mtime)
    if container is None:
        container = json.loads((newest / "containers.json").read_text())[0]
    path = newest / "logs" / f"{container}.log"
    if not path.exists():
        present = sorted(p.stem for p in (newest / "logs").glob("*.log"))
        raise FileNotFoundError(f"no log for container {container!r} of {namespace}/{pod}; have {present}")
    return path.read_text(errors="replace")


class NodeAgent:
    """One fake kubelet. ``start()`` registers and serves; ``stop()`` kills every pod process."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        name: str,
        layout: Layout,
        apiserver_port: int,
        capacity: Mapping[str, str],
        labels: Mapping[str, str] | None = None,
        taints: Iterable[Json] = (),
        kubelet_version: str = "v0.0.0",
        restart_backoff: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        self.name = name
        self.layout = layout
        self.capacity = dict(capacity)
        self.labels = dict(labels or {})
        self.taints = list(taints)
        self.kubelet_version = kubelet_version
        # Any: bodies are API-shaped dicts and most responses are read raw (_preload_content=False),
        # neither of which the generated signatures describe.
        self.core: Any = k8s.CoreV1Api(api_client)
        self.coordination: Any = k8s.CoordinationV1Api(api_client)
        self._workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watch_response: Any = None
        self._threads: list[threading.Thread] = []
        # A bound but never listening socket: the advertised kubelet port exists, is ours for the
        # whole session (no other program can take it), and refuses every connection.
        self._kubelet_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._kubelet_socket.bind((LOOPBACK, 0))
        self.kubelet_port = int(self._kubelet_socket.getsockname()[1])
        self.ctx = WorkerContext(
            api=self.core,
            layout=layout,
            node_name=name,
            base_env=self._base_env(apiserver_port),
            lookups=Lookups(
                secret=self._secret,
                config_map=self._config_map,
                service_account_token=self._service_account_token,
                node_allocatable=self.capacity,
            ),
            restart_backoff=restart_backoff,
            on_exit=self._forget,
        )

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._register()
        for target, label in ((self._heartbeat_loop, "heartbeat"), (self._watch_loop, "watch")):
            thread = threading.Thread(target=target, name=f"node {self.name} {label}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(Exception):
            if self._watch_response is not None:
                self._watch_response.shutdown()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.shutdown()
        for worker in workers:
            worker.join(timeout=10)
        for thread in self._threads:
            thread.join(timeout=5)
        self._kubelet_socket.close()

    def wait_schedulable(self, timeout: float = 30.0) -> None:
        """Ready, and the node lifecycle controller has lifted the not-ready taint it starts with."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            node = self.core.read_node(self.name)
            ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
            taints = {t.key for t in node.spec.taints or []}
            if ready and not taints & {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}:
                return
            time.sleep(0.1)
        raise TimeoutError(f"node {self.name} not schedulable after {timeout}s")

    # --- for tests ------------------------------------------------------------------------------

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        return read_logs(self.layout, namespace, pod, container)

    def running_pids(self, namespace: str | None = None) -> list[int]:
        """PIDs of container processes still alive on this node (optionally in one namespace)."""
        with self._lock:
            workers = list(self._workers.values())
        return [pid for w in workers if namespace in (None, w.namespace) for pid in w.alive_pids]

    # --- the Node object --------------------------------------------------------------------------

    def _node_status(self) -> Json:
        stamp = _rfc3339()

        def condition(kind: str, status: str, reason: str) -> Json:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": self._registered_at,
            }

        return {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID"),
                condition("Ready", "True", "KubeletReady"),
            ],
            # InternalIP only: the apiserver is told to use it, so it never resolves a hostname.
            "addresses": [{"type": "InternalIP", "address": LOOPBACK}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": self.name,
                "systemUUID": self.name,
                "bootID": self.name,
                "kernelVersion": os.uname().release,
                "osImage": "test node agent",
                "containerRuntimeVersion": "test-node-agent://1",
                "kubeletVersion": self.kubelet_version,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def _register(self) -> None:
        self._registered_at = _rfc3339()
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **self.labels,
        }
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": {"taints": self.taints},
        }
        with contextlib.suppress(ApiException):  # left over from an earlier agent on this cluster
            self.core.delete_node(self.name)
        created = self.core.create_node(node)
        self._node_uid = created.metadata.uid
        self._patch_status()
        self._renew_lease()

    def _patch_status(self) -> None:
        self.core.patch_node_status(
            self.name,
            {"status": self._node_status()},
            _content_type="application/strategic-merge-patch+json",
            _preload_content=False,
        )

    def _renew_lease(self) -> None:
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": "kube-node-lease",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self._node_uid}
                ],
            },
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": _rfc3339(micro=True),
            },
        }
        # Server-side apply: creates the Lease the first time, renews it afterwards, in one call.
        self.coordination.patch_namespaced_lease(
            self.name,
            "kube-node-lease",
            lease,
            field_manager="test-node-agent",
            force=True,
            _content_type="application/apply-patch+yaml",
            _preload_content=False,
        )

    def _heartbeat_loop(self) -> None:
        last_status = time.monotonic()
        while not self._stopping.wait(LEASE_RENEW_EVERY):
            try:
                self._renew_lease()
                if time.monotonic() - last_status >= STATUS_HEARTBEAT_EVERY:
                    self._patch_status()
                    last_status = time.monotonic()
            except Exception as exc:  # the apiserver may be going away at teardown
                log.warning("node %s heartbeat: %s", self.name, exc)

    # --- pods -------------------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                resource_version: str | None = self._relist()
                # None after a 410 Gone: our version is too old to watch from, so list again.
                while resource_version is not None and not self._stopping.is_set():
                    resource_version = self._watch(resource_version)
            except Exception as exc:
                if not self._stopping.is_set():
                    log.warning("node %s pod watch: %s; relisting", self.name, exc)
                    time.sleep(0.5)

    def _selector(self) -> str:
        return f"spec.nodeName={self.name}"

    def _relist(self) -> str:
        response = self.core.list_pod_for_all_namespaces(
            field_selector=self._selector(), _preload_content=False
        )
        listing = json.loads(response.data)
        seen = set()
        for pod in listing["items"]:
            seen.add(pod["metadata"]["uid"])
            self._on_event("ADDED", pod)
        with self._lock:
            vanished = [w for uid, w in self._workers.items() if uid not in seen]
        for worker in vanished:
            worker.gone()
        return str(listing["metadata"]["resourceVersion"])

    def _watch(self, resource_version: str) -> str | None:
        response = self.core.list_pod_for_all_namespaces(
            field_selector=self._selector(),
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=60,
            _preload_content=False,
            _request_timeout=(5, 90),
        )
        self._watch_response = response
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    raise RuntimeError(f"watch error: {obj}")
                resource_version = obj["metadata"]["resourceVersion"]
                if kind != "BOOKMARK":
                    self._on_event(kind, obj)
        finally:
            response.release_conn()
        return resource_version

    def _on_event(self, kind: str, pod: Json) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self._workers.get(uid)
            if worker is None:
                # Each pod runs at most once: a worker that ended (pod deleted, or a crash) is never
                # replaced, so a relist cannot re-run a finished pod's containers.
                if kind == "DELETED" or uid in self._finished or self._stopping.is_set():
                    return
                worker = self._workers[uid] = PodWorker(self.ctx, pod)
                # Marked for deletion already? Then the worker starts no process and deletes it.
                worker.update(pod)
                worker.start()
                return
        if kind == "DELETED":
            worker.gone()
        else:
            worker.update(pod)

    def _forget(self, uid: str) -> None:
        with self._lock:
            self._workers.pop(uid, None)
            self._finished.add(uid)

    # --- lookups for the pod spec -----------------------------------------------------------------

    def _read_json(self, method: Any, name: str, namespace: str) -> Json | None:
        try:
            return json.loads(method(name, namespace, _preload_content=False).data)  # type: ignore[no-any-return]
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        secret = self._read_json(self.core.read_namespaced_secret, name, namespace)
        if secret is None:
            return None
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}

    def _config_map(self, namespace: str, name: str) -> dict[str, bytes] | None:
        config_map = self._read_json(self.core.read_namespaced_config_map, name, namespace)
        if config_map is None:
            return None
        data = {k: v.encode() for k, v in (config_map.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (config_map.get("binaryData") or {}).items()})
        return data

    def _service_account_token(self, pod: Json, source: Json) -> str:
        """A bound token from the TokenRequest API, as the kubelet mints it (never refreshed here)."""
        meta = pod["metadata"]
        audience = source.get("audience")
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": int(source.get("expirationSeconds") or 3600),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        response = self.core.create_namespaced_service_account_token(
            pod["spec"].get("serviceAccountName") or "default",
            meta["namespace"],
            request,
            _preload_content=False,
        )
        return str(json.loads(response.data)["status"]["token"])

    def _base_env(self, apiserver_port: int) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if k in PASSTHROUGH_ENV or k.startswith(PASSTHROUGH_PREFIXES)
        }
        # What the kubelet injects for the `kubernetes` Service, pointed at the loopback apiserver.
        port = str(apiserver_port)
        env.update(
            {
                "KUBERNETES_SERVICE_HOST": LOOPBACK,
                "KUBERNETES_SERVICE_PORT": port,
                "KUBERNETES_SERVICE_PORT_HTTPS": port,
                "KUBERNETES_PORT": f"tcp://{LOOPBACK}:{port}",
                "KUBERNETES_PORT_443_TCP": f"tcp://{LOOPBACK}:{port}",
                "KUBERNETES_PORT_443_TCP_ADDR": LOOPBACK,
                "KUBERNETES_PORT_443_TCP_PORT": port,
                "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            }
        )
        return env


def cluster_layout(root: Path) -> Layout:
    root.mkdir(parents=True, exist_ok=True)
    return Layout(root)
