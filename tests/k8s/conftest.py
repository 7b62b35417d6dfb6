"""Fixtures of the real-control-plane tier (see docs/testing-control-plane.md).

- ``control_plane`` (session): etcd, kube-apiserver, kube-controller-manager, kube-scheduler.
- ``cluster`` (session): two real nodes on it (kubelet, containerd, runc, CNI, kube-proxy, CoreDNS):
  ``node-cpu`` and ``node-gpu`` (1 ``nvidia.com/gpu``, tainted ``nvidia.com/gpu=present:NoSchedule`` so
  only pods that tolerate it land there), with the images ``hack/build-images.sh`` built.
- ``k8s_binaries`` and ``helm`` (session), shared with tests/chart: tests/support/k8s/fixtures.py.
- ``k8s_api`` (session): an admin ``ApiClient`` built explicitly from the written kubeconfig.
- ``namespace`` (function): a fresh namespace per test, Pod Security ``restricted``, deleted afterwards.
- ``mirror`` (session): generated MNIST served by a pod, for trainings.

Without the binaries or the images every test here is skipped with the command to build them -- except
under CI (env ``CI`` set), where a skip would hide a broken tier, so the tests fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import pytest
from kubernetes import client as k8s

from tests.support.k8s.binaries import Binaries
from tests.support.k8s.controlplane import ControlPlane
from tests.support.k8s.fixtures import in_ci
from tests.support.k8s.helpers import create_namespace
from tests.support.k8s.incluster import ClusterMirror, start_mirror
from tests.support.k8s.realnode import NodeSpec, RealNodes

REPO = Path(__file__).resolve().parents[2]

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Equal", "value": "present", "effect": "NoSchedule"}


@pytest.fixture(scope="session")
def control_plane(k8s_binaries: Binaries) -> Iterator[ControlPlane]:
    # UNIX socket paths (the API server's egress proxy, containerd's) must stay under 108 bytes: a short
    # folder of its own rather than pytest's deep tmp path.
    root = Path(tempfile.mkdtemp(prefix="mnist-k8s-"))
    plane = ControlPlane(k8s_binaries, root / "cp", egress_socket=root / "egress.sock")
    try:
        plane.start()  # stops what it started if it fails; the folder goes below either way
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def k8s_api(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    with control_plane.api_client() as api:
        yield api


def _namespace_name(node: pytest.Item) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", node.name.lower()).strip("-")[:40].strip("-")
    return f"{base}-{uuid.uuid4().hex[:5]}"


# Typed Any: tests pass API-shaped dicts as bodies (readable, and accepted by every client version)
# where the generated signatures ask for model objects.
@pytest.fixture
def core(k8s_api: k8s.ApiClient) -> Any:
    return k8s.CoreV1Api(k8s_api)


@pytest.fixture
def batch(k8s_api: k8s.ApiClient) -> Any:
    return k8s.BatchV1Api(k8s_api)


@pytest.fixture
def rbac(k8s_api: k8s.ApiClient) -> Any:
    return k8s.RbacAuthorizationV1Api(k8s_api)


@pytest.fixture
def custom(k8s_api: k8s.ApiClient) -> Any:
    return k8s.CustomObjectsApi(k8s_api)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, core: Any) -> Iterator[str]:
    """A fresh namespace named after the test that enforces Pod Security `restricted`, as a platform
    team's training namespaces do; pods can be created as soon as it is yielded."""
    name = _namespace_name(request.node)
    create_namespace(core, name, labels={"pod-security.kubernetes.io/enforce": "restricted"})
    yield name
    # Not waited for: the namespace controller and the kubelets finish the cleanup in the background,
    # and no other test looks into this namespace.
    core.delete_namespace(name, propagation_policy="Background")


# --- the real nodes (tests/support/k8s/realnode.py) ---------------------------------------------------------


@dataclass(frozen=True)
class BuiltImages:
    """The OCI archives hack/build-images.sh built: reference and archive path per image name."""

    references: dict[str, str]
    archives: dict[str, Path]

    def __getitem__(self, name: str) -> str:
        return self.references[name]


def _fail_or_skip(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"CI is set, so the real-node tier must not skip: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def built_images() -> BuiltImages:
    """Never builds (hack/run-tests.sh does, once, before pytest); reads what the cache holds."""
    result = subprocess.run(
        ["bash", str(REPO / "hack" / "build-images.sh"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        _fail_or_skip(f"images not built: run `bash hack/build-images.sh` ({result.stderr.strip()[-300:]})")
    references: dict[str, str] = {}
    archives: dict[str, Path] = {}
    for line in result.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            references[parts[0]] = parts[1]
            archives[parts[1]] = Path(parts[2])
    return BuiltImages(references, archives)


@dataclass
class Cluster:
    """The session's real nodes on the control plane: ``node-cpu`` and ``node-gpu`` (one advertised
    ``nvidia.com/gpu``, tainted so only pods that tolerate it land there)."""

    plane: ControlPlane
    nodes: RealNodes
    images: BuiltImages

    def kubectl(
        self, *args: str, check: bool = False, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, check=check, timeout=timeout)

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        """``kubectl logs``: through the API server and the kubelet, as a user reads them."""
        args = ["logs", "-n", namespace, pod] + ([f"--container={container}"] if container else [])
        return self.kubectl(*args, check=True).stdout

    def container_pids(self, namespace: str) -> list[int]:
        """PIDs of the app containers' processes of every pod in ``namespace`` (read from the nodes'
        cgroups), for tests that kill a trainer the way a node failure would."""
        with self.plane.api_client() as api:
            pods = k8s.CoreV1Api(api).list_namespaced_pod(namespace).items
        ids = [
            status.container_id.partition("://")[2]
            for pod in pods
            for status in pod.status.container_statuses or []
            if status.container_id and status.state.running
        ]
        return self.nodes.container_pids(ids)


@pytest.fixture(scope="session")
def cluster(
    control_plane: ControlPlane, k8s_binaries: Binaries, built_images: BuiltImages
) -> Iterator[Cluster]:
    missing = [
        name for name in ("kubelet", "kube-proxy", "coredns") if not (k8s_binaries.dir / name).exists()
    ]
    if missing:
        _fail_or_skip(f"{', '.join(missing)} missing from {k8s_binaries.dir}: re-run hack/k8s-binaries.sh")
    assert control_plane.egress_socket is not None
    specs = [
        NodeSpec("node-cpu"),
        NodeSpec(
            "node-gpu",
            labels={"nvidia.com/gpu.present": "true"},
            taints=[GPU_TAINT],
            extended_resources={GPU_RESOURCE: "1"},
        ),
    ]
    cache = Path(os.environ.get("MNIST_OPERATOR_CACHE") or Path.home() / ".cache" / "mnist-operator")
    nodes = RealNodes(
        control_plane,
        k8s_binaries,
        control_plane.egress_socket.parent / "nodes",
        specs,
        list(built_images.archives.values()),
        cache,
    )
    try:
        nodes.start()
        yield Cluster(control_plane, nodes, built_images)
    finally:
        nodes.stop()


@pytest.fixture(scope="session")
def mirror(
    cluster: Cluster, core_session: Any, synthetic_arrays: dict[str, npt.NDArray[np.uint8]]
) -> ClusterMirror:
    """Generated MNIST served by a pod in the cluster, for every training of the session."""
    folder = cluster.plane.dir.parent / "mirror"
    folder.mkdir()
    return start_mirror(core_session, cluster.images["trainer"], "mnist-mirror", folder, synthetic_arrays)


@pytest.fixture(scope="session")
def core_session(k8s_api: k8s.ApiClient) -> Any:
    return k8s.CoreV1Api(k8s_api)
