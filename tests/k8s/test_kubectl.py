"""Our pinned kubectl against the control plane: what a person would type."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from .conftest import NodeAgents
from .controlplane import ControlPlane
from .helpers import wait_for

pytestmark = pytest.mark.k8s

JOB_YAML = textwrap.dedent(
    """\
    apiVersion: batch/v1
    kind: Job
    metadata:
      name: from-yaml
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: python:3.11-slim
            command: [{python}, -c, "print('applied by kubectl')"]
    """
)


def test_apply_and_get_show_printer_columns(
    control_plane: ControlPlane, agents: NodeAgents, namespace: str, tmp_path: Path
) -> None:
    import sys

    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB_YAML.format(python=sys.executable))

    applied = control_plane.kubectl("apply", "-n", namespace, "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == "job.batch/from-yaml created"

    def completed_row() -> list[list[str]] | None:
        out = control_plane.kubectl("get", "jobs", "-n", namespace).stdout.splitlines()
        rows = [line.split() for line in out]
        return rows if len(rows) == 2 and rows[1][2] == "1/1" else None

    header, row = wait_for(completed_row, timeout=60, what="kubectl get jobs to show 1/1")
    assert header[:3] == ["NAME", "STATUS", "COMPLETIONS"]
    assert "DURATION" in header and "AGE" in header
    assert row[:3] == ["from-yaml", "Complete", "1/1"]

    pods = control_plane.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
    assert re.search(r"from-yaml-\S+\s+0/1\s+Completed\s+0\s+\S+\s+127\.0\.0\.1\s+node-cpu", pods), pods

    again = control_plane.kubectl("apply", "-n", namespace, "-f", str(manifest))
    assert again.stdout.strip() == "job.batch/from-yaml unchanged"


def test_apply_rejects_invalid_input(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        JOB_YAML.format(python="python3").replace("backoffLimit: 0", "backoffLimit: -1\n  retries: 3")
    )
    result = control_plane.kubectl("apply", "-n", namespace, "-f", str(manifest))
    assert result.returncode != 0
    # Strict field validation (unknown field) and the Job's own validation both answer.
    assert 'unknown field "spec.retries"' in result.stderr
    result = control_plane.kubectl("apply", "-n", namespace, "--validate=false", "-f", str(manifest))
    assert result.returncode != 0
    assert "spec.backoffLimit: Invalid value: -1" in result.stderr


def test_explain_uses_the_served_openapi(control_plane: ControlPlane) -> None:
    result = control_plane.kubectl("explain", "job.spec.backoffLimit")
    assert result.returncode == 0, result.stderr
    assert "FIELD: backoffLimit <integer>" in result.stdout
    assert "number of retries" in result.stdout


def test_kubectl_logs_needs_a_kubelet_and_fails_as_expected(
    control_plane: ControlPlane, agents: NodeAgents, namespace: str
) -> None:
    """No kubelet serves logs: the apiserver dials the node's advertised port, which refuses.

    Tests read container output with ``agents.logs()`` instead (see docs/testing-control-plane.md).
    """
    import sys

    created = control_plane.kubectl(
        "run", "talker", "-n", namespace, "--image=python:3.11-slim", "--restart=Never",
        "--command", "--", sys.executable, "-c", "print('said something')",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    wait_for(
        lambda: (
            control_plane.kubectl(
                "get", "pod", "talker", "-n", namespace, "-o", "jsonpath={.status.phase}"
            ).stdout
            == "Succeeded"
        ),
        timeout=60,
        what="pod talker to succeed",
    )
    result = control_plane.kubectl("logs", "talker", "-n", namespace)
    assert result.returncode != 0
    port = agents.cpu.kubelet_port
    assert f"127.0.0.1:{port}" in result.stderr, result.stderr
    assert "connection refused" in result.stderr
    # ... while the same output is there for tests through the agent:
    assert agents.logs(namespace, "talker") == "said something\n"
