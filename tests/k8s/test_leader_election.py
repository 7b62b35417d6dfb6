"""Leader election (mnist_operator.leader) on a real API server's Lease: one leader, a standby that
waits out a silent leader's lease duration, and a graceful hand-over. The whole operator with two
replicas on real nodes: tests/k8s/test_operator.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import kubernetes.client as k8s
import pytest

from mnist_operator.kube import Kube, request
from mnist_operator.leader import LeaderElection
from tests.support.k8s.controlplane import ControlPlane

pytestmark = [pytest.mark.k8s, pytest.mark.asyncio]
DURATION = 3.0


@pytest.fixture
def api(control_plane: ControlPlane, namespace: str) -> Iterator[k8s.ApiClient]:
    with control_plane.api_client() as client:
        yield client


def lease(api: k8s.ApiClient, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = request(
        api, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/operator"
    )
    return found


async def test_one_leads_a_standby_waits_out_a_silent_leader_and_a_release_hands_over_at_once(
    api: k8s.ApiClient, namespace: str
) -> None:
    first, second, third = (
        LeaderElection(Kube(api), namespace, "operator", name, duration_seconds=DURATION)
        for name in ("first", "second", "third")
    )
    await first.acquire()
    assert lease(api, namespace)["spec"]["holderIdentity"] == "first"
    keeping = asyncio.create_task(first.keep())
    standby = asyncio.create_task(second.acquire())
    # Two renewals go by: the standby sees a live leader and keeps waiting.
    await asyncio.sleep(2.5 * first.renew_seconds)
    assert not standby.done() and not keeping.done()

    # The leader dies without a word (SIGKILL): the standby takes over once the Lease has been silent
    # for a whole duration, and not before.
    keeping.cancel()
    died = time.monotonic()
    await asyncio.wait_for(standby, timeout=3 * DURATION)
    took_over = time.monotonic() - died
    held = lease(api, namespace)["spec"]
    assert held["holderIdentity"] == "second" and held["leaseTransitions"] == 1
    assert DURATION - first.renew_seconds <= took_over <= DURATION + 2 * second.retry_seconds, took_over

    # The old leader, back, sees the new holder on its next renewal and steps down.
    assert await asyncio.wait_for(first.keep(), timeout=2 * DURATION) == "second"

    # A leader that stops gracefully hands the Lease back: the next one need not wait out a duration.
    waiting = asyncio.create_task(third.acquire())
    await asyncio.sleep(second.retry_seconds)
    assert not waiting.done()
    released = time.monotonic()
    await second.release()
    await asyncio.wait_for(waiting, timeout=DURATION)
    assert time.monotonic() - released < DURATION - 0.5
    assert lease(api, namespace)["spec"]["holderIdentity"] == "third"
