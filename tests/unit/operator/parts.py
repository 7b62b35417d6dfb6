"""Helpers of the tests of the operator's behaviour parts (trainings, status writer, Pushgateway pollers)
and their assembly (``reconcile.Operator``): each part is driven through the Operator's public calls with
a fake of the one API client (fake_kube.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from mnist_operator.config import Config
from mnist_operator.reconcile import Operator

from .fake_kube import FakeKube

NOW = "2026-12-04T10:00:00Z"
Posted = list[tuple[str, str, str]]


def training(name: str = "digits", uid: str = "u-1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "training.mnist-operator.io/v1alpha1",
        "kind": "MnistTraining",
        "metadata": {"name": name, "namespace": "ml", "uid": uid, "generation": 1},
        "spec": {"epochs": 4, **spec},
    }


def job_event(name: str = "digits", uid: str = "u-1", **status: Any) -> dict[str, Any]:
    labels = {"training.mnist-operator.io/name": name, "training.mnist-operator.io/uid": uid}
    return {
        "metadata": {"name": f"{name}-trainer", "namespace": "ml", "labels": labels},
        "spec": {"suspend": False},
        "status": status,
    }


def pod_event(name: str = "digits", uid: str = "u-1", **status: Any) -> dict[str, Any]:
    labels = {"training.mnist-operator.io/name": name, "training.mnist-operator.io/uid": uid}
    return {
        "metadata": {
            "name": f"{name}-trainer-x1",
            "namespace": "ml",
            "labels": labels,
            "creationTimestamp": NOW,
        },
        "status": status,
    }


def make_operator(kube: FakeKube, posted: Posted, **config: Any) -> Operator:
    settings = Config(**{"status_coalesce_seconds": 0.01, **config})
    return Operator(
        settings,
        kube,
        lambda _body, kind, reason, message: posted.append((kind, reason, message)),
        lambda: NOW,
    )  # type: ignore[arg-type]


async def settle() -> None:
    await asyncio.sleep(0.1)
