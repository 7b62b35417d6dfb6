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
