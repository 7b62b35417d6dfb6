"""The Helm chart (charts/mnist-operator) with the pinned helm, installed into the real control plane.

- every rendered scenario passes ``kubectl apply --dry-run=server`` (admission, schema and restricted Pod
  Security checks of the real API server);
- ``helm install`` runs the operator pod from its built image on a real node (as the chart's
  ServiceAccount, namespaced RBAC), ``helm test`` passes, the sample manifest trains to Succeeded through
  an external Pushgateway, and ``helm uninstall`` removes every object. (tests/k8s/test_operator.py
  installs the chart's defaults, with its bundled Pushgateway.)

What needs no API server (``helm lint`` and ``helm template`` of every scenario, values refused with a
readable message) is tested in tests/chart/test_helm_template.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.support.k8s.controlplane import ControlPlane
from tests.support.k8s.helm import ALL_VALUES, CHART, RELEASE, Helm, one, scenario_id, values_args
from tests.support.k8s.helpers import create_namespace, wait_for
from tests.support.k8s.incluster import ClusterMirror, start_pushgateway
from tests.support.k8s.operator_support import apply, sample_training, training_status, wait_for_phase

from .conftest import Cluster

pytestmark = pytest.mark.k8s

GROUP = "training.mnist-operator.io"


# --- the real API server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def team_namespaces(k8s_api: k8s.ApiClient) -> Iterator[list[str]]:
    """The namespaces ci/namespaced-rbac-values.yaml names: Roles can only be created in existing ones.
    Module-scoped: a namespace deleted between two scenarios would still be terminating for the next."""
    core: Any = k8s.CoreV1Api(k8s_api)
    names: list[str] = yaml.safe_load((CHART / "ci" / "namespaced-rbac-values.yaml").read_text())[
        "watchNamespaces"
    ]
    created = []
    for name in names:
        try:
            core.create_namespace({"metadata": {"name": name}})
            created.append(name)
        except ApiException as error:
            if error.status != 409:  # an earlier test's leftover is as good as a fresh one
                raise
    yield names
    for name in created:
        core.delete_namespace(name, propagation_policy="Background")


@pytest.mark.parametrize("scenario", ALL_VALUES, ids=scenario_id)
def test_every_scenario_passes_server_side_dry_run(
    helm: Helm,
    control_plane: ControlPlane,
    core: Any,
    namespace: str,
    team_namespaces: list[str],
    tmp_path: Path,
    scenario: Path | None,
) -> None:
    # The release namespace enforces the restricted Pod Security Standard, as manifests/namespace.yaml
    # does, so the API server itself judges the helm test Pod (enforce) and the Deployments (warn).
    core.patch_namespace(
        namespace,
        {
            "metadata": {
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                }
            }
        },
    )
    docs = helm.template(*values_args(scenario), namespace=namespace, crds=True)
    # This cluster has no Prometheus Operator, hence no ServiceMonitor or PrometheusRule kind to validate
    # against; their shape is checked offline (tests/chart/test_helm_template.py, test_monitoring.py) and
    # their use by a real Prometheus in tests/k8s/test_operator.py.
    checked = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
    # The ServiceAccount admission plugin looks a pod's ServiceAccount up in the store, where a dry run of
    # the same request never puts it: create the rendered one for real first (it goes with the namespace).
    account = tmp_path / "serviceaccount.yaml"
    account.write_text(yaml.safe_dump(one(docs, "ServiceAccount")))
    control_plane.kubectl("apply", "-f", str(account), check=True)
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(checked))
    applied = control_plane.kubectl("apply", "--dry-run=server", "-f", str(rendered))
    assert applied.returncode == 0, applied.stderr
    assert "PodSecurity" not in applied.stderr, applied.stderr
    lines = [line for line in applied.stdout.splitlines() if line.strip()]
    assert len(lines) == len(checked), applied.stdout
    assert all(line.endswith("(server dry run)") for line in lines), applied.stdout


# --- install, helm test, a training, uninstall --------------------------------------------------------


@pytest.fixture
def apps(k8s_api: k8s.ApiClient) -> Any:
    return k8s.AppsV1Api(k8s_api)


@pytest.fixture
def trainings_namespace(core: Any, namespace: str) -> Iterator[str]:
    """Where the trainings go: not the release namespace, so the Role really lands somewhere else."""
    name = f"{namespace}-work"
    create_namespace(core, name)
    yield name
    # Waited for, unlike the `namespace` fixture: a cluster-wide operator in a later module (test_operator)
    # would otherwise find this namespace's leftovers and fail to act on them while it terminates.
    core.delete_namespace(name, propagation_policy="Background")
    wait_for(lambda: name not in namespace_names(core), timeout=120, what=f"namespace {name} to be deleted")


def namespace_names(core: Any) -> set[str]:
    return {n.metadata.name for n in core.list_namespace().items}


def release_objects(control_plane: ControlPlane, namespaces: list[str]) -> list[str]:
    """Everything labelled with our release, in the given namespaces and cluster-wide."""
    selector = f"app.kubernetes.io/instance={RELEASE}"
    found: list[str] = []
    for namespace in namespaces:
        listed = control_plane.kubectl(
            "get",
            "deployments,services,serviceaccounts,roles,rolebindings,pods,secrets",
            "-n",
            namespace,
            "-l",
            selector,
            "-o",
            "name",
            check=True,
        )
        found += listed.stdout.split()
        # helm's own release records (Secrets labelled owner=helm,name=<release>).
        records = control_plane.kubectl(
            "get", "secrets", "-n", namespace, "-l", f"owner=helm,name={RELEASE}", "-o", "name", check=True
        )
        found += records.stdout.split()
    cluster = control_plane.kubectl(
        "get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name", check=True
    )
    return found + cluster.stdout.split()


def test_helm_install_trains_the_sample_and_uninstall_cleans_up(
    helm: Helm,
    control_plane: ControlPlane,
    cluster: Cluster,
    mirror: ClusterMirror,
    core: Any,
    batch: Any,
    apps: Any,
    custom: Any,
    namespace: str,
    trainings_namespace: str,
    tmp_path: Path,
) -> None:
    """The namespaced-RBAC, external-Pushgateway way to install: the operator pod from its built image
    runs as the chart's ServiceAccount (its token, in-cluster config), watches only the trainings'
    namespace, and reports through a Pushgateway the chart does not deploy."""
    metrics_namespace = f"{namespace}-metrics"
    create_namespace(core, metrics_namespace, labels={"pod-security.kubernetes.io/enforce": "restricted"})
    gateway = start_pushgateway(control_plane, core, cluster.images["pushgateway"], metrics_namespace)
    values = {
        "rbac": {"scope": "namespace"},
        "watchNamespaces": [trainings_namespace],
        "pollIntervalSeconds": 1,
        "pushgateway": {"enabled": False, "externalUrl": gateway.url},
        "terminationGracePeriodSeconds": 15,
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return helm.run(*args, "--namespace", namespace, kubeconfig=control_plane.admin_kubeconfig)

    installed = run(
        "install", RELEASE, str(CHART), "--values", str(values_file), "--wait", "--timeout", "180s"
    )
    try:
        assert installed.returncode == 0, installed.stderr
        # NOTES.txt tells the user the next commands, in the namespace the operator watches.
        assert f"kubectl apply -n {trainings_namespace} -f -" in installed.stdout, installed.stdout
        assert f"kubectl get mnisttrainings -n {trainings_namespace} -w" in installed.stdout, installed.stdout

        (operator_pod,) = core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/component=operator"
        ).items
        assert operator_pod.spec.containers[0].image == cluster.images["operator"]

        # The test pod checks the API, the ServiceAccount's rights, the operator's /healthz and the
        # Pushgateway, and exits non-zero unless every check passed (the chart deletes it on success).
        helm.assert_release_test_passes(control_plane, namespace)

        spec = small_spec(mirror)
        apply(control_plane, sample_training(trainings_namespace, "helm-digits", **spec), tmp_path)
        status = wait_for_phase(custom, trainings_namespace, "helm-digits", "Succeeded", timeout=300)
        assert status["epoch"] == spec["epochs"] and status["attempts"] == 1
        conditions = {c["type"]: c for c in status["conditions"]}
        # The figures came through the external Pushgateway the chart pointed the operator at.
        assert conditions["MetricsAvailable"]["status"] == "True", conditions
        assert isinstance(status.get("accuracy"), float)
        assert any(g["labels"].get("training") == "helm-digits" for g in gateway.groups())
        (job,) = batch.list_namespaced_job(trainings_namespace).items
        assert job.spec.template.spec.containers[0].image == cluster.images["trainer"]

        operator_log = cluster.logs(namespace, operator_pod.metadata.name)
        forbidden = [line for line in operator_log.splitlines() if "Forbidden" in line or " 403" in line]
        assert not forbidden, "the chart's namespaced RBAC was not enough:\n" + "\n".join(forbidden[:20])
    finally:
        uninstalled = run("uninstall", RELEASE, "--wait", "--timeout", "120s")
    assert uninstalled.returncode == 0, uninstalled.stderr

    # helm uninstall deleted the Deployment; the garbage collector its pod; the kubelet its container.
    wait_for(
        lambda: (
            not core.list_namespaced_pod(
                namespace, label_selector=f"app.kubernetes.io/instance={RELEASE}"
            ).items
        ),
        timeout=60,
        what="the operator pod to be deleted",
    )
    assert release_objects(control_plane, [namespace, trainings_namespace]) == []
    assert not apps.list_namespaced_deployment(namespace).items
    # helm never deletes crds/ (that would delete every user's trainings), and trainings are not its own.
    control_plane.kubectl("get", f"crd/mnisttrainings.{GROUP}", check=True)
    assert training_status(custom, trainings_namespace, "helm-digits")["phase"] == "Succeeded"
    control_plane.kubectl(
        "delete", "mnisttraining", "helm-digits", "-n", trainings_namespace, "--wait=true", check=True
    )
    core.delete_namespace(metrics_namespace, propagation_policy="Background")


def small_spec(mirror: ClusterMirror) -> dict[str, Any]:
    """The sample's spec on the in-cluster mirror's generated data, small enough to train in seconds."""
    return {
        "dataset": mirror.dataset(),
        "model": "mlp",
        "epochs": 2,
        "batchSize": 64,
        "releaseCriteria": {"minTestAccuracy": 0.5},
        "resources": {"cpu": "500m", "memory": "2Gi"},
    }
