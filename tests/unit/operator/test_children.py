"""The children's watch, line by line: summaries, bookmarks, errors, and what a relist finds vanished."""

from typing import Any

import pytest
from kubernetes.client import ApiClient

from mnist_operator.children import ChildWatch, Known, ResourceVersionTooOldError
from mnist_operator.naming import LABEL_NAME, LABEL_UID, MANAGED_BY, OPERATOR_NAME
from mnist_operator.state import ChildKind, Store

LABELS = {MANAGED_BY: OPERATOR_NAME, LABEL_NAME: "digits", LABEL_UID: "uid-1", "team": "a"}


def pod(name: str, version: str, phase: str = "Running") -> dict[str, Any]:
    """A pod as a real API server sends it, trimmed; the spec and managedFields are what a summary drops."""
    return {
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "labels": LABELS,
            "resourceVersion": version,
            "creationTimestamp": "2026-11-23T10:00:00Z",
            "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {
            "containers": [
                {"name": "trainer", "env": [{"name": f"MNIST_{i}", "value": "x"} for i in range(24)]}
            ]
        },
        "status": {"phase": phase, "containerStatuses": [{"name": "trainer", "restartCount": 0}]},
    }


def watch_collecting() -> tuple[ChildWatch, list[tuple[ChildKind, str | None, dict[str, Any]]]]:
    delivered: list[tuple[ChildKind, str | None, dict[str, Any]]] = []
    watch = ChildWatch(
        ApiClient(), "pod", "app.kubernetes.io/managed-by=mnist-operator", lambda *e: delivered.append(e)
    )
    return watch, delivered


def test_each_event_is_delivered_as_a_summary_and_advances_the_version() -> None:
    watch, delivered = watch_collecting()
    watch.handle_event({"type": "ADDED", "object": pod("digits-trainer-x1", "41")})
    [(kind, event_type, summary)] = delivered
    assert (kind, event_type) == ("pod", "ADDED")
    assert summary == {
        "metadata": {
            "name": "digits-trainer-x1",
            "namespace": "team-a",
            "labels": {LABEL_NAME: "digits", LABEL_UID: "uid-1"},
            "creationTimestamp": "2026-11-23T10:00:00Z",
        },
        "status": {"phase": "Running", "containerStatuses": [{"name": "trainer", "restartCount": 0}]},
    }
    assert watch.resource_version == "41"


def test_the_summary_finds_its_training_in_the_store() -> None:
    watch, delivered = watch_collecting()
    watch.handle_event({"type": "ADDED", "object": pod("digits-trainer-x1", "41", phase="Pending")})
    store = Store()
    assert store.update_child(*delivered[0]) == ("team-a", "digits")
    entry = store.get(("team-a", "digits"))
    assert entry is not None and entry.pods["digits-trainer-x1"]["status"]["phase"] == "Pending"


def test_a_bookmark_only_moves_the_version() -> None:
    watch, delivered = watch_collecting()
    watch.handle_event({"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "97"}}})
    assert delivered == [] and watch.resource_version == "97"


def test_a_410_error_event_asks_for_a_relist_and_other_errors_fail_the_stream() -> None:
    watch, _ = watch_collecting()
    with pytest.raises(ResourceVersionTooOldError):
        watch.handle_event({"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}})
    with pytest.raises(RuntimeError, match="watch error 500"):
        watch.handle_event({"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "boom"}})


def test_known_children_tell_a_relist_what_vanished() -> None:
    known = Known()
    for name in ("a", "b", "c"):
        known.record(
            "ADDED", {"metadata": {"name": name, "namespace": "team-a", "labels": {LABEL_NAME: "x"}}}
        )
    known.record("DELETED", {"metadata": {"name": "c", "namespace": "team-a"}})
    vanished = known.vanished({("team-a", "a")})
    assert vanished == [{"metadata": {"name": "b", "namespace": "team-a", "labels": {LABEL_NAME: "x"}}}]
