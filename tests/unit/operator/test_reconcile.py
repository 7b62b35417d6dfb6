"""The parts assembled (reconcile.Operator): what the operator reports across its parts.
Driven through the Operator's public calls with a fake of the one API client (fake_kube.py)."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from mnist_operator import opmetrics

from .fake_kube import FakeKube
from .parts import job_event, make_operator, settle, training

pytestmark = pytest.mark.asyncio


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
