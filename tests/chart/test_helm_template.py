"""The Helm chart (charts/mnist-operator) rendered by the pinned helm: no API server needed.

- ``helm lint --strict`` and ``helm template`` for the chart's defaults and every ``ci/*-values.yaml``
  scenario, with what each scenario promises checked in the rendered objects;
- the default render is the plain-YAML install of ``manifests/`` (RBAC rules, Deployment, Pushgateway);
- every value of ``values.yaml`` is documented, and ``values.schema.json`` describes no other;
- ``values.schema.json`` and the templates refuse bad values with messages that name the value.

The server-side dry run of every scenario and ``helm install`` on the real cluster are in
tests/k8s/test_helm_chart.py. These tests keep the ``k8s`` marker of the tier whose binaries they need
(``helm`` from ``hack/k8s-binaries.sh``; without it they skip, or fail under CI, as the tier does).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.support.k8s.helm import (
    ALL_VALUES,
    CHART,
    RELEASE,
    RENDER_NAMESPACE,
    SCENARIOS,
    Doc,
    Helm,
    one,
    scenario_id,
    values_args,
)

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
# What the issue asks the chart to ship; a scenario file that goes missing must fail, not shrink the suite.
EXPECTED_SCENARIOS = {
    "default-values.yaml",
    "eks-gpu-values.yaml",
    "external-pushgateway-values.yaml",
    "namespaced-rbac-values.yaml",
}

# What the API server fills into a probe that leaves them out (core/v1 defaults).
PROBE_DEFAULTS = {"failureThreshold": 3, "successThreshold": 1, "timeoutSeconds": 1, "periodSeconds": 10}


def kinds(docs: list[Doc]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def operator_deployment(docs: list[Doc]) -> Doc:
    (deployment,) = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"
    ]
    return deployment


def operator_env(docs: list[Doc]) -> dict[str, str]:
    container = operator_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def pod_specs(docs: list[Doc]) -> dict[str, Doc]:
    """Every pod spec a scenario creates: Deployments' templates and bare Pods (the helm test hook)."""
    specs = {
        f"Deployment/{d['metadata']['name']}": d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] == "Deployment"
    }
    specs.update({f"Pod/{d['metadata']['name']}": d["spec"] for d in docs if d["kind"] == "Pod"})
    return specs


def manifest_docs(name: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc]


# --- lint and render --------------------------------------------------------------------------


def test_the_ci_scenarios_are_the_documented_ones() -> None:
    assert {p.name for p in SCENARIOS} == EXPECTED_SCENARIOS


@pytest.mark.parametrize("scenario", ALL_VALUES, ids=scenario_id)
def test_helm_lint_strict(helm: Helm, scenario: Path | None) -> None:
    linted = helm.run("lint", "--strict", str(CHART), *values_args(scenario))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout
    assert "[WARNING]" not in linted.stdout and "[ERROR]" not in linted.stdout, linted.stdout


@pytest.mark.parametrize("scenario", ALL_VALUES, ids=scenario_id)
def test_every_scenario_renders_one_restricted_operator_with_matching_selectors(
    helm: Helm, scenario: Path | None
) -> None:
    docs = helm.template(*values_args(scenario))
    deployment = operator_deployment(docs)
    spec = deployment["spec"]
    # Standalone kopf: two operators would both reconcile every training.
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    container = spec["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["run", "--liveness"]
    probe = container["livenessProbe"]["httpGet"]
    assert probe == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["health"] == int(
        container["args"][2].rsplit(":", 1)[1].split("/")[0]
    ), "the probe's port is not the one the operator serves /healthz on"
    for where, pod in pod_specs(docs).items():
        assert_restricted(pod, where)
    # Every selector finds its pods, every ServiceMonitor its Service and port.
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        targets = [
            d
            for d in docs
            if d["kind"] == "Deployment"
            and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, f"Service {service['metadata']['name']} selects {len(targets)} Deployments"
        container_ports = {
            p["name"] for p in targets[0]["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    for monitor in (d for d in docs if d["kind"] == "ServiceMonitor"):
        selected = [
            d
            for d in docs
            if d["kind"] == "Service"
            and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, f"ServiceMonitor {monitor['metadata']['name']} selects {len(selected)}"
        ports = {p["name"] for p in selected[0]["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


def assert_restricted(pod: Doc, where: str) -> None:
    """The restricted Pod Security Standard's rules, plus the read-only root filesystem we promise."""
    pod_context = pod.get("securityContext") or {}
    assert pod_context.get("runAsNonRoot") is True, where
    assert pod_context.get("seccompProfile") == {"type": "RuntimeDefault"}, where
    for container in pod["containers"]:
        context = container.get("securityContext") or {}
        assert context.get("allowPrivilegeEscalation") is False, where
        assert context.get("readOnlyRootFilesystem") is True, where
        assert context.get("capabilities") == {"drop": ["ALL"]}, where


def test_default_scenario_bundles_a_pushgateway_and_watches_the_whole_cluster(helm: Helm) -> None:
    docs = helm.template(*values_args(CHART / "ci" / "default-values.yaml"))
    assert kinds(docs) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Deployment",
        "Pod",
        "Role",
        "RoleBinding",
        "Service",
        "Service",
        "ServiceAccount",
    ]
    env = operator_env(docs)
    service = one(docs, "Service", "mnist-operator-pushgateway")
    port = service["spec"]["ports"][0]["port"]
    assert (
        env["MNIST_OPERATOR_PUSHGATEWAY_URL"]
        == f"http://mnist-operator-pushgateway.{RENDER_NAMESPACE}.svc:{port}"
    )
    assert "MNIST_OPERATOR_NAMESPACES" not in env


def test_external_pushgateway_scenario_deploys_none_and_points_the_operator_at_it(helm: Helm) -> None:
    scenario = CHART / "ci" / "external-pushgateway-values.yaml"
    values = yaml.safe_load(scenario.read_text())
    docs = helm.template(*values_args(scenario))
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"] == ["mnist-operator"]
    assert operator_env(docs)["MNIST_OPERATOR_PUSHGATEWAY_URL"] == values["pushgateway"]["externalUrl"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    test_pod = one(docs, "Pod")
    env = {e["name"]: e["value"] for e in test_pod["spec"]["containers"][0]["env"]}
    assert env["PUSHGATEWAY_URL"] == values["pushgateway"]["externalUrl"]


def test_pushgateway_auth_wires_one_secret_to_the_operator_the_pushgateway_and_its_monitor(
    helm: Helm,
) -> None:
    docs = helm.template(
        "--set", "pushgateway.auth.existingSecret=gw-auth", "--set", "serviceMonitor.pushgateway.enabled=true"
    )  # fmt: skip
    container = operator_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    from_secret = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert from_secret == {
        "MNIST_OPERATOR_PUSHGATEWAY_USERNAME": {"name": "gw-auth", "key": "username"},
        "MNIST_OPERATOR_PUSHGATEWAY_PASSWORD": {"name": "gw-auth", "key": "password"},
    }
    pushgateway = one(docs, "Deployment", "mnist-operator-pushgateway")["spec"]["template"]["spec"]
    (gateway,) = pushgateway["containers"]
    assert "--web.config.file=/etc/pushgateway/web-config.yml" in gateway["args"]
    assert gateway["volumeMounts"] == [
        {"name": "web-config", "mountPath": "/etc/pushgateway", "readOnly": True}
    ]
    assert pushgateway["volumes"][0]["secret"]["secretName"] == "gw-auth"
    # Basic auth covers /-/ready too, and a kubelet probe sends no credentials.
    assert "tcpSocket" in gateway["readinessProbe"] and "tcpSocket" in gateway["livenessProbe"]
    endpoint = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["basicAuth"]["password"] == {"name": "gw-auth", "key": "password"}
    test_env = {e["name"]: e for e in one(docs, "Pod")["spec"]["containers"][0]["env"]}
    assert test_env["PUSHGATEWAY_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "gw-auth"
    refused = helm.run(
        "template", RELEASE, str(CHART), "--kube-version", helm.kube_version,
        "--set", "pushgateway.auth.existingSecret=gw-auth", "--set", "pushgateway.enabled=false",
    )  # fmt: skip
    assert refused.returncode != 0 and "needs a Pushgateway" in refused.stderr


def test_namespaced_scenario_grants_roles_only_in_the_watched_namespaces(helm: Helm) -> None:
    scenario = CHART / "ci" / "namespaced-rbac-values.yaml"
    watched = yaml.safe_load(scenario.read_text())["watchNamespaces"]
    docs = helm.template(*values_args(scenario))
    assert sorted(d["metadata"]["namespace"] for d in training_roles(docs, "Role")) == sorted(watched)
    bindings = training_roles(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(watched)
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "mnist-operator", "namespace": RENDER_NAMESPACE}
        ]
    assert operator_env(docs)["MNIST_OPERATOR_NAMESPACES"] == ",".join(watched)
    cluster_role = one(docs, "ClusterRole")
    assert {g for rule in cluster_role["rules"] for g in rule["apiGroups"]} == {"apiextensions.k8s.io"}


def test_namespaced_scope_without_a_list_watches_the_release_namespace(helm: Helm) -> None:
    docs = helm.template("--set", "rbac.scope=namespace", namespace="team-x")
    assert [d["metadata"]["namespace"] for d in training_roles(docs, "Role")] == ["team-x"]
    assert operator_env(docs)["MNIST_OPERATOR_NAMESPACES"] == "team-x"


def test_eks_gpu_scenario(helm: Helm) -> None:
    scenario = CHART / "ci" / "eks-gpu-values.yaml"
    values = yaml.safe_load(scenario.read_text())
    docs = helm.template(*values_args(scenario))
    assert operator_env(docs)["MNIST_OPERATOR_TRAINER_IMAGE"].endswith(
        ":" + values["trainer"]["image"]["tag"]
    )
    account = one(docs, "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert operator_deployment(docs)["spec"]["template"]["spec"]["nodeSelector"] == values["nodeSelector"]
    monitor = one(docs, "ServiceMonitor", "mnist-operator-pushgateway")
    # Without honorLabels Prometheus would overwrite each run's job/instance with the Pushgateway's own.
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    one(docs, "ServiceMonitor", "mnist-operator")
    assert one(docs, "PrometheusRule")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    one(docs, "ConfigMap", "mnist-operator-dashboard")


def test_operator_settings_reach_the_environment(helm: Helm) -> None:
    docs = helm.template(
        "--set-json",
        'trainer.command=["/opt/py", "-m", "mnist_trainer"]',
        "--set",
        "trainer.serviceAccountName=trainer,trainer.runAsUser=2000",
        "--set-json",
        "pollIntervalSeconds=0.5",
        "--set",
        "watchTimeoutSeconds=60,sweepIntervalSeconds=30,metrics.port=0,image.tag=9.9.9,watchNamespaces={a,b}",
        "--set-json",
        'extraEnv=[{"name": "EXTRA", "value": "1"}]',
    )
    env = operator_env(docs)
    assert json.loads(env["MNIST_OPERATOR_TRAINER_COMMAND"]) == ["/opt/py", "-m", "mnist_trainer"]
    assert env["MNIST_OPERATOR_TRAINER_SERVICE_ACCOUNT"] == "trainer"
    assert env["MNIST_OPERATOR_RUN_AS_USER"] == "2000"
    assert env["MNIST_OPERATOR_POLL_INTERVAL_SECONDS"] == "0.5"
    assert env["MNIST_OPERATOR_WATCH_TIMEOUT_SECONDS"] == "60"
    assert env["MNIST_OPERATOR_SWEEP_INTERVAL_SECONDS"] == "30"
    assert env["MNIST_OPERATOR_METRICS_PORT"] == "0"
    assert env["MNIST_OPERATOR_NAMESPACES"] == "a,b"
    assert env["EXTRA"] == "1"
    deployment = operator_deployment(docs)
    pod = deployment["spec"]["template"]
    assert pod["spec"]["containers"][0]["image"].endswith(":9.9.9")
    # Metrics off: no port to scrape, so no annotations inviting a scrape and no Service port.
    assert "metrics" not in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert "prometheus.io/scrape" not in (pod["metadata"].get("annotations") or {})
    assert {p["name"] for p in one(docs, "Service", "mnist-operator")["spec"]["ports"]} == {"health"}


def documented_values() -> dict[str, bool]:
    """Every key path of values.yaml -> whether a `# --` comment (helm-docs style) covers it: its own,
    one of its parents' (a documented map such as `resources` covers its contents), or, for a map, all
    of its children's."""
    own: dict[str, bool] = {}
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        key = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if key is None:
            comment = [] if not stripped else comment
            continue
        indent = len(key.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([p for _, p in stack] + [key.group(2)])
        own[path] = any(c.startswith("# --") for c in comment)
        stack.append((indent, key.group(2)))
        comment = []

    def covered(path: str) -> bool:
        parts = path.split(".")
        if any(own.get(".".join(parts[:i])) for i in range(1, len(parts) + 1)):
            return True
        children = [p for p in own if p.startswith(path + ".") and "." not in p[len(path) + 1 :]]
        return bool(children) and all(covered(c) for c in children)

    return {path: covered(path) for path in own}


def test_every_value_is_commented() -> None:
    documentation = documented_values()
    assert len(documentation) > 50, "the values.yaml parser found too few keys to be trusted"
    assert [path for path, documented in documentation.items() if not documented] == []


def schema_paths(schema: Doc, prefix: str = "") -> set[str]:
    """Key paths the schema spells out, down to objects that take any key (maps, Kubernetes objects)."""
    paths: set[str] = set()
    for name, child in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        paths.add(path)
        paths |= schema_paths(child, path + ".")
    return paths


def test_the_schema_describes_no_value_that_values_yaml_leaves_undocumented() -> None:
    # The other direction needs no test: the schema's additionalProperties: false makes `helm lint`
    # refuse any key of values.yaml that it does not describe.
    schema = json.loads((CHART / "values.schema.json").read_text())
    undocumented = schema_paths(schema) - {"global"} - set(documented_values())
    assert undocumented == set(), "in values.schema.json, but without a default and comment in values.yaml"


# --- the chart is the plain-YAML install ---------------------------------------------------------


def manifest_rules() -> list[Doc]:
    (role,) = [d for d in manifest_docs("rbac.yaml") if d["kind"] == "ClusterRole"]
    rules: list[Doc] = role["rules"]
    return rules


def test_cluster_scope_rules_are_exactly_the_manifests(helm: Helm) -> None:
    assert one(helm.template(), "ClusterRole")["rules"] == manifest_rules()


def training_roles(docs: list[Doc], kind: str) -> list[Doc]:
    """The Roles (or RoleBindings) for trainings, without the leader-election one."""
    return [d for d in docs if d["kind"] == kind and not d["metadata"]["name"].endswith("-leader-election")]


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_the_leader_election_role_is_the_manifests_in_the_release_namespace_only(
    helm: Helm, scope: str
) -> None:
    docs = helm.template("--set", f"rbac.scope={scope}")
    (planned,) = [d for d in manifest_docs("rbac.yaml") if d["kind"] == "Role"]
    role = one(docs, "Role", "mnist-operator-leader-election")
    assert role["rules"] == planned["rules"] and role["metadata"]["namespace"] == RENDER_NAMESPACE
    binding = one(docs, "RoleBinding", "mnist-operator-leader-election")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mnist-operator", "namespace": RENDER_NAMESPACE}
    ]


def test_replicas_elect_a_leader_on_a_lease_named_after_the_release(helm: Helm) -> None:
    one_replica = operator_deployment(helm.template())
    assert (one_replica["spec"]["replicas"], one_replica["spec"]["strategy"]["type"]) == (1, "Recreate")
    docs = helm.template("--set", "replicaCount=2", "--set", "leaderElection.leaseDurationSeconds=20")
    deployment = operator_deployment(docs)
    # Standbys keep the operator acting through an upgrade: the old leader hands over as it stops.
    assert (deployment["spec"]["replicas"], deployment["spec"]["strategy"]["type"]) == (2, "RollingUpdate")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MNIST_OPERATOR_LEADER_ELECTION_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert env["MNIST_OPERATOR_LEADER_ELECTION_LEASE"]["value"] == "mnist-operator"
    assert env["MNIST_OPERATOR_LEASE_DURATION_SECONDS"]["value"] == "20"


def test_namespace_scope_splits_exactly_the_manifests_rules(helm: Helm) -> None:
    docs = helm.template("--set", "rbac.scope=namespace")
    combined = one(docs, "Role", "mnist-operator")["rules"] + one(docs, "ClusterRole")["rules"]
    assert combined == manifest_rules()


def test_default_deployments_are_the_manifests(helm: Helm) -> None:
    docs = helm.template()
    (planned,) = manifest_docs("operator.yaml")
    rendered = operator_deployment(docs)
    for key in ("replicas", "strategy"):
        assert rendered["spec"][key] == planned["spec"][key], key
    rendered_pod, planned_pod = rendered["spec"]["template"], planned["spec"]["template"]
    assert rendered_pod["metadata"]["annotations"] == planned_pod["metadata"]["annotations"]
    assert rendered_pod["spec"]["securityContext"] == planned_pod["spec"]["securityContext"]
    (ours,), (theirs,) = rendered_pod["spec"]["containers"], planned_pod["spec"]["containers"]
    for key in ("image", "args", "ports", "resources", "securityContext"):
        assert ours[key] == theirs[key], key
    # The chart spells out a probe setting the manifests leave to the API server's default.
    assert {**PROBE_DEFAULTS, **ours["livenessProbe"]} == {**PROBE_DEFAULTS, **theirs["livenessProbe"]}
    # The manifests' env, except the Pushgateway's address, which names its namespaced Service.
    ours_env = {e["name"]: e.get("value") or e["valueFrom"] for e in ours["env"]}
    theirs_env = {e["name"]: e.get("value") or e["valueFrom"] for e in theirs["env"]}
    url = theirs_env.pop("MNIST_OPERATOR_PUSHGATEWAY_URL")
    assert theirs_env.items() <= ours_env.items()
    assert ours_env["MNIST_OPERATOR_PUSHGATEWAY_URL"].rsplit(":", 1)[1] == url.rsplit(":", 1)[1]

    planned_gateway = next(d for d in manifest_docs("pushgateway.yaml") if d["kind"] == "Deployment")
    rendered_gateway = one(docs, "Deployment", "mnist-operator-pushgateway")
    gateway_pod, planned_gateway_pod = (
        rendered_gateway["spec"]["template"]["spec"],
        planned_gateway["spec"]["template"]["spec"],
    )
    assert gateway_pod["securityContext"] == planned_gateway_pod["securityContext"]
    (ours,), (theirs,) = gateway_pod["containers"], planned_gateway_pod["containers"]
    for key in ("image", "args", "ports", "readinessProbe", "livenessProbe", "resources", "securityContext"):
        assert ours[key] == theirs[key], key


def test_the_chart_crd_is_the_manifests_crd(helm: Helm) -> None:
    (crd,) = [d for d in helm.template(crds=True) if d["kind"] == "CustomResourceDefinition"]
    assert crd == yaml.safe_load((MANIFESTS / "crd.yaml").read_text())


# --- values the chart refuses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["--set", "rbac.scope=galaxy"], ["/rbac/scope", "'cluster'", "'namespace'"]),
        (["--set", "rbacc.scope=cluster"], ["additional properties 'rbacc' not allowed"]),
        (["--set", "metrics.port=70000"], ["/metrics/port", "65,535"]),
        (["--set", "pollIntervalSeconds=0"], ["/pollIntervalSeconds", "0.1"]),
        (
            ["--set", "pushgateway.enabled=false,pushgateway.externalUrl=ftp://x"],
            ["/pushgateway/externalUrl"],
        ),
        (["--set", "watchNamespaces={Not_A_Namespace}"], ["/watchNamespaces/0"]),
        # Template-level checks: combinations a schema cannot explain as well.
        (
            ["--set", "pushgateway.externalUrl=http://elsewhere:9091"],
            ["pushgateway.externalUrl is set but pushgateway.enabled is true"],
        ),
        (["--set", "serviceMonitor.operator.enabled=true,metrics.port=0"], ["needs metrics.port > 0"]),
        (
            ["--set", "serviceAccount.create=false"],
            ["serviceAccount.name must name an existing ServiceAccount"],
        ),
    ],
    ids=lambda v: v[1] if isinstance(v, list) and v and v[0] == "--set" else None,
)
def test_bad_values_are_refused_with_a_readable_message(
    helm: Helm, values: list[str], expected: list[str]
) -> None:
    rendered = helm.run("template", RELEASE, str(CHART), "--kube-version", helm.kube_version, *values)
    assert rendered.returncode != 0, f"helm accepted {values}:\n{rendered.stdout[:2000]}"
    for fragment in expected:
        assert fragment in rendered.stderr, rendered.stderr
