"""The operator against kmock: create → one Job; restart → no duplicate; Job status → resource status;
metrics pushed to a real Pushgateway → live figures; delete → the Pushgateway group is gone."""

import asyncio
import urllib.request
from functools import partial
from typing import Any

import kmock
import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from mnist_api import load_manifests
from mnist_api.metrics import grouping_key
from mnist_operator.builders import build_trainer_job, build_worker_service
from mnist_operator.config import Config
from mnist_operator.naming import child_labels
from tests.kmock.conftest import Api, eventually, running_operator
from tests.support.servers import Pushgateway, free_port, start_pushgateway

pytestmark = pytest.mark.asyncio
TRAININGS = "/apis/training.mnist-operator.io/v1alpha1/namespaces/ml/mnisttrainings"
JOBS = "/apis/batch/v1/namespaces/ml/jobs"


def training_body(name: str = "digits", uid: str = "uid-digits", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "training.mnist-operator.io/v1alpha1",
        "kind": "MnistTraining",
        "metadata": {"name": name, "namespace": "ml", "uid": uid, "generation": 1},
        "spec": {"epochs": 3, **spec},
    }


def stored(kube: kmock.KubernetesEmulator, resource: str, name: str) -> dict[str, Any]:
    (found,) = [
        obj
        for key, obj in kube.objects.items()
        if key[0] == kmock.resource(resource) and key[2] == name and not obj.deleted
    ]
    return dict(found.raw)


def job_objects(kube: kmock.KubernetesEmulator) -> list[Any]:
    jobs = kmock.resource("batch/v1/jobs")
    return [key for key, obj in kube.objects.items() if key[0] == jobs and not obj.deleted]


def training_status(kube: kmock.KubernetesEmulator) -> dict[str, Any]:
    found: dict[str, Any] = stored(kube, "training.mnist-operator.io/v1alpha1/mnisttrainings", "digits")
    return found.get("status") or {}


def jobs_created(kube: kmock.KubernetesEmulator) -> int:
    return len([request for request in kube["post"] if request.url.path.endswith("/jobs")])


async def test_create_makes_exactly_the_built_job(
    kube: kmock.KubernetesEmulator, api: Api, operator_env: dict[str, str]
) -> None:
    body = training_body()
    async with running_operator():
        await api.call("POST", TRAININGS, body)
        job = await eventually(lambda: stored(kube, "batch/v1/jobs", "digits-trainer"), what="the Job")
        (training,) = load_manifests(yaml.safe_dump(body))
        expected = build_trainer_job(training, Config.from_env(operator_env))
        assert job["spec"] == expected["spec"]
        assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-digits"
        status = await eventually(
            lambda: (
                stored(kube, "training.mnist-operator.io/v1alpha1/mnisttrainings", "digits")
                .get("status", {})
                .get("jobName")
            ),
            what="status.jobName",
        )
        assert status == "digits-trainer"
    # kmock sets no resourceVersion, so kopf cannot tell a stale event from a fresh one and may run the
    # idempotent create handler again: what must hold is that exactly one Job exists.
    assert jobs_created(kube) >= 1 and len(job_objects(kube)) == 1


async def test_a_two_worker_training_gets_a_headless_service_and_an_indexed_job(
    kube: kmock.KubernetesEmulator, api: Api, operator_env: dict[str, str]
) -> None:
    body = training_body(workers=2)
    (training,) = load_manifests(yaml.safe_dump(body))
    status = partial(training_status, kube)
    async with running_operator():
        await api.call("POST", TRAININGS, body)
        job = await eventually(lambda: stored(kube, "batch/v1/jobs", "digits-trainer"), what="the Job")
        service = stored(kube, "v1/services", "digits-trainer")  # created before the Job
        assert service["spec"] == build_worker_service(training)["spec"]
        assert service["metadata"]["ownerReferences"][0]["uid"] == "uid-digits"
        assert job["spec"] == build_trainer_job(training, Config.from_env(operator_env))["spec"]
        assert (job["spec"]["completionMode"], job["spec"]["completions"]) == ("Indexed", 2)
        assert job["spec"]["template"]["spec"]["subdomain"] == "digits-trainer"

        # Play the Job controller and the kubelet: both workers run, one of them Ready so far.
        await api.call(
            "PATCH",
            f"{JOBS}/digits-trainer/status",
            {"status": {"active": 2, "ready": 1, "startTime": "2026-11-23T10:00:00Z"}},
            "application/merge-patch+json",
        )
        for index in (1, 0):
            pod = {
                "metadata": {
                    "name": f"digits-trainer-{index}-x1",
                    "namespace": "ml",
                    "labels": build_labels(),
                    "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
                    "creationTimestamp": f"2026-11-23T10:00:0{2 - index}Z",
                },
                "status": {
                    "phase": "Running",
                    "containerStatuses": [{"name": "trainer", "state": {"running": {}}}],
                },
            }
            await api.call("POST", "/api/v1/namespaces/ml/pods", pod)
        await eventually(lambda: status().get("phase") == "Running", what="phase Running")
        assert (status()["workers"], status()["workersReady"], status()["workersRunning"]) == (2, 1, 2)
        assert (status()["workerReadiness"], status()["podName"]) == ("1/2", "digits-trainer-0-x1")
    assert len(job_objects(kube)) == 1


async def test_an_operator_restart_creates_no_duplicate(
    kube: kmock.KubernetesEmulator, api: Api, operator_env: dict[str, str]
) -> None:
    async with running_operator():
        await api.call("POST", TRAININGS, training_body())
        await eventually(lambda: stored(kube, "batch/v1/jobs", "digits-trainer"), what="the Job")
    async with running_operator():
        await asyncio.sleep(2)  # the restarted operator resumes the existing resource
    assert len(job_objects(kube)) == 1


async def test_job_status_and_pushed_metrics_become_the_resource_status(
    kube: kmock.KubernetesEmulator,
    api: Api,
    gateway: Pushgateway,
    operator_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics_port = free_port()
    monkeypatch.setenv("MNIST_OPERATOR_METRICS_PORT", str(metrics_port))
    registry = CollectorRegistry()
    figures = {"epochs_count": 2, "accuracy": 0.91234, "loss": 0.25, "val_accuracy": 0.93, "val_loss": 0.2}
    for name, value in figures.items():
        Gauge(f"gangplank_train_{name}", name, registry=registry).set(value)

    status = partial(training_status, kube)

    async with running_operator():
        await api.call("POST", TRAININGS, training_body())
        await eventually(lambda: stored(kube, "batch/v1/jobs", "digits-trainer"), what="the Job")
        await start_the_trainer(api)
        await eventually(lambda: status().get("phase") == "Running", what="phase Running")
        pushadd_to_gateway(
            gateway.url, "mnist", registry, grouping_key=grouping_key("ml", "digits", "uid-digits")
        )
        await eventually(lambda: status().get("epoch") == 2, what="epoch 2 from the Pushgateway")
        assert (status()["accuracy"], status()["progress"], status()["podName"]) == (
            0.9123,
            "2/3",
            "digits-trainer-x1",
        )
        await api.call(
            "PATCH",
            f"{JOBS}/digits-trainer/status",
            {
                "status": {
                    "active": 0,
                    "succeeded": 1,
                    "completionTime": "2026-11-23T10:05:00Z",
                    "conditions": [{"type": "Complete", "status": "True"}],
                }
            },
            "application/merge-patch+json",
        )
        await eventually(lambda: status().get("phase") == "Succeeded", what="phase Succeeded")
        conditions = {c["type"]: c["status"] for c in status()["conditions"]}
        assert conditions["Succeeded"] == "True" and conditions["Running"] == "False"
        assert conditions["MetricsAvailable"] == "True"

        # The operator's own metrics, as Prometheus would scrape them. The operator counts the write once
        # the API server has answered it, which may be just after this test reads the stored status.
        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
                return str(reply.read().decode())

        await eventually(
            lambda: sample(scrape(), 'mnist_operator_trainings{phase="Succeeded"}') >= 1,
            what="the Succeeded training counted",
        )
        exposition = scrape()
        assert sample(exposition, "mnist_operator_trainings_created_total") >= 1
        assert sample(exposition, 'mnist_operator_trainings_finished_total{phase="Succeeded"}') >= 1
        assert sample(exposition, 'mnist_operator_trainings{phase="Succeeded"}') >= 1
        assert sample(exposition, 'mnist_operator_pushgateway_polls_total{outcome="ok"}') >= 1


async def test_pushgateway_outage_is_a_condition_not_a_crash(
    kube: kmock.KubernetesEmulator, api: Api, gateway: Pushgateway, operator_env: dict[str, str]
) -> None:
    def condition() -> dict[str, Any]:
        status = (
            stored(kube, "training.mnist-operator.io/v1alpha1/mnisttrainings", "digits").get("status") or {}
        )
        return {c["type"]: c for c in status.get("conditions", [])}.get("MetricsAvailable", {})

    async with running_operator():
        await api.call("POST", TRAININGS, training_body())
        await eventually(lambda: condition().get("reason") == "NoMetricsYet", what="NoMetricsYet")
        gateway.stop()
        await eventually(lambda: condition().get("reason") == "PushgatewayUnreachable", what="unreachable")
        restarted = start_pushgateway(int(gateway.url.rsplit(":", 1)[1]))
        try:
            await eventually(lambda: condition().get("reason") == "NoMetricsYet", what="recovery")
        finally:
            restarted.stop()


async def test_delete_removes_the_runs_pushgateway_group(
    kube: kmock.KubernetesEmulator, api: Api, gateway: Pushgateway, operator_env: dict[str, str]
) -> None:
    registry = CollectorRegistry()
    Gauge("gangplank_train_epochs_count", "epochs", registry=registry).set(1)
    pushadd_to_gateway(
        gateway.url, "mnist", registry, grouping_key=grouping_key("ml", "digits", "uid-digits")
    )
    pushadd_to_gateway(gateway.url, "mnist", registry, grouping_key=grouping_key("ml", "other", "uid-other"))
    async with running_operator():
        await api.call("POST", TRAININGS, training_body())
        # "other" is a live training: its group is no orphan, so only the delete could take it (the
        # operator's start-up sweep deletes the groups of trainings that do not exist).
        await api.call("POST", TRAININGS, training_body("other", "uid-other"))
        await eventually(lambda: stored(kube, "batch/v1/jobs", "digits-trainer"), what="the Job")
        await api.call("DELETE", f"{TRAININGS}/digits")
        await eventually(
            lambda: not any(g["labels"].get("training") == "digits" for g in gateway.groups()),
            what="group deleted",
        )
    assert [g["labels"]["training"] for g in gateway.groups() if "training" in g["labels"]] == ["other"]


def sample(exposition: str, name: str) -> float:
    (line,) = [line for line in exposition.splitlines() if line.startswith(name + " ")]
    return float(line.rsplit(" ", 1)[1])


async def start_the_trainer(api: Api) -> None:
    """Play the Job controller and the kubelet: the Job turns active and its pod runs."""
    await api.call(
        "PATCH",
        f"{JOBS}/digits-trainer/status",
        {"status": {"active": 1, "startTime": "2026-11-23T10:00:00Z"}},
        "application/merge-patch+json",
    )
    pod = {
        "metadata": {
            "name": "digits-trainer-x1",
            "namespace": "ml",
            "labels": build_labels(),
            "creationTimestamp": "2026-11-23T10:00:01Z",
        },
        "status": {"phase": "Running", "containerStatuses": [{"name": "trainer", "state": {"running": {}}}]},
    }
    await api.call("POST", "/api/v1/namespaces/ml/pods", pod)


def build_labels() -> dict[str, str]:
    return child_labels(load_manifests(yaml.safe_dump(training_body()))[0])


async def test_changes_within_the_coalescing_window_make_one_status_write(
    kube: kmock.KubernetesEmulator, api: Api, operator_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A window long enough that the Job, its status change and its pod surely fall into it.
    monkeypatch.setenv("MNIST_OPERATOR_STATUS_COALESCE_SECONDS", "2")

    def status_writes() -> int:
        return len([r for r in kube["patch"] if r.url.path.endswith("/mnisttrainings/digits/status")])

    status = partial(training_status, kube)

    async with running_operator():
        await api.call("POST", TRAININGS, training_body())
        await eventually(lambda: stored(kube, "batch/v1/jobs", "digits-trainer"), what="the Job")
        await start_the_trainer(api)
        assert status_writes() == 0  # nothing before the window closes
        await eventually(lambda: status().get("phase") == "Running", what="phase Running")
        await asyncio.sleep(2.5)  # a second write, had there been one, would have come by now
        assert status_writes() == 1
        assert (status()["jobName"], status()["podName"], status()["attempts"]) == (
            "digits-trainer",
            "digits-trainer-x1",
            1,
        )


async def test_children_are_watched_through_a_server_side_label_selector(
    kube: kmock.KubernetesEmulator, api: Api, operator_env: dict[str, str]
) -> None:
    def child_watches() -> dict[str, set[str]]:
        selectors: dict[str, set[str]] = {"jobs": set(), "pods": set()}
        for request in kube["get"]:
            plural = request.url.path.rsplit("/", 1)[-1]
            if plural in selectors and request.params.get("watch") == "true":
                selectors[plural].add(request.params.get("labelSelector", ""))
        return selectors

    async with running_operator():
        await api.call("POST", TRAININGS, training_body())
        await eventually(lambda: stored(kube, "batch/v1/jobs", "digits-trainer"), what="the Job")
        watches = await eventually(lambda: all(child_watches().values()) and child_watches(), what="watches")
    # Never every Job and pod in the cluster, decoded and then dropped.
    assert watches == {
        "jobs": {"app.kubernetes.io/managed-by=mnist-operator"},
        "pods": {"app.kubernetes.io/managed-by=mnist-operator"},
    }
