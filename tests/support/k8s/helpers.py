"""Small builders and waits shared by the tier-3 tests."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

Json = dict[str, Any]

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


# What Pod Security `restricted` requires, as the operator sets it on trainers; uid 1000 is our images' user.
POD_SECURITY: Json = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: Json = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}


def python_container(code: str, *, image: str, name: str = "main", **extra: Any) -> Json:
    """A container running ``code`` with the image's Python (the trainer image has one), with a writable
    /tmp (an emptyDir named ``tmp``: see :func:`pod_spec`) under a read-only root."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python", "-c", textwrap.dedent(code)],
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        **extra,
    }


def pod_spec(*containers: Json, restart_policy: str = "Never", **extra: Any) -> Json:
    volumes = [{"name": "tmp", "emptyDir": {}}, *extra.pop("volumes", [])]
    return {
        "restartPolicy": restart_policy,
        "terminationGracePeriodSeconds": 5,
        "securityContext": POD_SECURITY,
        "containers": list(containers),
        "volumes": volumes,
        **extra,
    }


def job_manifest(
    name: str, code: str, *, image: str, backoff_limit: int = 0, restart_policy: str = "Never", **spec: Any
) -> Json:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "spec": pod_spec(python_container(code, image=image), restart_policy=restart_policy)
            },
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


def make_claim(core: Any, namespace: str, name: str, folder: Path) -> Path:
    """A bound claim on a hostPath PersistentVolume at ``folder`` (the nodes' filesystem is this
    machine's, so a test reads what pods wrote there); returns ``folder``. No provisioner runs here, so
    a pre-made PV that the real PV controller binds to the claim."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o777)  # hostPath ignores fsGroup: the pods' uid 1000 must be able to write
    pv_name = f"pv-{namespace}-{name}"
    core.create_persistent_volume(
        {
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "manual",
                "persistentVolumeReclaimPolicy": "Delete",
                "hostPath": {"path": str(folder), "type": "Directory"},
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
    return folder
