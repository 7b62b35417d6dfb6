"""The product as a user meets it, on real nodes: `helm install` with the built images and otherwise
default values, then `kubectl apply -f` a training whose trainer runs from its image in a namespace that
enforces Pod Security `restricted`; `kubectl logs` reads it and the model lands on a PersistentVolume.

The operator and the Pushgateway run in-cluster from their images; the trainer reaches the chart's default
Pushgateway URL (`http://<release>-pushgateway.<namespace>.svc:9091`) through cluster DNS and kube-proxy.
Data comes from a mirror pod serving generated MNIST, since nothing outside the cluster is reachable.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.support.mnist_data import write_idx_quartet

from .conftest import RealCluster
from .helpers import create_namespace, wait_for
from .operator_support import sample_training, training_status, wait_for_phase

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mnist-operator"
RELEASE = "mnist-operator"
OPERATOR_NAMESPACE = "mnist-operator"
MIRROR_NAMESPACE = "mnist-mirror"


@dataclass
class Installed:
    cluster: RealCluster
    helm_env: dict[str, str]
    data_url: str
    data_sha256: dict[str, str]
    volumes: Path

    def helm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        helm = self.cluster.plane.bin["helm"]
        argv = [
            str(helm),
            f"--kubeconfig={self.cluster.plane.admin_kubeconfig}",
            "-n",
            OPERATOR_NAMESPACE,
            *args,
        ]
        return subprocess.run(
            argv, capture_output=True, text=True, env=self.helm_env, timeout=timeout, check=False
        )

    def kubectl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, check=check)


def _serve_mirror(cluster: RealCluster, core: Any, folder: Path) -> str:
    """A pod serving ``folder`` (hostPath on the node) over HTTP behind a Service; returns the base URL."""
    create_namespace(core, MIRROR_NAMESPACE)
    core.create_namespaced_pod(
        MIRROR_NAMESPACE,
        {
            "metadata": {"name": "mirror", "labels": {"app": "mirror"}},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": "node-cpu"},
                "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True},
                "containers": [
                    {
                        "name": "http",
                        "image": cluster.images["trainer"],
                        "imagePullPolicy": "Never",
                        "command": ["python", "-m", "http.server", "8080", "--directory", "/srv"],
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "data", "mountPath": "/srv", "readOnly": True}],
                    }
                ],
                "volumes": [{"name": "data", "hostPath": {"path": str(folder), "type": "Directory"}}],
            },
        },
    )
    core.create_namespaced_service(
        MIRROR_NAMESPACE,
        {
            "metadata": {"name": "mirror"},
            "spec": {"selector": {"app": "mirror"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    return f"http://mirror.{MIRROR_NAMESPACE}.svc.cluster.local/"


@pytest.fixture(scope="module")
def installed(
    real_cluster: RealCluster,
    synthetic_arrays: dict[str, npt.NDArray[np.uint8]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Installed]:
    from kubernetes import client as k8s

    work = tmp_path_factory.mktemp("real-operator")
    data = work / "mirror"
    files = write_idx_quartet(data / "idx", synthetic_arrays)
    import hashlib

    sums = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    data.chmod(0o755)
    volumes = work / "volumes"
    volumes.mkdir()
    with real_cluster.plane.api_client() as api:
        core = k8s.CoreV1Api(api)
        url = _serve_mirror(real_cluster, core, data)
    helm_env = {
        "HELM_CACHE_HOME": str(work / "helm-cache"),
        "HELM_CONFIG_HOME": str(work / "helm-config"),
        "HELM_DATA_HOME": str(work / "helm-data"),
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),
    }
    state = Installed(real_cluster, helm_env, url + "idx/", sums, volumes)
    pushgateway_image, _, pushgateway_tag = real_cluster.images["pushgateway"].rpartition(":")
    # Default values but for the Pushgateway image (prom/pushgateway cannot be pulled here: ours holds
    # Debian's build of the same program) and a shorter poll, so the figures move within the test's time.
    result = state.helm(
        "install", RELEASE, str(CHART), "--create-namespace",
        "--set", f"pushgateway.image.repository={pushgateway_image}",
        "--set", f"pushgateway.image.tag={pushgateway_tag}",
        "--set", "pollIntervalSeconds=1",
        "--wait", "--timeout", "180s",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + _describe(state)
    yield state


def _describe(state: Installed) -> str:
    pods = state.kubectl("get", "pods", "-A", "-o", "wide").stdout
    events = state.kubectl("get", "events", "-A", "--sort-by=.lastTimestamp").stdout[-4000:]
    return f"\n{pods}\n{events}"


def test_helm_install_runs_the_operator_and_pushgateway_from_their_images(installed: Installed) -> None:
    pods = json.loads(
        installed.kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "json", check=True).stdout
    )
    images = {c["image"] for p in pods["items"] for c in p["spec"]["containers"]}
    assert installed.cluster.images["operator"] in images
    assert installed.cluster.images["pushgateway"] in images
    for pod in pods["items"]:
        assert pod["status"]["phase"] == "Running", pod["metadata"]["name"]
        assert all(s["ready"] for s in pod["status"]["containerStatuses"])
    tested = installed.helm("test", RELEASE, "--logs", "--timeout", "120s")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # The kubelet really probed the operator's liveness endpoint (its prober metrics, read through the
    # API server's node proxy).
    probes = installed.kubectl(
        "get", "--raw", "/api/v1/nodes/node-cpu/proxy/metrics/probes", check=True
    ).stdout
    liveness = [
        line
        for line in probes.splitlines()
        if line.startswith("prober_probe_total")
        and f'namespace="{OPERATOR_NAMESPACE}"' in line
        and 'probe_type="Liveness"' in line
        and 'result="successful"' in line
    ]
    assert liveness and all(float(line.split()[-1]) >= 1 for line in liveness), probes[-2000:]


def _restricted_namespace(core: Any, name: str) -> None:
    create_namespace(core, name, labels={"pod-security.kubernetes.io/enforce": "restricted"})


def _claim_on_host(core: Any, namespace: str, name: str, folder: Path) -> None:
    """A hostPath PersistentVolume (a folder on the node, readable here) bound to claim ``name``."""
    folder.mkdir(parents=True)
    folder.chmod(0o777)  # hostPath ignores fsGroup: the trainer's uid 1000 must be able to write
    core.create_persistent_volume(
        {
            "metadata": {"name": f"pv-{namespace}-{name}"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(folder), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": name},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )


def _apply(installed: Installed, document: dict[str, Any], workdir: Path) -> None:
    path = workdir / f"{document['metadata']['name']}.yaml"
    path.write_text(json.dumps(document))
    installed.kubectl("apply", "-f", str(path), check=True)


def _spec(installed: Installed, **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "dataset": {"name": "mnist", "url": installed.data_url, "sha256": installed.data_sha256},
        "model": "mlp",
        "epochs": 3,
        "batchSize": 64,
        "releaseCriteria": {"minTestAccuracy": 0.5},
        "resources": {"cpu": "1", "memory": "2Gi"},
    }
    spec.update(fields)
    return spec


@pytest.fixture
def training_namespace(request: pytest.FixtureRequest, installed: Installed) -> Iterator[tuple[str, Any]]:
    from kubernetes import client as k8s

    name = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower())[:40].strip("-")
    with installed.cluster.plane.api_client() as api:
        core = k8s.CoreV1Api(api)
        _restricted_namespace(core, name)
        yield name, api
        core.delete_namespace(name, propagation_policy="Background")


def _trainer_pods(core: Any, namespace: str, name: str) -> list[Any]:
    selector = f"training.mnist-operator.io/name={name}"
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return sorted(pods, key=lambda p: p.metadata.creation_timestamp)


def test_kubectl_apply_trains_from_the_image_and_kubectl_logs_shows_the_epochs(
    installed: Installed, training_namespace: tuple[str, Any], tmp_path: Path
) -> None:
    from kubernetes import client as k8s

    namespace, api = training_namespace
    core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    volume = installed.volumes / namespace
    _claim_on_host(core, namespace, "models", volume)
    document = sample_training(namespace, "digits", **_spec(installed, output={"claimName": "models"}))
    _apply(installed, document, tmp_path)

    seen: list[str] = []

    def finished() -> bool:
        table = installed.kubectl("get", "mnisttrainings", "-n", namespace, check=True).stdout
        if table not in seen:
            seen.append(table)
        return any(phase in table for phase in ("Succeeded", "Failed"))

    wait_for(finished, timeout=300, what="kubectl get to show a final phase", interval=0.5)
    status = training_status(custom, namespace, "digits")
    (pod,) = _trainer_pods(core, namespace, "digits")
    logs = installed.kubectl("logs", "-n", namespace, pod.metadata.name)
    wide = installed.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
    print("\n".join(seen), wide, logs.stdout, sep="\n")  # what a user saw (pytest -s)
    assert status["phase"] == "Succeeded", (status, logs.stdout[-3000:])

    assert pod.spec.containers[0].image == installed.cluster.images["trainer"]
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert logs.returncode == 0, logs.stderr
    assert re.search(r"epoch 3/3  loss \S+  accuracy", logs.stdout), logs.stdout
    assert "\r" not in logs.stdout
    final = seen[-1].splitlines()[1].split()
    assert final[:3] == ["digits", "Succeeded", "3/3"]
    # The figures came back through the in-cluster Pushgateway and the operator's poll.
    assert 0 < status["accuracy"] <= 1 and status["testAccuracy"] >= 0.5

    run = volume / namespace / "digits"
    metrics = json.loads((run / "metrics.json").read_text())
    assert [entry["epoch"] for entry in metrics["history"]] == [1, 2, 3]
    assert (run / "model.keras").stat().st_size > 0
    assert status["modelPath"] == f"pvc://models/{namespace}/digits/model.keras"


def test_a_trainer_over_its_memory_limit_is_reported_oom_killed(
    installed: Installed, training_namespace: tuple[str, Any], tmp_path: Path
) -> None:
    from kubernetes import client as k8s

    namespace, api = training_namespace
    custom = k8s.CustomObjectsApi(api)
    # TensorFlow alone needs more than this: the kernel kills the trainer as it starts.
    spec = _spec(installed, resources={"cpu": "1", "memory": "200Mi"}, runPolicy={"backoffLimit": 0})
    _apply(installed, sample_training(namespace, "hungry", **spec), tmp_path)
    status = wait_for_phase(custom, namespace, "hungry", "Failed", timeout=240)
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["reason"] == "OOMKilled", failed


def test_a_deleted_trainer_pod_exits_143_and_its_retry_resumes(
    installed: Installed, training_namespace: tuple[str, Any], tmp_path: Path
) -> None:
    from kubernetes import client as k8s

    namespace, api = training_namespace
    core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    volume = installed.volumes / namespace
    _claim_on_host(core, namespace, "models", volume)
    spec = _spec(installed, epochs=6, output={"claimName": "models"})
    _apply(installed, sample_training(namespace, "resumed", **spec), tmp_path)
    wait_for(
        lambda: (training_status(custom, namespace, "resumed").get("epoch") or 0) >= 1,
        timeout=240,
        what="epoch 1",
    )
    (first,) = _trainer_pods(core, namespace, "resumed")
    # What a node drain or `kubectl delete pod` does: the kubelet sends SIGTERM, then waits.
    core.delete_namespaced_pod(first.metadata.name, namespace)
    status = wait_for_phase(custom, namespace, "resumed", "Succeeded", timeout=300)
    assert status["epoch"] == 6 and status["attempts"] >= 2
    retry = _trainer_pods(core, namespace, "resumed")[-1]
    retry_log = installed.kubectl("logs", "-n", namespace, retry.metadata.name, check=True).stdout
    assert "resuming at epoch" in retry_log
    trained_again = re.findall(r"epoch (\d)/6  loss", retry_log)
    assert 1 <= len(trained_again) <= 5 and trained_again[-1] == "6"
    metrics = json.loads((volume / namespace / "resumed" / "metrics.json").read_text())
    assert [entry["epoch"] for entry in metrics["history"]] == [1, 2, 3, 4, 5, 6]
    # The first pod's end, as its terminated state reached the Job before the pod object went.
    events = installed.kubectl("get", "events", "-n", namespace, "-o", "json", check=True).stdout
    assert "Killing" in events


def test_helm_uninstall_leaves_nothing(installed: Installed) -> None:
    result = installed.helm("uninstall", RELEASE, "--wait", "--timeout", "120s")
    assert result.returncode == 0, result.stderr
    left = installed.kubectl(
        "get", "deployments,services,pods,serviceaccounts,configmaps", "-n", OPERATOR_NAMESPACE, "-o", "name"
    ).stdout.split()
    # What Kubernetes itself keeps in every namespace.
    assert set(left) <= {"serviceaccount/default", "configmap/kube-root-ca.crt"}, left
    cluster_scoped = installed.kubectl("get", "clusterroles,clusterrolebindings", "-o", "name").stdout
    assert RELEASE not in cluster_scoped
