"""Kueue (sigs.k8s.io/kueue), built from its Go module by hack/k8s-binaries.sh at the pinned
KUEUE_VERSION, run against the test control plane with its own CRDs and webhooks.

It runs as Kueue's own deployment runs it (its controller manager with the `batch/job` integration, its
mutating and validating webhooks, the CRDs of the same version), with three differences the test host
imposes, none of which touches how it queues and admits:

- it runs on the host, like the control plane, in a private mount namespace: with its internal cert
  management off, its metrics server insists on a certificate at /etc/kueue/metrics/certs, so an overlay
  over /etc inside that namespace gives it that path without writing to the host's /etc;
- the API server calls its webhooks by URL (https://127.0.0.1:<port>/<path>) with a serving certificate
  of a CA of the test, instead of through the `kueue-webhook-service` Service (the host has no route to
  Services); that is why internal cert management, which issues for the Service's name, is off;
- only the webhooks of the enabled integration (`batch/job`) and of Kueue's own objects are registered.
  Kueue's manifests also register the Pod, Deployment and StatefulSet webhooks, which would intercept
  every pod of the cluster for integrations this test does not enable.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.k8s import processes
from tests.support.k8s.binaries import Binaries, pinned_versions
from tests.support.k8s.controlplane import ControlPlane
from tests.support.k8s.pki import Pki
from tests.support.servers import free_port

NAMESPACE = "kueue-system"
WEBHOOK_PREFIX = "kueue-test-"


def manifests_dir(binaries: Binaries) -> Path:
    return binaries.dir / "kueue-manifests" / pinned_versions()["KUEUE_VERSION"]


def webhook_configurations(webhook_yaml: str, url: str, ca_bundle: str) -> list[dict[str, Any]]:
    """Kueue's webhook configurations, kept to Jobs and Kueue's own kinds, pointed at ``url`` by URL."""
    configurations = []
    for document in yaml.safe_load_all(webhook_yaml):
        if not document:
            continue
        kept = []
        for webhook in document["webhooks"]:
            path = webhook["clientConfig"]["service"]["path"]
            if "-batch-v1-job" not in path and "-kueue-x-k8s-io-" not in path:
                continue
            webhook["clientConfig"] = {"url": f"{url}{path}", "caBundle": ca_bundle}
            kept.append(webhook)
        document["metadata"] = {"name": WEBHOOK_PREFIX + document["metadata"]["name"]}
        document["webhooks"] = kept
        configurations.append(document)
    return configurations


@dataclass
class Kueue:
    plane: ControlPlane
    process: subprocess.Popen[bytes]
    run_dir: Path
    crds: Path
    webhooks: list[tuple[str, str]] = field(default_factory=list)
    """(kind, name) of the webhook configurations registered for it."""

    @property
    def log(self) -> str:
        path = self.run_dir / "kueue.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        # Webhooks first: with Kueue gone, a registered webhook (failurePolicy Fail) would refuse Jobs.
        for kind, name in self.webhooks:
            self.plane.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false")
        processes.stop(self.process, grace=20)
        self.plane.kubectl("delete", "-f", str(self.crds), "--ignore-not-found", "--wait=false")
        self.plane.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")


def start_kueue(plane: ControlPlane, binaries: Binaries, run_dir: Path, timeout: float = 90) -> Kueue:
    manifests = manifests_dir(binaries)
    run_dir.mkdir(parents=True, exist_ok=True)
    crds = manifests / "crds"
    applied = plane.kubectl("apply", "--server-side", "-f", str(crds))
    assert applied.returncode == 0, applied.stderr
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds), check=True)
    plane.kubectl("create", "namespace", NAMESPACE)

    pki = Pki(run_dir / "pki")
    serving = pki.serving("kueue-webhook", ["localhost"], ["127.0.0.1"])
    certs = run_dir / "certs"
    certs.mkdir(exist_ok=True)
    shutil.copy(serving.cert, certs / "tls.crt")
    shutil.copy(serving.key, certs / "tls.key")
    webhook_port, health_port, metrics_port, visibility_port = (free_port() for _ in range(4))
    config = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
        "webhook": {"port": webhook_port, "host": "127.0.0.1", "certDir": str(certs)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
        # The on-demand visibility API wants its own certificate at /visibility and an APIService; the
        # queueing under test does not use it.
        "featureGates": {"VisibilityOnDemand": False},
        "visibilityServer": {"bindAddress": "127.0.0.1", "bindPort": visibility_port},
        "clientConnection": {"qps": 50, "burst": 100},
    }
    config_file = run_dir / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    overlay = run_dir / "etc-overlay"
    script = textwrap.dedent(
        f"""
        mkdir -p {overlay}/upper {overlay}/work
        mount -t overlay overlay -o lowerdir=/etc,upperdir={overlay}/upper,workdir={overlay}/work /etc
        mkdir -p /etc/kueue/metrics/certs
        cp {certs}/tls.crt {certs}/tls.key /etc/kueue/metrics/certs/
        exec {binaries["kueue"]} --config={config_file} --visibility-server-port={visibility_port} \\
          --kubeconfig={plane.admin_kubeconfig} --zap-log-level=info
        """
    )
    process = processes.spawn(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", script],
        log_path=run_dir / "kueue.log",
    )
    kueue = Kueue(plane, process, run_dir, crds)
    try:
        _wait_ready(kueue, f"http://127.0.0.1:{health_port}/readyz", timeout)
        ca_bundle = base64.b64encode(pki.ca.cert.read_bytes()).decode()
        documents = webhook_configurations(
            (manifests / "webhook.yaml").read_text(), f"https://127.0.0.1:{webhook_port}", ca_bundle
        )
        registered = run_dir / "webhooks.yaml"
        registered.write_text(yaml.safe_dump_all(documents))
        plane.kubectl("apply", "-f", str(registered), check=True)
        kueue.webhooks = [(d["kind"], d["metadata"]["name"]) for d in documents]
    except BaseException:
        kueue.stop()
        raise
    return kueue


def _wait_ready(kueue: Kueue, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kueue.process.poll() is not None:
            raise RuntimeError(f"kueue exited with {kueue.process.returncode}:\n{kueue.log[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"kueue was not ready after {timeout}s:\n{kueue.log[-4000:]}")
