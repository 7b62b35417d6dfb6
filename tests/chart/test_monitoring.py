"""The chart's monitoring objects, rendered by the pinned helm and checked by Prometheus' own promtool:
the PrometheusRule's alerts and the Grafana dashboard's ConfigMap. That they read real data from a real
Prometheus after a training is tests/k8s/test_operator.py's job."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.k8s.helm import CHART, Doc, Helm, one

pytestmark = pytest.mark.k8s

ALERTS_TEST = Path(__file__).resolve().parents[1] / "resources" / "monitoring" / "alerts.test.yaml"
DASHBOARD = CHART / "dashboards" / "mnist-operator.json"
ALERTS = {"MnistTrainingFailed", "MnistTrainingStalled", "MnistOperatorDown", "MnistPushgatewayUnreachable"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool missing: apt-get install prometheus"
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False, timeout=120)


def render(helm: Helm, *values: str) -> list[Doc]:
    return helm.template(
        "--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true", *values
    )


def rules_file(docs: list[Doc], folder: Path) -> Path:
    rule = one(docs, "PrometheusRule")
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def test_monitoring_objects_are_off_by_default(helm: Helm) -> None:
    """They need the Prometheus Operator's CRDs and Grafana's sidecar, which a plain cluster lacks."""
    kinds = {doc["kind"] for doc in helm.template()}
    assert "PrometheusRule" not in kinds
    assert not [d for d in helm.template() if d["kind"] == "ConfigMap" and "grafana_dashboard" in str(d)]


def test_promtool_accepts_the_rules(helm: Helm, tmp_path: Path) -> None:
    checked = promtool("check", "rules", str(rules_file(render(helm), tmp_path)))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_each_alert_fires_on_its_series_and_only_then(helm: Helm, tmp_path: Path) -> None:
    rules = yaml.safe_load(rules_file(render(helm), tmp_path).read_text())
    assert {rule["alert"] for group in rules["groups"] for rule in group["rules"]} == ALERTS
    tested = yaml.safe_load(ALERTS_TEST.read_text())
    covered = {case["alertname"] for test in tested["tests"] for case in test["alert_rule_test"]}
    assert covered == ALERTS, "every alert has a firing test"
    shutil.copy(ALERTS_TEST, tmp_path / "alerts.test.yaml")
    result = promtool("test", "rules", str(tmp_path / "alerts.test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_settings_reach_the_rules(helm: Helm) -> None:
    rule = one(
        render(
            helm,
            "--set", "prometheusRule.stalledAfterSeconds=7200",
            "--set", "prometheusRule.failedWindow=1h",
            "--set", "prometheusRule.severity.operatorDown=page",
            "--set", "prometheusRule.additionalLabels.release=kube-prometheus-stack",
        ),
        "PrometheusRule",
    )  # fmt: skip
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    by_name = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert "> 7200" in by_name["MnistTrainingStalled"]["expr"]
    assert "[1h]" in by_name["MnistTrainingFailed"]["expr"]
    assert by_name["MnistOperatorDown"]["labels"]["severity"] == "page"


def test_the_rules_select_this_release_s_operator_only(helm: Helm) -> None:
    rule = one(
        helm.template("--set", "prometheusRule.enabled=true", namespace="ml-platform"), "PrometheusRule"
    )
    for r in rule["spec"]["groups"][0]["rules"]:
        if r["alert"] != "MnistTrainingStalled":  # per run, whichever operator made it
            assert 'job="mnist-operator", namespace="ml-platform"' in r["expr"], r


def dashboard_configmap(docs: list[Doc]) -> Doc:
    (configmap,) = [
        d for d in docs if d["kind"] == "ConfigMap" and "mnist-operator.json" in d.get("data", {})
    ]
    return configmap


def test_the_dashboard_configmap_carries_the_dashboard_for_grafana_s_sidecar(helm: Helm) -> None:
    settings = ("grafanaDashboard.namespace=monitoring", "grafanaDashboard.annotations.grafana_folder=ML")
    configmap = dashboard_configmap(render(helm, *(arg for value in settings for arg in ("--set", value))))
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "ML"}
    assert json.loads(configmap["data"]["mnist-operator.json"]) == json.loads(DASHBOARD.read_text())


def queries(dashboard: dict[str, Any]) -> list[str]:
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    variables = [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return [t["expr"] for p in panels for t in p["targets"]] + variables


def test_the_dashboard_uses_only_its_own_variables_and_one_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    used = {name for expr in queries(dashboard) for name in re.findall(r"\$(\w+)", expr)}
    assert used - {"__rate_interval"} <= defined, used - defined
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert {p["datasource"]["uid"] for p in panels} == {"${datasource}"}
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    # What the issue asks the dashboard to show, by the metric each panel reads.
    read = " ".join(queries(dashboard))
    for metric in (
        "gangplank_train_epochs_count",
        "gangplank_train_loss",
        "gangplank_train_val_accuracy",
        "gangplank_test_accuracy",
        "gangplank_test_model_weights_bucket",
        "mnist_operator_trainings",
        'up{job=~"$pushgateway_job"}',
        "mnist_operator_pushgateway_polls_total",
    ):
        assert metric in read, metric
