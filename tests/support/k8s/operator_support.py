"""Trainings for the tier-3 tests: the sample manifest made small, applied with kubectl, and waited on."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .controlplane import ControlPlane
from .helpers import wait_for

REPO = Path(__file__).resolve().parents[3]


def sample_training(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    """The shipped sample manifest, renamed and with the given spec fields replaced."""
    document: dict[str, Any] = copy.deepcopy(
        yaml.safe_load((REPO / "manifests" / "samples" / "mnist-training.yaml").read_text())
    )
    document["metadata"] = {"name": name, "namespace": namespace}
    document["spec"].update(spec)
    return document


def apply(control_plane: ControlPlane, document: dict[str, Any], workdir: Path) -> None:
    path = workdir / f"{document['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(document))
    control_plane.kubectl("apply", "-f", str(path), check=True)


def training_status(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    body = custom.get_namespaced_custom_object(
        "training.mnist-operator.io", "v1alpha1", namespace, "mnisttrainings", name
    )
    status: dict[str, Any] = body.get("status") or {}
    return status


def wait_for_phase(
    custom: Any, namespace: str, name: str, phase: str, timeout: float = 180
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = training_status(custom, namespace, name)
        return status if status.get("phase") == phase else None

    return wait_for(reached, timeout=timeout, what=f"{namespace}/{name} to reach {phase}", interval=0.3)
