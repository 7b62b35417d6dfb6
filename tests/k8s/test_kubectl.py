"""Our pinned kubectl against the control plane: what a person would type."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from tests.support.k8s.controlplane import ControlPlane
from tests.support.k8s.helpers import wait_for

from .conftest import Cluster

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
          securityContext:
            runAsNonRoot: true
            seccompProfile: {{type: RuntimeDefault}}
          containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: [python, -c, "print('applied by kubectl')"]
            securityContext:
              allowPrivilegeEscalation: false
              capabilities: {{drop: [ALL]}}
    """
)


def test_apply_and_get_show_printer_columns(
    control_plane: ControlPlane, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB_YAML.format(image=cluster.images["trainer"]))

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
    pod_ip = re.escape(str(cluster.nodes["node-cpu"].pod_cidr.network_address)[:-1])
    assert re.search(rf"from-yaml-\S+\s+0/1\s+Completed\s+0\s+\S+\s+{pod_ip}\d+\s+node-cpu", pods), pods
    logs = control_plane.kubectl("logs", "-n", namespace, "job/from-yaml", check=True).stdout
    assert logs == "applied by kubectl\n"

    again = control_plane.kubectl("apply", "-n", namespace, "-f", str(manifest))
    assert again.stdout.strip() == "job.batch/from-yaml unchanged"


def test_apply_rejects_invalid_input(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        JOB_YAML.format(image="example.invalid/never-pulled:1").replace(
            "backoffLimit: 0", "backoffLimit: -1\n  retries: 3"
        )
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
