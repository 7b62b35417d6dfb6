"""The lean diff base gives kopf exactly the essence kopf's own storage computes."""

import copy
from typing import Any

import kopf
import pytest

from mnist_api.resource import GROUP
from mnist_operator.diffbase import LeanAnnotationsDiffBaseStorage


def training_as_served() -> dict[str, Any]:
    """An MnistTraining as a real API server sends it: managedFields, kopf's annotations, our status."""
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "MnistTraining",
        "metadata": {
            "name": "digits",
            "namespace": "ml",
            "uid": "4b1c",
            "resourceVersion": "812",
            "generation": 2,
            "creationTimestamp": "2026-11-23T07:00:00Z",
            "labels": {"team": "vision"},
            "annotations": {
                "note": "keep me",
                f"{GROUP}/last-handled-configuration": '{"spec": {"epochs": 3}}',
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            },
            "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"epochs": 3, "runPolicy": {"suspend": False}},
        "status": {"phase": "Running", "epoch": 1, "conditions": [{"type": "Running", "status": "True"}]},
    }


@pytest.mark.parametrize(
    "extra_fields",
    [
        None,
        [],
        ["spec.runPolicy.suspend"],
        ["status.phase"],
        [("metadata", "labels", "team")],
        ["metadata.uid"],
    ],
)
def test_the_essence_is_kopfs_own(extra_fields: Any) -> None:
    raw = training_as_served()
    stock = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    lean = LeanAnnotationsDiffBaseStorage(prefix=GROUP)
    expected = stock.build(body=kopf.Body(copy.deepcopy(raw)), extra_fields=extra_fields)
    assert lean.build(body=kopf.Body(raw), extra_fields=extra_fields) == expected
    assert "status" not in expected or extra_fields == ["status.phase"]
    assert raw == training_as_served()  # the event's body is left as it came


def test_the_essence_does_not_share_objects_with_the_body() -> None:
    raw = training_as_served()
    essence: Any = LeanAnnotationsDiffBaseStorage(prefix=GROUP).build(body=kopf.Body(raw))
    essence["spec"]["epochs"] = 99
    essence["metadata"]["labels"]["team"] = "other"
    assert raw["spec"]["epochs"] == 3 and raw["metadata"]["labels"]["team"] == "vision"
