"""The pinned helm, run with throw-away config/cache/data homes (never the developer's own)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # for annotations only: rendering a chart needs no kubernetes client
    from .controlplane import ControlPlane

Doc = dict[str, Any]
CHART = Path(__file__).resolve().parents[3] / "charts" / "mnist-operator"
RELEASE = "mnist-operator"  # contains the chart name, so objects are called plainly `mnist-operator`
RENDER_NAMESPACE = "mnist-operator"
# The chart's ci/*-values.yaml scenarios, and its defaults (None) with them.
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
ALL_VALUES: list[Path | None] = [None, *SCENARIOS]


def values_args(scenario: Path | None) -> list[str]:
    return ["--values", str(scenario)] if scenario else []


def scenario_id(scenario: Path | None) -> str:
    return scenario.name.removesuffix("-values.yaml") if scenario else "chart-defaults"


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    """The one rendered object of ``kind`` (named ``name``, if given); fails unless there is exactly one."""
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path
    kube_version: str

    def run(
        self, *args: str, kubeconfig: Path | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "HOME": str(self.home),
            "PATH": "/usr/bin:/bin",
        }
        flags = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
        return subprocess.run(
            [str(self.binary), *flags, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )

    def template(self, *values: str, namespace: str = RENDER_NAMESPACE, crds: bool = False) -> list[Doc]:
        """Rendered objects; the pinned Kubernetes version stands in for a cluster (the chart's kubeVersion
        constraint would refuse helm's offline default, v1.20)."""
        rendered = self.run(
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            namespace,
            "--kube-version",
            self.kube_version,
            *(["--include-crds"] if crds else []),
            *values,
        )
        assert rendered.returncode == 0, rendered.stderr
        return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]

    def assert_release_test_passes(self, plane: ControlPlane, namespace: str) -> None:
        """`helm test`; on failure the message carries the test pod's log (the chart keeps a failed test pod
        and deletes a passed one, so `helm test --logs` cannot be used on success)."""
        tested = self.run(
            "test", RELEASE, "--namespace", namespace, "--timeout", "180s", kubeconfig=plane.admin_kubeconfig
        )
        if tested.returncode != 0:
            pods = plane.kubectl(
                "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=test", "-o", "name"
            ).stdout.split()
            logs = [plane.kubectl("logs", "-n", namespace, pod).stdout for pod in pods]
            raise AssertionError(f"helm test failed:\n{tested.stdout}{tested.stderr}\n" + "\n".join(logs))
        assert "Phase:          Succeeded" in tested.stdout, tested.stdout
