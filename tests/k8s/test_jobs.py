"""The real Job controller, scheduler and garbage collector, with pods run by the real nodes' kubelets."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.support.k8s.helpers import condition, job_manifest, pod_manifest, python_container, wait_for

from .conftest import GPU_RESOURCE, GPU_TOLERATION, Cluster

pytestmark = pytest.mark.k8s


def job_pods(core: Any, namespace: str, job: str) -> list[Any]:
    return list(
        core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job}").items
    )


def test_job_runs_to_complete(core: Any, batch: Any, cluster: Cluster, namespace: str) -> None:
    code = "import os; print('trained', os.environ['HOSTNAME'])"
    batch.create_namespaced_job(namespace, job_manifest("hello", code, image=cluster.images["trainer"]))

    job = wait_for(
        lambda: (j := batch.read_namespaced_job("hello", namespace)) and condition(j, "Complete") and j,
        timeout=60,
        what="Job hello to complete",
    )
    assert condition(job, "Complete").status == "True"
    assert job.status.succeeded == 1
    assert not job.status.failed

    [pod] = job_pods(core, namespace, "hello")
    assert pod.spec.node_name == "node-cpu"  # node-gpu is tainted and the pod has no toleration
    assert pod.status.phase == "Succeeded"
    [status] = pod.status.container_statuses
    assert status.state.terminated.exit_code == 0
    assert status.state.terminated.reason == "Completed"
    # The process really ran in the pod: it printed its pod name, the container's hostname.
    assert cluster.logs(namespace, pod.metadata.name).strip() == f"trained {pod.metadata.name}"


def test_failing_job_is_retried_until_backoff_limit(
    core: Any, batch: Any, cluster: Cluster, namespace: str
) -> None:
    # backoffLimit 1: the controller makes a second pod after its 10 s back-off, then gives up.
    batch.create_namespaced_job(
        namespace,
        job_manifest(
            "broken",
            "import sys; print('boom'); sys.exit(3)",
            image=cluster.images["trainer"],
            backoff_limit=1,
        ),
    )

    job = wait_for(
        lambda: (j := batch.read_namespaced_job("broken", namespace)) and condition(j, "Failed") and j,
        timeout=90,
        what="Job broken to fail",
    )
    failed = condition(job, "Failed")
    assert failed.status == "True"
    assert failed.reason == "BackoffLimitExceeded"
    assert job.status.failed == 2
    pods = job_pods(core, namespace, "broken")
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Failed"
        terminated = pod.status.container_statuses[0].state.terminated
        assert (terminated.exit_code, terminated.reason) == (3, "Error")
        assert cluster.logs(namespace, pod.metadata.name).strip() == "boom"


def test_on_failure_restarts_in_place(core: Any, batch: Any, cluster: Cluster, namespace: str) -> None:
    """restartPolicy OnFailure: same pod, restartCount bumped; the emptyDir survives restarts."""
    code = (
        "import pathlib, sys\n"
        "p = pathlib.Path('/scratch/attempts')\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n)); print('attempt', n)\n"
        "sys.exit(0 if n == 3 else 1)\n"
    )
    manifest = job_manifest(
        "flaky", code, image=cluster.images["trainer"], backoff_limit=5, restart_policy="OnFailure"
    )
    template = manifest["spec"]["template"]["spec"]
    template["volumes"].append({"name": "scratch", "emptyDir": {}})
    template["containers"][0]["volumeMounts"].append({"name": "scratch", "mountPath": "/scratch"})
    batch.create_namespaced_job(namespace, manifest)

    wait_for(
        lambda: condition(batch.read_namespaced_job("flaky", namespace), "Complete"),
        timeout=60,
        what="Job flaky to complete",
    )
    [pod] = job_pods(core, namespace, "flaky")
    status = pod.status.container_statuses[0]
    assert status.restart_count == 2
    assert status.last_state.terminated.exit_code == 1
    # `kubectl logs` shows the last container; it counted 3 because the emptyDir kept the first two's
    # writes (the kubelet has already removed the earlier containers and their logs).
    assert cluster.logs(namespace, pod.metadata.name).split() == ["attempt", "3"]


def test_gpu_pod_lands_only_on_the_gpu_node(core: Any, batch: Any, cluster: Cluster, namespace: str) -> None:
    image = cluster.images["trainer"]
    gpu_container = python_container(
        "import time; time.sleep(60)", image=image, resources={"limits": {GPU_RESOURCE: "1"}}
    )
    for name in ("gpu-a", "gpu-b"):
        core.create_namespaced_pod(namespace, pod_manifest(name, gpu_container, tolerations=[GPU_TOLERATION]))
    core.create_namespaced_pod(
        namespace, pod_manifest("cpu-only", python_container("print('cpu')", image=image))
    )

    def scheduled() -> dict[str, Any] | None:
        pods = {p.metadata.name: p for p in core.list_namespaced_pod(namespace).items}
        placed = [p for p in pods.values() if p.spec.node_name]
        pending = [
            p for p in pods.values() if (c := condition(p, "PodScheduled")) and c.reason == "Unschedulable"
        ]
        return pods if len(placed) == 2 and len(pending) == 1 else None

    pods = wait_for(scheduled, timeout=60, what="two pods placed and one unschedulable")
    gpu_pods = [p for p in pods.values() if p.metadata.name.startswith("gpu-")]
    # The node has exactly one GPU: one GPU pod runs there, the other waits for it.
    [running] = [p for p in gpu_pods if p.spec.node_name]
    [waiting] = [p for p in gpu_pods if not p.spec.node_name]
    assert running.spec.node_name == "node-gpu"
    assert "Insufficient nvidia.com/gpu" in condition(waiting, "PodScheduled").message
    assert pods["cpu-only"].spec.node_name == "node-cpu"


def test_deleting_a_job_garbage_collects_its_pods(
    core: Any, batch: Any, cluster: Cluster, namespace: str
) -> None:
    batch.create_namespaced_job(
        namespace,
        job_manifest(
            "sleepy",
            "import time; time.sleep(300)",
            image=cluster.images["trainer"],
            parallelism=2,
            completions=2,
        ),
    )

    def both_running() -> list[int] | None:
        pids = cluster.container_pids(namespace)
        return pids if len(pids) == 2 else None

    pids = wait_for(both_running, timeout=60, what="both pods of Job sleepy running as containers")
    assert all(p.status.phase == "Running" for p in job_pods(core, namespace, "sleepy"))

    batch.delete_namespaced_job("sleepy", namespace, propagation_policy="Background")

    # The garbage collector deletes the orphaned pods; the kubelets stop their containers.
    wait_for(
        lambda: not job_pods(core, namespace, "sleepy"), timeout=60, what="pods of Job sleepy to be deleted"
    )
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=30, what="the containers' processes to end")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
