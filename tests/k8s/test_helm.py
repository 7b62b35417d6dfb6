"""The pinned helm installs a chart into the control plane (what tier 4 does against kind)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.support.k8s.binaries import Binaries
from tests.support.k8s.controlplane import ControlPlane

pytestmark = pytest.mark.k8s


def test_helm_install_and_uninstall(
    k8s_binaries: Binaries,
    control_plane: ControlPlane,
    core: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    helm = k8s_binaries.helm
    if helm is None:
        pytest.fail(f"helm missing from {k8s_binaries.dir}; re-run hack/k8s-binaries.sh")
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "cm.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-settings
            data:
              greeting: {{ .Values.greeting | quote }}
              kube: {{ .Capabilities.KubeVersion.Version | quote }}
            """
        )
    )
    # helm keeps caches and repositories under these; never the developer's own.
    env = {
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(helm), f"--kubeconfig={control_plane.admin_kubeconfig}", "-n", namespace, *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)

    installed = run("install", "demo", str(chart), "--set", "greeting=bonjour", "--wait", "--timeout", "60s")
    assert installed.returncode == 0, installed.stderr
    config_map = core.read_namespaced_config_map("demo-settings", namespace)
    assert config_map.data["greeting"] == "bonjour"
    # helm asked the apiserver for its version: the stamped release version, not v0.0.0-master.
    assert config_map.data["kube"] == k8s.VersionApi(core.api_client).get_code().git_version

    listed = run("list", "-o", "json")
    assert '"name":"demo"' in listed.stdout and '"status":"deployed"' in listed.stdout

    assert run("uninstall", "demo", "--wait").returncode == 0
    names = [c.metadata.name for c in core.list_namespaced_config_map(namespace).items]
    assert "demo-settings" not in names
