"""Small builders and waits shared by the tier-3 tests."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .podspec import Json

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def python_container(code: str, *, name: str = "main", **extra: Any) -> Json:
    """A container running ``code`` with this interpreter (the node agent ignores the image)."""
    return {"name": name, "image": "python:3.11-slim", "command": [sys.executable, "-c", code], **extra}


def pod_spec(*containers: Json, restart_policy: str = "Never", **extra: Any) -> Json:
    return {
        "restartPolicy": restart_policy,
        "terminationGracePeriodSeconds": 5,
        "containers": list(containers),
        **extra,
    }


def job_manifest(
    name: str, code: str, *, backoff_limit: int = 0, restart_policy: str = "Never", **spec: Any
) -> Json:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {"spec": pod_spec(python_container(code), restart_policy=restart_policy)},
            **spec,
        },
    }


def pod_manifest(name: str, *containers: Json, **spec: Any) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": pod_spec(*containers, **spec),
    }


def condition(obj: Any, kind: str) -> Any:
    """The condition of type ``kind`` from a client model's status, or None."""
    for cond in getattr(obj.status, "conditions", None) or []:
        if cond.type == kind:
            return cond
    return None


def create_namespace(core: Any, name: str, labels: dict[str, str] | None = None) -> None:
    """A namespace whose `default` ServiceAccount exists (pods are refused before it does)."""
    core.create_namespace(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
    )
    wait_for(
        lambda: any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items),
        timeout=30,
        what=f"the default ServiceAccount in {name}",
        interval=0.05,
    )


def make_claim(core: Any, namespace: str, name: str) -> str:
    """A bound ReadWriteMany claim; returns its PV's name. No provisioner runs here, so a pre-made PV
    that the real PV controller binds to the claim."""
    pv_name = f"pv-{namespace}-{name}"
    core.create_persistent_volume(
        {
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "manual",
                "persistentVolumeReclaimPolicy": "Delete",
                "hostPath": {"path": f"/unused/{pv_name}"},
                "claimRef": {"namespace": namespace, "name": name},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "manual",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    wait_for(
        lambda: core.read_namespaced_persistent_volume_claim(name, namespace).status.phase == "Bound",
        timeout=60,
        what=f"claim {name} to bind",
    )
    return pv_name
