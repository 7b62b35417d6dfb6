"""A real Prometheus (Debian's `prometheus`) on loopback, configured from what the chart renders.

The chart tells Prometheus how to scrape through its ServiceMonitors and what to alert on through its
PrometheusRule. A test cluster has no Prometheus Operator to turn those into Prometheus configuration, so
`scrape_config_from_service_monitor` does the part of its job that matters here: each endpoint becomes a
scrape job named after the Service (the Prometheus Operator's default `job` label) with the endpoint's
path, interval and `honorLabels`, and a `namespace` target label. Only the discovery differs: instead of
pod IPs found through Endpoints, the target is the Service reached through the API server's service
proxy, so no route into the nodes' pod network is needed from the host.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.k8s import processes
from tests.support.servers import free_port


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed: apt-get install prometheus")
    return binary


@dataclass(frozen=True)
class ApiServerAccess:
    """How Prometheus reaches the API server: its address and a client certificate it trusts."""

    host_port: str
    ca_file: Path
    cert_file: Path
    key_file: Path


def scrape_config_from_service_monitor(
    monitor: dict[str, Any], service: dict[str, Any], access: ApiServerAccess
) -> list[dict[str, Any]]:
    """The scrape jobs the Prometheus Operator would make of ``monitor`` for ``service``, targeting the
    Service through the API server's proxy."""
    namespace = service["metadata"]["namespace"]
    name = service["metadata"]["name"]
    jobs = []
    for endpoint in monitor["spec"]["endpoints"]:
        port = endpoint["port"]
        assert port in {p["name"] for p in service["spec"]["ports"]}, f"{name} has no port named {port}"
        job: dict[str, Any] = {
            "job_name": name,
            "honor_labels": bool(endpoint.get("honorLabels", False)),
            "metrics_path": f"/api/v1/namespaces/{namespace}/services/{name}:{port}/proxy{endpoint['path']}",
            "scheme": "https",
            "tls_config": {
                "ca_file": str(access.ca_file),
                "cert_file": str(access.cert_file),
                "key_file": str(access.key_file),
            },
            "static_configs": [
                {"targets": [access.host_port], "labels": {"namespace": namespace, "service": name}}
            ],
        }
        if "interval" in endpoint:
            job["scrape_interval"] = endpoint["interval"]
        if endpoint.get("scrapeTimeout"):
            job["scrape_timeout"] = endpoint["scrapeTimeout"]
        jobs.append(job)
    return jobs


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now (raises on a PromQL error)."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets")["activeTargets"]
        return active

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def stop(self) -> None:
        processes.stop(self.process, grace=15)


def start_prometheus(
    workdir: Path,
    scrape_configs: list[dict[str, Any]],
    rule_groups: list[dict[str, Any]] | None = None,
    interval: str = "1s",
) -> Prometheus:
    """Prometheus on a free loopback port, storing into ``workdir``; ready when this returns."""
    workdir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": scrape_configs,
    }
    if rule_groups:
        rules = workdir / "rules.yaml"
        rules.write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
        config["rule_files"] = [str(rules)]
    config_file = workdir / "prometheus.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log = workdir / "prometheus.log"
    process = processes.spawn(
        [
            prometheus_binary(),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
        log_path=log,
    )
    prometheus = Prometheus(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2):
                return prometheus
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {process.returncode}:\n{log.read_text()}"
                ) from None
            time.sleep(0.1)
    prometheus.stop()
    raise RuntimeError(f"prometheus did not become ready in 30s:\n{log.read_text()}")
