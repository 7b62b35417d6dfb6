"""The status writer (status_writer.py): coalesced status writes, an Event per phase change, retries.
Driven through the Operator's public calls with a fake of the one API client (fake_kube.py)."""

from __future__ import annotations

import asyncio

import pytest

from mnist_operator.kube import ApiError

from .fake_kube import FakeKube
from .parts import NOW, job_event, make_operator, settle, training

pytestmark = pytest.mark.asyncio


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


async def test_a_status_write_waits_while_a_job_is_being_created() -> None:
    """Creations first (priority.py): a burst of new trainings gets its Jobs before their statuses."""
    kube, posted = FakeKube(), []
    operator = make_operator(kube, posted)
    await operator.ensure_job(training())
    await operator.training_event("ADDED", training())
    async with operator.creations.creating():  # another training's Job on its way
        await operator.child_event("job", "ADDED", job_event(active=1))
        await settle()
        assert not kube.statuses and not posted
    await settle()
    assert len(kube.statuses) == 1
    assert [reason for _, reason, _ in posted] == ["JobCreated"]


async def test_creations_that_never_end_delay_a_status_write_by_max_wait_at_most() -> None:
    kube, posted = FakeKube(), []
    operator = make_operator(kube, posted)
    operator.creations.max_wait = 0.05
    await operator.ensure_job(training())
    await operator.training_event("ADDED", training())
    async with operator.creations.creating():
        await operator.child_event("job", "ADDED", job_event(active=1))
        await settle()
        assert len(kube.statuses) == 1


async def test_new_figures_are_written_without_waiting_for_the_coalescing_window() -> None:
    """A poll's news: the next poll is an interval away, so the window would only add to the lag."""
    kube, posted = FakeKube(), []
    operator = make_operator(kube, posted, status_coalesce_seconds=30)
    await operator.ensure_job(training())
    await operator.training_event("ADDED", training())
    operator.status.request_refresh(("ml", "digits"), at_once=True)
    await settle()
    assert len(kube.statuses) == 1


async def test_past_max_wait_status_writes_trickle_one_at_a_time_until_the_creations_end() -> None:
    from mnist_operator.priority import CreationsFirst

    creations = CreationsFirst(max_wait=0.01, trickle=1)
    inside, most = 0, 0

    async def write() -> None:
        nonlocal inside, most
        async with creations.turn():
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.02)
            inside -= 1

    async with creations.creating():
        writes = [asyncio.create_task(write()) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert most == 1 and not all(task.done() for task in writes)
    await asyncio.gather(*writes)
    assert most >= 2  # the rest went together once the creations ended
