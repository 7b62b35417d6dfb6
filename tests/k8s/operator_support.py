"""The operator installed from manifests/ and running as its ServiceAccount, for the tier-3 tests."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.servers import free_port

from .controlplane import ControlPlane
from .helpers import wait_for

REPO = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT = "system:serviceaccount:mnist-operator:mnist-operator"
SA_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:mnist-operator", "system:authenticated")


def install_manifests(control_plane: ControlPlane) -> None:
    """What an admin applies: the namespace, the CRD and the RBAC (the Deployment's pod is played below)."""
    for name in ("namespace.yaml", "crd.yaml", "rbac.yaml"):
        control_plane.kubectl("apply", "-f", str(REPO / "manifests" / name), check=True)
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/mnisttrainings.training.mnist-operator.io",
        "--timeout=60s",
        check=True,
    )


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_operator(control_plane: ControlPlane, pushgateway_url: str, workdir: Path) -> OperatorProcess:
    """``mnist-operator run`` with the ServiceAccount's rights only (admin credentials impersonating it)."""
    kubeconfig = control_plane.impersonating_kubeconfig(SERVICE_ACCOUNT, SA_GROUPS)
    health = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MNIST_", "KUBERNETES_"))}
    env.update(
        {
            "KUBECONFIG": str(kubeconfig),
            "MNIST_OPERATOR_PUSHGATEWAY_URL": pushgateway_url,
            "MNIST_OPERATOR_POLL_INTERVAL_SECONDS": "0.5",
            "MNIST_OPERATOR_METRICS_PORT": "0",
            # The node agent ignores images and runs the command: this interpreter has the trainer.
            "MNIST_OPERATOR_TRAINER_COMMAND": json.dumps([sys.executable, "-m", "mnist_trainer"]),
        }
    )
    log_path = workdir / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mnist_operator",
                "run",
                "--liveness",
                f"http://127.0.0.1:{health}/healthz",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    operator = OperatorProcess(process, log_path)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the operator exited with {process.returncode}:\n{operator.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    wait_for(healthy, timeout=60, what="the operator's liveness endpoint")
    return operator


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
