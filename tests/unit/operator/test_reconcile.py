"""The operator's three parts (trainings, status writer, Pushgateway pollers) and their assembly, each
driven through its public calls with a fake of the one API client (fake_kube.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import generate_latest

from mnist_operator import clock, opmetrics
from mnist_operator.config import BasicAuth, Config
from mnist_operator.kube import ApiError
from mnist_operator.reconcile import Operator
from mnist_operator.trainings import JobTakenError

from .fake_kube import FakeKube

pytestmark = pytest.mark.asyncio
NOW = "2026-12-04T10:00:00Z"
Posted = list[tuple[str, str, str]]


def training(name: str = "digits", uid: str = "u-1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "training.mnist-operator.io/v1alpha1",
        "kind": "MnistTraining",
        "metadata": {"name": name, "namespace": "ml", "uid": uid, "generation": 1},
        "spec": {"epochs": 4, **spec},
    }


def job_event(name: str = "digits", uid: str = "u-1", **status: Any) -> dict[str, Any]:
    labels = {"training.mnist-operator.io/name": name, "training.mnist-operator.io/uid": uid}
    return {
        "metadata": {"name": f"{name}-trainer", "namespace": "ml", "labels": labels},
        "spec": {"suspend": False},
        "status": status,
    }


def make_operator(kube: FakeKube, posted: Posted, **config: Any) -> Operator:
    settings = Config(status_coalesce_seconds=0.01, **config)
    return Operator(
        settings, kube, lambda _body, kind, reason, _message: posted.append((kind, reason, "")), lambda: NOW
    )  # type: ignore[arg-type]


async def settle() -> None:
    await asyncio.sleep(0.1)


async def test_a_new_training_gets_one_job_and_one_jobcreated_event_across_restarts() -> None:
    kube, posted = FakeKube(), []
    operator = make_operator(kube, posted)
    assert await operator.ensure_job(training()) == "digits-trainer"
    restarted = make_operator(kube, posted)
    assert await restarted.ensure_job(training()) == "digits-trainer"  # found, not created again
    assert list(kube.jobs) == [("ml", "digits-trainer")]
    assert [reason for _, reason, _ in posted] == ["JobCreated"]


async def test_a_job_of_another_training_with_the_same_name_is_not_adopted() -> None:
    kube, posted = FakeKube(), []
    await make_operator(kube, posted).ensure_job(training(uid="old"))
    with pytest.raises(JobTakenError, match="belongs to another resource"):
        await make_operator(kube, posted).ensure_job(training(uid="new"))


async def test_changes_within_the_window_make_one_status_write_and_a_phase_change_one_event() -> None:
    kube, posted = FakeKube(), []
    operator = make_operator(kube, posted)
    await operator.ensure_job(training())
    await operator.training_event("ADDED", training())
    for _ in range(3):
        await operator.child_event("job", "MODIFIED", job_event(active=1))
    await settle()
    assert len(kube.statuses) == 1
    assert kube.statuses[0][2]["phase"] in ("Pending", "Running")
    # The same facts again: nothing new to write.
    await operator.child_event("job", "MODIFIED", job_event(active=1))
    await settle()
    assert len(kube.statuses) == 1
    await operator.child_event("job", "MODIFIED", job_event(succeeded=1, conditions=[
        {"type": "Complete", "status": "True", "lastTransitionTime": NOW}
    ]))  # fmt: skip
    await settle()
    assert kube.statuses[-1][2]["phase"] == "Succeeded"
    assert [reason for _, reason, _ in posted][-1] == "Succeeded"


async def test_a_failed_status_write_is_retried_until_it_lands() -> None:
    kube, posted = FakeKube(failures=[ApiError(503, "Service Unavailable", "{}")]), []
    operator = make_operator(kube, posted)
    operator.status.retry_seconds = (0.01,)
    await operator.ensure_job(training())
    await operator.child_event("job", "ADDED", job_event(active=1))
    await settle()
    assert len(kube.statuses) == 1 and not kube.failures


async def test_the_phase_gauge_counts_the_known_trainings_at_scrape_time() -> None:
    kube, posted = FakeKube(), []
    operator = make_operator(kube, posted)
    for index in range(3):
        body = training(name=f"t{index}", uid=f"u{index}")
        await operator.ensure_job(body)
        await operator.child_event("job", "ADDED", job_event(name=f"t{index}", uid=f"u{index}", active=1))
    await settle()
    await operator.training_event("DELETED", training(name="t0", uid="u0"))
    scraped = generate_latest(opmetrics.REGISTRY).decode()
    running = sum(phase == "Running" for phase in operator.phases())
    assert f'mnist_operator_trainings{{phase="Running"}} {float(running)}' in scraped
    assert len(operator.phases()) == 2  # the deleted one is gone from the count at once


async def test_suspending_patches_the_job_and_a_due_ttl_deletes_this_very_training() -> None:
    kube, posted = FakeKube(), []
    operator = make_operator(kube, posted)
    await operator.set_suspended(training(), True)
    assert kube.suspends == [("ml", "digits-trainer", True)]
    finished = {**training(runPolicy={"ttlSecondsAfterFinished": 60})}
    finished["status"] = {"phase": "Succeeded", "completionTime": "2026-01-01T00:00:00Z"}
    assert await operator.expire_if_due(finished)
    assert kube.deleted == [("ml", "digits", "u-1")]
    just_finished = {**finished, "status": {"phase": "Succeeded", "completionTime": clock.utc_now()}}
    running = {**finished, "status": {"phase": "Running"}}
    assert not await operator.expire_if_due(just_finished) and not await operator.expire_if_due(running)
    assert len(kube.deleted) == 1


async def test_the_operators_credentials_go_to_its_own_pushgateway_only() -> None:
    auth = BasicAuth("metrics", "secret")
    operator = make_operator(FakeKube(), [], pushgateway_url="http://pgw:9091", pushgateway_auth=auth)
    assert operator.pollers.auth_for("http://pgw:9091") == auth
    assert operator.pollers.auth_for("http://someone-elses:9091") is None
    from mnist_api import validate_resource

    elsewhere = validate_resource(training(metrics={"pushgatewayUrl": "http://someone-elses:9091/"}))
    assert operator.pollers.url_for(elsewhere) == "http://someone-elses:9091"
    assert operator.metrics_for(elsewhere) is None  # not polled yet: nothing to say, not "no metrics"


async def test_a_sweep_needs_a_reachable_pushgateway_with_groups_before_it_lists_trainings() -> None:
    kube = FakeKube()
    operator = make_operator(kube, [], pushgateway_url="http://127.0.0.1:9")
    assert await operator.sweep_orphans() == 0  # nothing polled: nothing to compare, no LIST made
