"""The Pushgateway pollers (pollers.py): whose credentials go where, and when a sweep may list trainings.
Driven through the Operator's public calls with a fake of the one API client (fake_kube.py)."""

from __future__ import annotations

import pytest

from mnist_operator.config import BasicAuth

from .fake_kube import FakeKube
from .parts import make_operator, training

pytestmark = pytest.mark.asyncio


async def test_the_operators_credentials_go_to_its_own_pushgateway_only() -> None:
    auth = BasicAuth("metrics", "secret")
    operator = make_operator(FakeKube(), [], pushgateway_url="http://pgw:9091", pushgateway_auth=auth)
    assert operator.pollers.auth_for("http://pgw:9091") == auth
    assert operator.pollers.auth_for("http://someone-elses:9091") is None
    from mnist_api import validate_resource

    elsewhere = validate_resource(training(metrics={"pushgatewayUrl": "http://someone-elses:9091/"}))
    assert operator.pollers.url_for(elsewhere) == "http://someone-elses:9091"
    assert operator.pollers.metrics_for(elsewhere) is None  # not polled yet: nothing to say, not "no metrics"


async def test_a_sweep_needs_a_reachable_pushgateway_with_groups_before_it_lists_trainings() -> None:
    kube = FakeKube()
    operator = make_operator(kube, [], pushgateway_url="http://127.0.0.1:9")
    assert await operator.pollers.sweep_orphans() == 0  # nothing polled: nothing to compare, no LIST made
