"""Trainings (trainings.py): one Job per training, never another training's, suspend and the TTL.
Driven through the Operator's public calls with a fake of the one API client (fake_kube.py)."""

from __future__ import annotations

from typing import Any

import pytest

from mnist_operator import clock
from mnist_operator.builders import UnrunnableTrainingError
from mnist_operator.trainings import BaseModelNotReadyError, BaseModelUnusableError, JobTakenError

from .fake_kube import FakeKube
from .parts import job_event, make_operator, pod_event, settle, training

pytestmark = pytest.mark.asyncio


async def test_a_new_training_gets_one_job_and_one_jobcreated_event_across_restarts() -> None:
    """One Event tells of the new Job and what the training waits for, with its first status (not
    JobCreated and then Pending: one Event per training fewer in a burst of creations)."""
    kube, posted = FakeKube(), []
    operator = make_operator(kube, posted)
    assert await operator.ensure_job(training()) == "digits-trainer"
    await operator.training_event("ADDED", training())
    await operator.child_event("job", "ADDED", job_event())
    await settle()
    assert [status["phase"] for _, _, status in kube.statuses] == ["Pending"]
    restarted = make_operator(kube, posted)
    await restarted.training_event("ADDED", {**training(), "status": kube.statuses[-1][2]})
    assert await restarted.ensure_job(training()) == "digits-trainer"  # found, not created again
    await restarted.child_event("job", "ADDED", job_event())
    await settle()
    assert list(kube.jobs) == [("ml", "digits-trainer")]
    assert posted == [
        (
            "Normal",
            "JobCreated",
            "created Job digits-trainer; waiting for the trainer pod to be scheduled and started",
        )
    ]


async def test_a_jobcreated_event_after_the_first_status_is_posted_at_once() -> None:
    """The Job's watch event can come before the creating call returns (a busy event loop): the first
    status is written then, and the Event follows with the Job, alone."""
    kube, posted = FakeKube(), []
    operator = make_operator(kube, posted)
    await operator.training_event("ADDED", training())
    await operator.child_event("job", "ADDED", job_event())
    await settle()
    assert [reason for _, reason, _ in posted] == ["Pending"]
    assert await operator.ensure_job(training()) == "digits-trainer"
    assert posted[-1] == ("Normal", "JobCreated", "created Job digits-trainer")


async def test_a_pod_running_before_the_first_status_write_gets_its_own_event() -> None:
    kube, posted = FakeKube(), []
    operator = make_operator(kube, posted)
    assert await operator.ensure_job(training()) == "digits-trainer"
    await operator.training_event("ADDED", training())
    await operator.child_event("job", "ADDED", job_event(active=1))
    await operator.child_event("pod", "ADDED", pod_event(phase="Running"))
    await settle()
    assert [(kind, reason) for kind, reason, _ in posted] == [("Normal", "JobCreated"), ("Normal", "Running")]
    assert posted[0][2] == "created Job digits-trainer"


async def test_a_job_of_another_training_with_the_same_name_is_not_adopted() -> None:
    kube, posted = FakeKube(), []
    await make_operator(kube, posted).ensure_job(training(uid="old"))
    with pytest.raises(JobTakenError, match="belongs to another resource"):
        await make_operator(kube, posted).ensure_job(training(uid="new"))


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


async def test_a_base_model_named_by_training_waits_for_it_then_mounts_its_output_claim() -> None:
    kube, posted = FakeKube(), []
    operator = make_operator(kube, posted)
    evaluate = training("check", uid="u-2", task="evaluate", baseModel={"training": "digits"})
    with pytest.raises(BaseModelNotReadyError, match="no such MnistTraining"):
        await operator.ensure_job(evaluate)
    digits = training(output={"claimName": "models"})
    kube.trainings[("ml", "digits")] = {**digits, "status": {"phase": "Running"}}
    with pytest.raises(BaseModelNotReadyError, match=r"waiting for baseModel\.training digits to succeed"):
        await operator.ensure_job(evaluate)
    assert kube.statuses[-1][2]["phase"] == "Pending" and "it is Running" in kube.statuses[-1][2]["message"]
    assert not kube.jobs
    kube.trainings[("ml", "digits")] = {**digits, "status": {"phase": "Succeeded"}}
    assert await operator.ensure_job(evaluate) == "check-trainer"
    volumes = kube.jobs[("ml", "check-trainer")]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "base-model", "persistentVolumeClaim": {"claimName": "models"}} in volumes


async def test_a_training_waiting_for_its_base_model_keeps_saying_so_until_its_job_exists() -> None:
    kube, posted = FakeKube(), []
    operator = make_operator(kube, posted)
    evaluate = training("check", uid="u-2", task="evaluate", baseModel={"training": "digits"})
    digits = training(output={"claimName": "models"})
    kube.trainings[("ml", "digits")] = {**digits, "status": {"phase": "Running"}}
    with pytest.raises(BaseModelNotReadyError):
        await operator.ensure_job(evaluate)
    # The echo of that status write, as the resource's watch brings it back.
    await operator.training_event("MODIFIED", {**evaluate, "status": kube.statuses[-1][2]})
    await settle()
    assert "waiting for baseModel.training digits to succeed" in kube.statuses[-1][2]["message"]
    kube.trainings[("ml", "digits")] = {**digits, "status": {"phase": "Succeeded"}}
    await operator.ensure_job(evaluate)
    await operator.child_event("job", "ADDED", kube.jobs[("ml", "check-trainer")])
    await settle()
    assert "baseModel" not in kube.statuses[-1][2]["message"]  # the Job's own status now


@pytest.mark.parametrize(
    ("referenced", "message"),
    [
        ({"spec": {}, "status": {"phase": "Succeeded"}}, "kept its model in an emptyDir"),
        ({"spec": {"output": {"claimName": "m"}}, "status": {"phase": "Failed"}}, "digits failed"),
        (
            {"spec": {"output": {"claimName": "m", "formats": ["onnx"]}}, "status": {"phase": "Succeeded"}},
            "does not export model.keras",
        ),
    ],
)
async def test_a_base_model_that_can_never_exist_fails_the_training(
    referenced: dict[str, Any], message: str
) -> None:
    kube, posted = FakeKube(), []
    body = training()
    kube.trainings[("ml", "digits")] = {**body, "spec": referenced["spec"], "status": referenced["status"]}
    evaluate = training("check", uid="u-2", task="evaluate", baseModel={"training": "digits"})
    with pytest.raises(BaseModelUnusableError, match=message):
        await make_operator(kube, posted).ensure_job(evaluate)
    assert kube.statuses[-1][2]["phase"] == "Failed" and not kube.jobs


async def test_a_multi_worker_training_gets_its_headless_service_first_and_once() -> None:
    kube, posted = FakeKube(), []
    operator = make_operator(kube, posted)
    assert await operator.ensure_job(training(workers=2)) == "digits-trainer"
    assert await make_operator(kube, posted).ensure_job(training(workers=2)) == "digits-trainer"
    assert kube.created == ["Service", "Job"], "the workers look each other up as soon as they start"
    (service,) = kube.services.values()
    assert service["metadata"]["name"] == "digits-trainer" and service["spec"]["clusterIP"] == "None"
    assert kube.jobs[("ml", "digits-trainer")]["spec"]["completionMode"] == "Indexed"


async def test_a_single_worker_training_gets_no_service() -> None:
    kube, posted = FakeKube(), []
    await make_operator(kube, posted).ensure_job(training())
    assert kube.created == ["Job"] and not kube.services


async def test_a_service_of_another_training_with_the_same_name_is_not_adopted() -> None:
    kube, posted = FakeKube(), []
    await make_operator(kube, posted).ensure_job(training(uid="old", workers=2))
    del kube.jobs[("ml", "digits-trainer")]  # the old Job is gone already, its Service not yet
    with pytest.raises(JobTakenError, match="Service digits-trainer exists but belongs to another"):
        await make_operator(kube, posted).ensure_job(training(uid="new", workers=2))
    assert not kube.jobs, "no Job before its workers can find each other"


async def test_a_multi_worker_training_whose_service_cannot_be_named_fails() -> None:
    kube, posted = FakeKube(), []
    with pytest.raises(UnrunnableTrainingError):
        await make_operator(kube, posted).ensure_job(training("2-digits", workers=2))
    assert (
        kube.statuses[-1][2]["phase"] == "Failed"
        and "must start with a letter" in kube.statuses[-1][2]["message"]
    )
    assert not kube.jobs and not kube.services
