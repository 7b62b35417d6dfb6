"""The whole product on a real control plane: manifests applied with kubectl, the operator running as its
ServiceAccount, trainer pods run by the node agent, metrics through a real Pushgateway."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnist_api import ManifestError, load_manifest_file
from tests.conftest import DataMirror
from tests.support.servers import Pushgateway

from .conftest import NodeAgents
from .controlplane import ControlPlane
from .helpers import make_claim, wait_for
from .operator_support import (
    SERVICE_ACCOUNT,
    OperatorProcess,
    apply,
    install_manifests,
    sample_training,
    start_operator,
    training_status,
    wait_for_phase,
)

pytestmark = pytest.mark.k8s
INVALID = Path(__file__).resolve().parents[1] / "resources" / "invalid"


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane,
    agents: NodeAgents,
    gateway: Pushgateway,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    install_manifests(control_plane)
    running = start_operator(control_plane, gateway.url, tmp_path_factory.mktemp("operator"))
    yield running
    running.stop()
    log = running.log()
    # An RBAC denial names the user; "forbidden" alone also covers writes into a terminating namespace.
    denied = [line for line in log.splitlines() if f'User "{SERVICE_ACCOUNT}" cannot' in line]
    assert not denied, "the manifests' RBAC was not enough:\n" + "\n".join(denied[:20])


def data_spec(mirror: DataMirror) -> dict[str, Any]:
    return {"name": "mnist", "url": mirror.idx_url, "sha256": mirror.sha256}


def small(mirror: DataMirror, **spec: Any) -> dict[str, Any]:
    """Spec overrides that keep a training to seconds on generated data."""
    fields: dict[str, Any] = {
        "dataset": data_spec(mirror),
        "epochs": 3,
        "batchSize": 64,
        "releaseCriteria": {"minTestAccuracy": 0.5},
        "resources": {"cpu": "500m", "memory": "2Gi"},
    }
    fields.update(spec)
    return fields


def pods_of(core: Any, namespace: str, name: str) -> list[Any]:
    selector = f"training.mnist-operator.io/name={name}"
    return list(core.list_namespaced_pod(namespace, label_selector=selector).items)


def test_kubectl_apply_trains_and_get_shows_live_then_final_figures(
    control_plane: ControlPlane,
    agents: NodeAgents,
    operator: OperatorProcess,
    mirror: DataMirror,
    gateway: Pushgateway,
    core: Any,
    batch: Any,
    custom: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    make_claim(core, namespace, "models")
    apply(
        control_plane,
        sample_training(namespace, "digits", **small(mirror, output={"claimName": "models"})),
        tmp_path,
    )

    seen: list[str] = []

    def finished() -> bool:
        table = control_plane.kubectl("get", "mnisttrainings", "-n", namespace, check=True).stdout
        if table not in seen:
            seen.append(table)
        return "Succeeded" in table

    wait_for(finished, timeout=240, what="kubectl get to show Succeeded", interval=0.3)
    print("\n".join(seen))  # what a user watching `kubectl get mnisttrainings` saw (pytest -s)
    header = seen[-1].splitlines()[0].split()
    assert header == ["NAME", "PHASE", "EPOCH", "ACCURACY", "VAL-ACC", "LOSS", "AGE"]
    running = [row.split() for table in seen for row in table.splitlines()[1:] if " Running " in row]
    assert running, f"never saw Running:\n{seen}"
    epochs = [int(row[2].split("/")[0]) for row in running]
    assert epochs == sorted(epochs) and max(epochs) >= 1, f"no rising epoch while Running: {epochs}"
    phases = [row.split()[1] for table in seen for row in table.splitlines()[1:] if len(row.split()) > 2]
    order = ["Pending", "Running", "Succeeded"]
    assert [order.index(p) for p in phases] == sorted(order.index(p) for p in phases), (
        f"a step back: {phases}"
    )
    final = seen[-1].splitlines()[1].split()
    assert final[:3] == ["digits", "Succeeded", "3/3"]

    status = training_status(custom, namespace, "digits")
    report = (
        agents.layout.claim_dir(namespace, "models") / namespace / "digits" / "metrics.json"
    ).read_text()
    metrics = json.loads(report)
    assert status["testAccuracy"] == round(metrics["test"]["accuracy"], 4)
    assert status["accuracy"] == round(metrics["history"][-1]["accuracy"], 4)
    assert float(final[3]) == status["accuracy"]
    assert status["modelPath"] == f"pvc://models/{namespace}/digits/model.keras"
    assert status["attempts"] == 1 and status["observedGeneration"] == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Succeeded"]["status"] == "True" and conditions["ModelPersistent"]["status"] == "True"

    wide = control_plane.kubectl(
        "get", "mnisttraining", "digits", "-n", namespace, "-o", "wide", check=True
    ).stdout
    assert "TEST-ACC" in wide and "pvc://models" in wide
    events = control_plane.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=digits", check=True
    ).stdout
    assert "JobCreated" in events and "Succeeded" in events

    (pod,) = pods_of(core, namespace, "digits")
    log = agents.logs(namespace, pod.metadata.name)
    assert re.search(r"epoch 3/3  loss \S+  accuracy", log) and "\r" not in log

    control_plane.kubectl("delete", "mnisttraining", "digits", "-n", namespace, "--wait=true", check=True)
    wait_for(
        lambda: not batch.list_namespaced_job(namespace).items, timeout=60, what="the Job to be collected"
    )
    wait_for(lambda: not pods_of(core, namespace, "digits"), timeout=60, what="the pod to be collected")
    wait_for(
        lambda: not any(g["labels"].get("training") == "digits" for g in gateway.groups()),
        timeout=30,
        what="the run's Pushgateway group to be deleted",
    )


def test_a_killed_trainer_is_retried_and_resumes_from_its_checkpoint(
    control_plane: ControlPlane,
    agents: NodeAgents,
    operator: OperatorProcess,
    mirror: DataMirror,
    core: Any,
    custom: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    make_claim(core, namespace, "models")
    apply(
        control_plane,
        sample_training(namespace, "resumed", **small(mirror, epochs=6, output={"claimName": "models"})),
        tmp_path,
    )
    wait_for(
        lambda: (training_status(custom, namespace, "resumed").get("epoch") or 0) >= 1,
        timeout=180,
        what="epoch 1",
    )
    (pid,) = agents.running_pids(namespace)
    os.kill(pid, signal.SIGKILL)  # a node failure or OOM kill: no chance to clean up

    status = wait_for_phase(custom, namespace, "resumed", "Succeeded", timeout=240)
    assert status["attempts"] == 2 and status["epoch"] == 6
    first, second = sorted(pods_of(core, namespace, "resumed"), key=lambda p: p.metadata.creation_timestamp)
    assert first.status.container_statuses[0].state.terminated.exit_code == 137
    second_log = agents.logs(namespace, second.metadata.name)
    assert "resuming at epoch" in second_log
    trained_again = re.findall(r"epoch (\d)/6  loss", second_log)
    assert 1 <= len(trained_again) <= 5 and trained_again[-1] == "6"
    report = json.loads(
        (agents.layout.claim_dir(namespace, "models") / namespace / "resumed" / "metrics.json").read_text()
    )
    assert [entry["epoch"] for entry in report["history"]] == [1, 2, 3, 4, 5, 6]


def test_a_data_error_fails_at_once_without_retries(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    mirror: DataMirror,
    core: Any,
    custom: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    dataset = {"name": "mnist", "url": mirror.mirror.url + "no-such-folder/"}
    apply(control_plane, sample_training(namespace, "no-data", **small(mirror, dataset=dataset)), tmp_path)
    status = wait_for_phase(custom, namespace, "no-data", "Failed", timeout=120)
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["reason"] == "DataUnavailable", failed
    assert "exit code 66" in failed["message"] and "spec.dataset.url" in failed["message"]
    assert status["attempts"] == 1 and len(pods_of(core, namespace, "no-data")) == 1


def test_suspended_training_creates_no_pod_until_resumed(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    mirror: DataMirror,
    core: Any,
    custom: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    spec = small(mirror, model="mlp", epochs=1, runPolicy={"suspend": True})
    apply(control_plane, sample_training(namespace, "later", **spec), tmp_path)
    wait_for_phase(custom, namespace, "later", "Suspended", timeout=60)
    assert not pods_of(core, namespace, "later")
    control_plane.kubectl(
        "patch",
        "mnisttraining",
        "later",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"runPolicy":{"suspend":false}}}',
        check=True,
    )
    wait_for_phase(custom, namespace, "later", "Succeeded", timeout=180)
    assert len(pods_of(core, namespace, "later")) == 1


def test_a_gpu_training_lands_on_the_gpu_node_only(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    mirror: DataMirror,
    core: Any,
    custom: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    for name, gpus in (("on-gpu", 1), ("on-cpu", 0)):
        spec = small(mirror, model="mlp", epochs=1, resources={"cpu": "500m", "memory": "2Gi", "gpus": gpus})
        apply(control_plane, sample_training(namespace, name, **spec), tmp_path)
    for name in ("on-gpu", "on-cpu"):
        wait_for_phase(custom, namespace, name, "Succeeded", timeout=180)
    assert [p.spec.node_name for p in pods_of(core, namespace, "on-gpu")] == ["node-gpu"]
    assert [p.spec.node_name for p in pods_of(core, namespace, "on-cpu")] == ["node-cpu"]


def test_a_finished_training_is_deleted_after_its_ttl(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    mirror: DataMirror,
    batch: Any,
    custom: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    spec = small(mirror, model="mlp", epochs=1, runPolicy={"ttlSecondsAfterFinished": 3})
    apply(control_plane, sample_training(namespace, "short-lived", **spec), tmp_path)
    wait_for_phase(custom, namespace, "short-lived", "Succeeded", timeout=180)
    gone = control_plane.kubectl(
        "wait", "--for=delete", "mnisttraining/short-lived", "-n", namespace, "--timeout=60s"
    )
    assert gone.returncode == 0, gone.stderr
    wait_for(
        lambda: not batch.list_namespaced_job(namespace).items, timeout=60, what="its Job to be collected"
    )


@pytest.mark.parametrize("manifest", sorted(INVALID.glob("*.yaml")), ids=lambda p: p.stem)
def test_invalid_manifests_are_refused_with_the_same_words_here_and_locally(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str, manifest: Path
) -> None:
    expected = manifest.read_text().splitlines()[0].removeprefix("# expect: ")
    refused = control_plane.kubectl("apply", "-n", namespace, "-f", str(manifest))
    assert refused.returncode != 0, f"the API server accepted {manifest.name}"
    assert expected in refused.stderr, refused.stderr
    with pytest.raises(ManifestError) as local:
        load_manifest_file(manifest)
    assert expected in str(local.value)


def test_there_are_at_least_ten_invalid_manifests() -> None:
    assert len(list(INVALID.glob("*.yaml"))) >= 10


def test_kubectl_explain_shows_the_models_descriptions(
    control_plane: ControlPlane, operator: OperatorProcess
) -> None:
    explained = control_plane.kubectl("explain", "mnisttraining.spec.epochs", check=True).stdout
    assert "Training epochs." in explained and "integer" in explained
