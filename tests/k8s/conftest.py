"""Fixtures of the real-control-plane tier (see docs/testing-control-plane.md).

- ``control_plane`` (session): etcd, kube-apiserver, kube-controller-manager, kube-scheduler.
- ``agents`` (session): two test node agents, ``node-cpu`` and ``node-gpu`` (1 ``nvidia.com/gpu``,
  tainted ``nvidia.com/gpu=present:NoSchedule`` so only pods that tolerate it land there).
- ``k8s_api`` (session): an admin ``ApiClient`` built explicitly from the written kubeconfig.
- ``namespace`` (function): a fresh namespace per test, deleted afterwards.

Without the binaries every test here is skipped with the command to build them -- except under CI
(env ``CI`` set), where a skip would hide a broken tier, so the tests fail instead.
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

from tests.conftest import DataMirror, data_mirror_for
from tests.support.servers import Pushgateway, start_pushgateway

from .binaries import Binaries, BinariesMissingError, locate, pinned_versions
from .controlplane import ControlPlane
from .helpers import create_namespace
from .node_agent import NodeAgent, read_logs
from .podspec import Layout
from .realnode import NodeSpec, RealNodes

REPO = Path(__file__).resolve().parents[2]

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Equal", "value": "present", "effect": "NoSchedule"}
# Room for the operator benchmarks' hundreds of pods; cpu/memory are bookkeeping only (not enforced).
NODE_CAPACITY = {"cpu": "16", "memory": "64Gi", "pods": "500", "ephemeral-storage": "100Gi"}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def k8s_binaries() -> Binaries:
    try:
        return locate()
    except BinariesMissingError as exc:
        if _in_ci():
            pytest.fail(f"CI is set, so the control-plane tier must not skip: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def control_plane(k8s_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(k8s_binaries, tmp_path_factory.mktemp("control-plane"))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def k8s_api(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    with control_plane.api_client() as api:
        yield api


@dataclass
class NodeAgents:
    """The session's test nodes. ``logs`` reads any pod's output, whichever node ran it."""

    cpu: NodeAgent
    gpu: NodeAgent
    layout: Layout

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        return read_logs(self.layout, namespace, pod, container)

    def running_pids(self, namespace: str | None = None) -> list[int]:
        return self.cpu.running_pids(namespace) + self.gpu.running_pids(namespace)


@pytest.fixture(scope="session")
def agents(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeAgents]:
    layout = Layout(tmp_path_factory.mktemp("nodes"))
    version = pinned_versions()["KUBERNETES_VERSION"]

    def make(name: str, capacity: dict[str, str], **extra: Any) -> NodeAgent:
        return NodeAgent(
            control_plane.api_client(pool_size=64),  # its own pool: hundreds of pods patch status at once
            name=name,
            layout=layout,
            apiserver_port=control_plane.ports.apiserver,
            capacity=capacity,
            kubelet_version=version,
            **extra,
        )

    cpu = make("node-cpu", NODE_CAPACITY)
    gpu = make(
        "node-gpu",
        {**NODE_CAPACITY, GPU_RESOURCE: "1"},
        labels={"nvidia.com/gpu.present": "true"},
        taints=[GPU_TAINT],
    )
    started: list[NodeAgent] = []
    try:
        for agent in (cpu, gpu):
            agent.start()
            started.append(agent)
        for agent in started:
            agent.wait_schedulable()
        yield NodeAgents(cpu=cpu, gpu=gpu, layout=layout)
    finally:
        for agent in started:
            agent.stop()


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
def namespace(request: pytest.FixtureRequest, core: Any) -> Iterator[str]:
    """A fresh namespace named after the test; pods can be created as soon as it is yielded."""
    name = _namespace_name(request.node)
    create_namespace(core, name)
    yield name
    # Not waited for: the namespace controller and the node agents finish the cleanup in the
    # background, and no other test looks into this namespace.
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def custom(k8s_api: k8s.ApiClient) -> Any:
    return k8s.CustomObjectsApi(k8s_api)


@pytest.fixture(scope="module")
def gateway() -> Iterator[Pushgateway]:
    """A real Pushgateway on loopback for a module's operator."""
    started = start_pushgateway()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def mirror(
    tmp_path_factory: pytest.TempPathFactory, synthetic_arrays: dict[str, npt.NDArray[np.uint8]]
) -> Iterator[DataMirror]:
    """Generated MNIST served over loopback HTTP, for trainings a module's operator runs."""
    with data_mirror_for(tmp_path_factory.mktemp("mirror"), synthetic_arrays) as served:
        yield served


# --- the real nodes (tests/k8s/realnode.py) -------------------------------------------------------------


@dataclass(frozen=True)
class BuiltImages:
    """The OCI archives hack/build-images.sh built: reference and archive path per image name."""

    references: dict[str, str]
    archives: dict[str, Path]

    def __getitem__(self, name: str) -> str:
        return self.references[name]


def _fail_or_skip(message: str) -> NoReturn:
    if _in_ci():
        pytest.fail(f"CI is set, so the real-node tier must not skip: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def built_images() -> BuiltImages:
    """Never builds (hack/run-tests.sh does, once, before pytest); reads what the cache holds."""
    script = REPO / "hack" / "build-images.sh"
    result = subprocess.run(["bash", str(script), "--check"], capture_output=True, text=True, check=False)
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
class RealCluster:
    """A control plane of its own with two real nodes: ``node-cpu`` and ``node-gpu`` (one advertised
    ``nvidia.com/gpu``, tainted as the agents' GPU node is)."""

    plane: ControlPlane
    nodes: RealNodes
    images: BuiltImages

    def kubectl(
        self, *args: str, check: bool = False, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, check=check, timeout=timeout)


@pytest.fixture(scope="session")
def real_cluster(k8s_binaries: Binaries, built_images: BuiltImages) -> Iterator[RealCluster]:
    missing = [
        name for name in ("kubelet", "kube-proxy", "coredns") if not (k8s_binaries.dir / name).exists()
    ]
    if missing:
        _fail_or_skip(f"{', '.join(missing)} missing from {k8s_binaries.dir}: re-run hack/k8s-binaries.sh")
    # UNIX socket paths must stay under 108 bytes: a short folder of its own, not pytest's deep tmp path.
    root = Path(tempfile.mkdtemp(prefix="mnist-nodes-"))
    plane = ControlPlane(k8s_binaries, root / "cp", egress_socket=root / "egress.sock")
    plane.start()
    trainer = built_images["trainer"]
    specs = [
        NodeSpec("node-cpu", images=tuple(built_images.references.values())),
        NodeSpec(
            "node-gpu",
            labels={"nvidia.com/gpu.present": "true"},
            taints=[GPU_TAINT],
            extended_resources={GPU_RESOURCE: "1"},
            images=(trainer,),
        ),
    ]
    nodes = RealNodes(plane, k8s_binaries, root / "nodes", specs, built_images.archives)
    try:
        nodes.start()
        yield RealCluster(plane, nodes, built_images)
    finally:
        nodes.stop()
        plane.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def real_core(real_cluster: RealCluster) -> Iterator[Any]:
    with real_cluster.plane.api_client() as api:
        yield k8s.CoreV1Api(api)


@pytest.fixture
def real_namespace(request: pytest.FixtureRequest, real_core: Any) -> Iterator[str]:
    """A fresh namespace on the real cluster that enforces Pod Security `restricted`, as a platform
    team's training namespaces do."""
    name = _namespace_name(request.node)
    create_namespace(real_core, name, labels={"pod-security.kubernetes.io/enforce": "restricted"})
    yield name
    real_core.delete_namespace(name, propagation_policy="Background")
