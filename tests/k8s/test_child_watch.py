"""The operator's watch of its Jobs and pods (mnist_operator.children) against a real API server."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import kubernetes.client as k8s
import pytest

from mnist_operator import kube
from mnist_operator.children import ChildWatch
from mnist_operator.handlers import CHILDREN_SELECTOR
from mnist_operator.naming import LABEL_NAME, LABEL_UID, MANAGED_BY, OPERATOR_NAME
from tests.support.k8s.binaries import Binaries
from tests.support.k8s.controlplane import ControlPlane

pytestmark = pytest.mark.k8s
Event = tuple[str, str | None, dict[str, Any]]


@pytest.fixture(scope="module")
def uncached_plane(
    k8s_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """A control plane of its own whose API server serves watches from etcd, not its watch cache: once
    etcd's history is compacted, an old resourceVersion really gets 410 Gone. (The watch cache of a
    fresh API server holds every event since it started, so the session's plane would replay them.)"""
    plane = ControlPlane(
        k8s_binaries, tmp_path_factory.mktemp("uncached-plane"), apiserver_extra_args=["--watch-cache=false"]
    )
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


def suspended_job(name: str, *, ours: bool = True) -> dict[str, Any]:
    """A Job that never starts a pod (suspended): only its own events reach the watch."""
    labels = {MANAGED_BY: OPERATOR_NAME, LABEL_NAME: "digits", LABEL_UID: "uid-1"} if ours else {}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
            },
        },
    }


def next_event(events: queue.Queue[Event], wanted: tuple[str | None, str], seen: list[Event]) -> Event:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            event = events.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(event)
        if (event[1], event[2]["metadata"]["name"]) == wanted:
            return event
    raise AssertionError(
        f"no {wanted} event within 30 s; saw {[(e[1], e[2]['metadata']['name']) for e in seen]}"
    )


def test_a_too_old_version_lists_again_reports_what_vanished_and_follows_changes(
    uncached_plane: ControlPlane,
) -> None:
    namespace = "default"
    api = uncached_plane.api_client()
    batch = k8s.BatchV1Api(api)
    batch.create_namespaced_job(namespace, suspended_job("kept"))
    batch.create_namespaced_job(namespace, suspended_job("not-ours", ours=False))
    uncached_plane.compact_etcd()  # etcd forgets every version before now
    events: queue.Queue[Event] = queue.Queue()
    watch = ChildWatch(
        api,
        "job",
        CHILDREN_SELECTOR,
        lambda kind, event_type, summary: events.put((kind, event_type, summary)),
        namespace=namespace,
        resource_version="1",  # compacted away: the server answers 410 and the watch lists again
    )
    # What an earlier stream reported, deleted while no watch ran: only the relist can notice.
    ghost = {"metadata": {"name": "ghost", "namespace": namespace, "labels": {LABEL_NAME: "digits"}}}
    watch.known.record("ADDED", ghost)
    seen: list[Event] = []
    watch.start()
    try:
        kind, _, kept = next_event(events, (None, "kept"), seen)
        assert kind == "job"
        # The summary, not the object: identity, suspend and status only.
        assert kept["metadata"]["labels"] == {LABEL_NAME: "digits", LABEL_UID: "uid-1"}
        assert kept["spec"] == {"suspend": True} and "template" not in str(kept)
        next_event(events, ("DELETED", "ghost"), seen)

        batch.create_namespaced_job(namespace, suspended_job("late"))
        next_event(events, ("ADDED", "late"), seen)
        batch.delete_namespaced_job("late", namespace, propagation_policy="Background")
        next_event(events, ("DELETED", "late"), seen)
    finally:
        stopping = time.monotonic()
        watch.stop()
        stopped_in = time.monotonic() - stopping
    assert "not-ours" not in {event[2]["metadata"]["name"] for event in seen}, "the selector is the server's"
    assert watch.resource_version not in (None, "", "1")
    # The stream was idle, with minutes left on its server-side timeout: stop() must cut it off.
    assert stopped_in < 5, f"stop took {stopped_in:.1f} s"


def test_raw_requests_use_the_clients_credentials_and_report_errors_with_the_servers_message(
    uncached_plane: ControlPlane,
) -> None:
    api = uncached_plane.api_client()  # client-certificate credentials over TLS
    listed = kube.request(api, "GET", "/api/v1/namespaces/default/pods", query={"limit": 1})
    assert listed["kind"] == "PodList"
    with pytest.raises(kube.ApiError) as raised:
        kube.request(api, "GET", "/api/v1/namespaces/default/pods/no-such-pod")
    assert raised.value.status == 404
    assert raised.value.message == 'pods "no-such-pod" not found'
    assert str(raised.value) == 'HTTP 404 Not Found: pods "no-such-pod" not found'
