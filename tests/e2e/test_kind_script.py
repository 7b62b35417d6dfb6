"""Tests of the script hack/kind-e2e.sh and its helpers, not of the product.

Nothing here builds an image, starts a cluster or trains a model: these tests feed the script stand-in
``docker``/``kind``/``helm``/``kubectl``/``curl`` commands and canned output, or call its side commands
(``preflight``, ``helm-values``, ``training``), so they prove nothing about the operator or the trainer. They
exist because the script itself only runs where a Docker engine is, which most machines running the test
suite (the project's CI among them) lack; its logic is checked here, everywhere, so a broken script does not
wait for the next machine with Docker to show: the preflight's reasons, skip versus failure of the real test,
the chart values it sets, the training it renders, the in-cluster mirror manifest, a whole run against stand-in
tools (its order, traps, artifacts and cleanup, with evidence.py's checks agreeing with the files it writes),
and shellcheck.

The product is tested end to end by ``test_kind.py::test_a_training_on_kind``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mnist_api import validate_resource

from .conftest import REQUIRED_ENV, ROOT, SCRIPT, missing_prerequisites, skip_or_fail
from .evidence import check_evidence

CHART_VALUES = ROOT / "charts" / "mnist-operator" / "values.yaml"
MIRROR = Path(__file__).parent / "mirror" / "mirror.yaml"
E2E_TEST = Path(__file__).parent / "test_kind.py"


def fake_tool(folder: Path, name: str, body: str = "exit 0") -> str:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


NO_DAEMON = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
)


def tools(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """An environment whose tools are all present fakes, except where ``overrides`` says otherwise."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    docker = 'case "$1" in info) echo 27.5.1 ;; buildx) echo "github.com/docker/buildx v0.21.2" ;; esac'
    env = {
        "PATH": os.environ["PATH"],
        "DOCKER": fake_tool(folder, "docker", docker),
        "KIND": fake_tool(folder, "kind"),
        "HELM": fake_tool(folder, "helm"),
        "KUBECTL": fake_tool(folder, "kubectl"),
        "CURL": fake_tool(folder, "curl"),
    }
    env.update(overrides)
    return env


def test_script_preflight_passes_when_everything_is_there(tmp_path: Path) -> None:
    assert missing_prerequisites(tools(tmp_path)) == []


def test_script_preflight_names_exactly_what_is_missing(tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    env = tools(
        tmp_path,
        DOCKER=fake_tool(tmp_path, "docker-without-daemon", f"echo '{NO_DAEMON}' >&2; exit 1"),
        KIND=str(absent / "kind"),
        HELM=str(absent / "helm"),
    )
    assert missing_prerequisites(env) == [
        f"no Docker engine reachable (`docker info`: {NO_DAEMON})",
        f"no kind binary (KIND={absent}/kind; e.g. go install sigs.k8s.io/kind@v0.33.0)",
        f"no helm binary (HELM={absent}/helm; or run hack/k8s-binaries.sh and set MNIST_K8S_BIN)",
    ]


def test_script_preflight_tells_a_missing_cli_from_a_missing_engine_and_buildx(tmp_path: Path) -> None:
    no_cli = missing_prerequisites(tools(tmp_path, DOCKER=str(tmp_path / "absent" / "docker")))
    assert no_cli == [f"no docker CLI (DOCKER={tmp_path}/absent/docker)"]
    buildx_broken = (
        'case "$1" in info) echo 27.5.1 ;; *) echo "docker: unknown command: docker buildx" >&2; exit 1 ;;'
    )
    buildx_broken += " esac"
    no_buildx = missing_prerequisites(
        tools(tmp_path, DOCKER=fake_tool(tmp_path, "docker-old", buildx_broken))
    )
    assert len(no_buildx) == 1 and no_buildx[0].startswith("no docker buildx"), no_buildx


def test_script_missing_prerequisites_skip_unless_required() -> None:
    missing = ["no kind binary (KIND=kind)"]
    with pytest.raises(pytest.skip.Exception, match=r"no kind binary .*set MNIST_E2E_REQUIRED=1"):
        skip_or_fail(missing, {})
    for value in ("1", "true", "yes"):
        with pytest.raises(pytest.fail.Exception, match=r"no kind binary .*MNIST_E2E_REQUIRED is set"):
            skip_or_fail(missing, {REQUIRED_ENV: value})
    skip_or_fail([], {REQUIRED_ENV: "1"})  # nothing missing: neither


def test_script_preflight_skips_the_e2e_test_or_fails_it_when_required(tmp_path: Path) -> None:
    # The real fixture wiring, in a child pytest: the same test id a CI job would run.
    env = tools(
        tmp_path, DOCKER=fake_tool(tmp_path, "docker-without-daemon", f"echo '{NO_DAEMON}' >&2; exit 1")
    )
    env = {**{k: v for k, v in os.environ.items() if k != REQUIRED_ENV}, **env}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-rs",
        f"{E2E_TEST.relative_to(ROOT)}::test_a_training_on_kind",
    ]
    skipped = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert skipped.returncode == 0, skipped.stdout
    assert re.search(r"SKIPPED .*kind e2e prerequisites missing: no Docker engine reachable", skipped.stdout)
    failed = subprocess.run(
        command,
        cwd=ROOT,
        env={**env, REQUIRED_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert failed.returncode == 1, failed.stdout
    assert "no Docker engine reachable" in failed.stdout and "MNIST_E2E_REQUIRED is set" in failed.stdout


def helm_values() -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(SCRIPT), "helm-values"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_script_sets_only_values_the_chart_has() -> None:
    if not CHART_VALUES.exists():
        pytest.skip(f"{CHART_VALUES.relative_to(ROOT)} is not written yet")
    values = yaml.safe_load(CHART_VALUES.read_text())
    for key, value in helm_values().items():
        node: Any = values
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"charts/mnist-operator/values.yaml has no {key}"
            node = node[part]
        if value in ("true", "false"):
            assert isinstance(node, bool), f"{key} is {node!r} in values.yaml, the script sets a boolean"
        else:
            assert isinstance(node, str), f"{key} is {node!r} in values.yaml, the script sets a string"


def kubectl() -> str | None:
    bin_dir = os.environ.get("MNIST_K8S_BIN", "")
    pinned = Path(bin_dir) / "kubectl" if bin_dir else None
    return shutil.which("kubectl") or (str(pinned) if pinned and pinned.exists() else None)


def rendered_training(home: Path, **env: str) -> dict[str, Any]:
    binary = kubectl()
    if binary is None:
        pytest.skip("no kubectl on PATH nor in MNIST_K8S_BIN (hack/kind-e2e.sh renders the training with it)")
    out = subprocess.run(
        ["bash", str(SCRIPT), "training"],
        env={"PATH": os.environ["PATH"], "HOME": str(home), "KUBECTL": binary, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    document: dict[str, Any] = yaml.safe_load(out)
    return document


def test_script_renders_the_sample_made_fast_and_valid(tmp_path: Path) -> None:
    document = rendered_training(tmp_path)
    training = validate_resource(document)  # the API's own validation: what the CRD schema will check
    sample = yaml.safe_load((ROOT / "manifests" / "samples" / "mnist-training.yaml").read_text())
    spec = training.spec
    assert (spec.epochs, spec.model, spec.resources.cpu) == (1, "mlp", "500m")
    assert spec.output.claim_name == "e2e-output"
    assert spec.dataset.url is None  # by default the trainer downloads from the canonical location
    assert spec.release_criteria.min_test_accuracy == 0.8
    assert spec.run_policy.backoff_limit == 1 and spec.run_policy.active_deadline_seconds == 1200
    # Everything the script does not change is the sample's.
    for field in ("optimizer", "learningRate", "batchSize", "seed", "validationSplit", "metrics"):
        assert document["spec"][field] == sample["spec"][field], field


def test_script_renders_a_training_pointing_at_a_mirror(tmp_path: Path) -> None:
    digest = "0" * 64
    training = validate_resource(
        rendered_training(
            tmp_path,
            E2E_DATASET_NAME="fashion-mnist",
            E2E_DATASET_URL="http://mirror.invalid/fashion/",
            E2E_DATASET_SHA256=json.dumps({"train-images-idx3-ubyte.gz": digest}),
            E2E_MODEL="convnet",
            E2E_EPOCHS="2",
        )
    )
    assert training.spec.dataset.url == "http://mirror.invalid/fashion/"
    assert training.spec.dataset.sha256 == {"train-images-idx3-ubyte.gz": digest}
    assert (training.spec.model, training.spec.epochs) == ("convnet", 2)
    assert training.spec.release_criteria.min_test_accuracy == 0.7  # the Fashion-MNIST default


def test_script_mirror_manifest_serves_what_the_script_asks_for() -> None:
    pod, service = yaml.safe_load_all(MIRROR.read_text())
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "@TRAINER_IMAGE@"  # replaced by the script with the loaded trainer image
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True  # restricted Pod Security, as the namespace
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/srv", "/tmp"}
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    script = SCRIPT.read_text()
    assert (
        f"http://{service['metadata']['name']}.${{NAMESPACE}}.svc:{service['spec']['ports'][0]['port']}/"
        in script
    )
    assert f"pod/{pod['metadata']['name']}" in script


# Stand-ins for docker, kind, helm, kubectl and curl that answer the calls hack/kind-e2e.sh makes, as a
# healthy cluster would. They exercise the script's plumbing (order, set -u, traps, artifacts, cleanup), and
# evidence.check_evidence against the files it writes; the real thing is test_kind.py::test_a_training_on_kind.
FAKES = {
    "docker": """
case "$1" in
  info) echo 27.5.1 ;;
  buildx) echo v0.21.2 ;;
  build | run) echo "docker $1" >&2 ;;
  image)
    if [ "$3" = -f ]; then echo 1000:1000; else
      image='{"Config": {"User": "1000:1000", "Labels": {"org.opencontainers.image.revision": "abc"}}}'
      echo "[$image, $image]"
    fi ;;
  *) echo "fake docker: $*" >&2; exit 1 ;;
esac""",
    "kind": """
case "$1 $2" in
  "get clusters") cat "$FAKE_STATE/cluster" 2>/dev/null || echo "No kind clusters found." >&2 ;;
  "create cluster") echo "$4" >"$FAKE_STATE/cluster" ;;
  "delete cluster") rm -f "$FAKE_STATE/cluster"; echo deleted >>"$FAKE_STATE/cluster-deleted" ;;
  "load docker-image" | "export kubeconfig" | "export logs") ;;
  *) echo "fake kind: $*" >&2; exit 1 ;;
esac""",
    "helm": 'echo "$*" >>"$FAKE_STATE/helm.log"',
    "curl": """
row='{instance="",job="mnist",namespace="mnist-e2e",training="e2e-mnist",uid="u1"}'
echo '# TYPE gangplank_train_accuracy gauge'
if [ ! -f "$FAKE_STATE/deleted" ]; then
  echo "gangplank_train_accuracy$row 0.91"
  echo "gangplank_train_epochs_count$row 1"
  echo "gangplank_test_accuracy$row 0.94"
fi""",
    "kubectl": """
header='NAME        PHASE       EPOCH   ACCURACY   VAL-ACC   LOSS'
row='e2e-mnist   Succeeded   1/1     0.91       0.94      0.3'
model=pvc://e2e-output/mnist-e2e/e2e-mnist/model.keras
case " $* " in
  *" patch --local "*) exec "$REAL_KUBECTL" "$@" ;;
  *" create namespace "*) printf 'apiVersion: v1\\nkind: Namespace\\nmetadata: {name: mnist-e2e}\\n' ;;
  *" apply -f "*) cat >/dev/null ;;
  *" port-forward "*) echo $$ >"$FAKE_STATE/port-forward.pid"; echo "Forwarding from 127.0.0.1:40000 -> 9091"
    exec sleep 300 ;;
  *" logs job/e2e-mnist-trainer "*)
    at="2026-01-01T00:00:00Z INFO    epoch 1/1 "
    echo "$at step 400/750 (53%)  loss 0.4000  accuracy 0.8800  2s into the epoch"
    echo "$at loss 0.3000  accuracy 0.9100  val_loss 0.2000  val_accuracy 0.9400  3.2s  15,000 img/s"
    echo "2026-01-01T00:00:01Z INFO    done: test accuracy 0.9400 after 1 epochs in 5.0s" ;;
  *"{.status.phase} {.status.progress}"*) echo "Succeeded 1/1 0.91 0.94" ;;
  *"{.status.testAccuracy}"*) echo 0.94 ;;
  *"{.status.modelPath}"*) echo "$model" ;;
  *"{.status.jobName}"*) echo e2e-mnist-trainer ;;
  *'?(@.type=="Succeeded")'*) echo True ;;
  *MNIST_PUSHGATEWAY_URL*) echo http://mnist-operator-pushgateway.mnist-operator.svc:9091 ;;
  *" -o json "*) echo '{"status": {"phase": "Succeeded", "epoch": 1, "epochs": 1, "progress": "1/1",
    "testAccuracy": 0.94, "jobName": "e2e-mnist-trainer", "podName": "e2e-mnist-trainer-x",
    "modelPath": "'"$model"'", "conditions": [{"type": "Succeeded", "status": "True"},
    {"type": "MetricsAvailable", "status": "True"}]}}' ;;
  *" --no-headers "*) echo "$row      40s" ;;
  *" get mnisttrainings -o wide "*) echo "$header   TEST-ACC   POD   MODEL   AGE"
    echo "$row      0.94       e2e-mnist-trainer-x   $model   40s" ;;
  *" get mnisttrainings "*) echo "$header      AGE"; echo "$row      40s" ;;
  *" delete mnisttraining "*) touch "$FAKE_STATE/deleted" ;;
  *" -o name "*) ;;  # nothing left: no Job, pods or release objects
  *" version "* | *" get mt "* | *" wait "* | *" label "*) ;;
  *) echo "fake kubectl: $*" >&2; exit 1 ;;
esac""",
}


def test_script_runs_through_against_fake_tools(tmp_path: Path) -> None:
    real_kubectl = kubectl()
    if real_kubectl is None:
        pytest.skip("no kubectl on PATH nor in MNIST_K8S_BIN (the script renders the training with it)")
    state, artifacts = tmp_path / "state", tmp_path / "artifacts"
    state.mkdir()
    folder = tmp_path / "bin"
    folder.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "FAKE_STATE": str(state),
        "REAL_KUBECTL": real_kubectl,
        "E2E_ARTIFACTS": str(artifacts),
        **{name.upper(): fake_tool(folder, name, body) for name, body in FAKES.items()},
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), "run"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    check_evidence(artifacts)
    assert (state / "cluster-deleted").exists() and not (state / "cluster").exists(), "the cluster was left"
    helm = (state / "helm.log").read_text().splitlines()
    assert [line.split()[2] for line in helm] == ["upgrade", "test", "uninstall"], helm
    for key, value in helm_values().items():
        assert f"--set {key}={value}" in helm[0]
    port_forward = int((state / "port-forward.pid").read_text())
    if Path(f"/proc/{port_forward}").exists():
        os.kill(port_forward, signal.SIGTERM)  # the fake's own sleep; do not leave it behind
        pytest.fail("the port-forward outlived the script")


def test_script_passes_shellcheck() -> None:
    binary = shutil.which("shellcheck")
    if binary is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(
        [binary, "-x", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout
