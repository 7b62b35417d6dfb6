"""Test servers as pods on the real nodes: an MNIST mirror and a Pushgateway, reached as Services.

Pods on the real nodes reach nothing on the host (realnode.py), so the servers a training
needs run in the cluster, from the images hack/build-images.sh built, and tests read them through the
API server's service proxy (`/api/v1/namespaces/<ns>/services/<name>:<port>/proxy/...`), the way
`kubectl get --raw` reaches a Service from outside a cluster.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tests.support.mnist_data import write_idx_quartet

from .controlplane import ControlPlane
from .helpers import CONTAINER_SECURITY, POD_SECURITY, create_namespace, wait_for

MIRROR_PORT = 8080
PUSHGATEWAY_PORT = 9091


def _deploy(
    core: Any,
    namespace: str,
    name: str,
    container: dict[str, Any],
    port: int,
    volumes: list[dict[str, Any]] | None = None,
    pod_security: dict[str, Any] | None = None,
) -> None:
    """One pod behind a Service of the same name, Ready (its readiness probe passed) on return."""
    container = {
        "imagePullPolicy": "Never",
        "ports": [{"containerPort": port}],
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1},
        "securityContext": CONTAINER_SECURITY,
        **container,
    }
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": "node-cpu"},
                "securityContext": pod_security or POD_SECURITY,
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": name, **container}],
                "volumes": volumes or [],
            },
        },
    )
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": port}]},
        },
    )

    def ready() -> bool:
        pod = core.read_namespaced_pod(name, namespace)
        return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])

    wait_for(ready, timeout=120, what=f"pod {namespace}/{name} to be Ready")


@dataclass(frozen=True)
class ClusterMirror:
    """Generated MNIST idx files served by a pod; ``url`` is what a training's spec names."""

    url: str
    sha256: dict[str, str]

    def dataset(self) -> dict[str, Any]:
        return {"name": "mnist", "url": self.url, "sha256": self.sha256}


def start_mirror(
    core: Any, image: str, namespace: str, folder: Path, arrays: dict[str, npt.NDArray[np.uint8]]
) -> ClusterMirror:
    """The files live in ``folder`` on this machine, mounted into the pod as a hostPath volume (the
    node's filesystem is this machine's), so ``namespace`` must allow hostPath: it is created here
    without Pod Security enforcement."""
    files = write_idx_quartet(folder / "idx", arrays)
    sums = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    create_namespace(core, namespace)
    _deploy(
        core,
        namespace,
        "mirror",
        {
            "image": image,
            "command": ["python", "-m", "http.server", str(MIRROR_PORT), "--directory", "/srv"],
            "volumeMounts": [{"name": "data", "mountPath": "/srv", "readOnly": True}],
        },
        MIRROR_PORT,
        volumes=[{"name": "data", "hostPath": {"path": str(folder), "type": "Directory"}}],
    )
    return ClusterMirror(f"http://mirror.{namespace}.svc.cluster.local:{MIRROR_PORT}/idx/", sums)


@dataclass(frozen=True)
class ClusterPushgateway:
    """A Pushgateway pod (Debian's build, from its image) and its Service in ``namespace``."""

    plane: ControlPlane
    namespace: str
    name: str = "pushgateway"

    @property
    def url(self) -> str:
        """The address trainers push to and the operator polls (cluster DNS)."""
        return f"http://{self.name}.{self.namespace}.svc:{PUSHGATEWAY_PORT}"

    def proxy_path(self, path: str) -> str:
        """``path`` on the Pushgateway through the API server's service proxy."""
        return f"/api/v1/namespaces/{self.namespace}/services/{self.name}:{PUSHGATEWAY_PORT}/proxy{path}"

    def get(self, path: str) -> str:
        return self.plane.kubectl("get", "--raw", self.proxy_path(path), check=True).stdout

    def groups(self) -> list[dict[str, Any]]:
        """The Pushgateway's own view of every group (GET /api/v1/metrics)."""
        data: list[dict[str, Any]] = json.loads(self.get("/api/v1/metrics"))["data"]
        return data


def start_pushgateway(
    plane: ControlPlane, core: Any, image: str, namespace: str, extra_args: tuple[str, ...] = ()
) -> ClusterPushgateway:
    gateway = ClusterPushgateway(plane, namespace)
    _deploy(
        core,
        namespace,
        gateway.name,
        {"image": image, "args": [f"--web.listen-address=:{PUSHGATEWAY_PORT}", *extra_args]},
        PUSHGATEWAY_PORT,
        pod_security={"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
    )
    return gateway
