"""Local mode accepts a manifest exactly when the real API server does, and trains what it would store.

Each case goes through ``kubectl apply --dry-run=server`` (kubectl's own YAML→JSON step, the server's
pruning, defaulting and validation) and through the loader; accept/refuse and the stored spec must agree.
The fixed cases are the ones issue 12 reported; hypothesis then generates thousands more, sent in batches
of one multi-document file per ``kubectl apply`` (one kubectl start per case would take minutes). Every
object the server stores must also validate in the operator's own model, or the operator could never
reconcile a training that ``kubectl apply`` accepted.
"""

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mnist_api import ManifestError, load_manifests
from mnist_operator.state import validate_training

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
HEADER = (
    "apiVersion: training.mnist-operator.io/v1alpha1\nkind: MnistTraining\n"
    "metadata: {name: t, namespace: default}\n"
)

CASES = [
    "spec:\n  learningRate: 1e-3\n",
    "spec:\n  learningRate: 1E+0\n",
    "spec:\n  model: null\n",
    "spec:\n  tolerations: null\n",
    "spec: null\n",
    "spec:\n  batchSize: 1.0\n",
    "spec:\n  runPolicy: {backoffLimit: 10.0}\n",
    "spec:\n  metrics: {job: 1e+308}\n",
    "spec:\n  epochs: 0x10\n",
    "spec:\n  epochs: 1_0\n",
    "spec:\n  epochs: 010\n",
    "spec:\n  epochs: 1.5\n",
    'spec:\n  epochs: "5"\n',
    "spec:\n  runPolicy: {suspend: yes}\n",
    "spec:\n  runPolicy: {suspend: on}\n",
    "spec:\n  runPolicy: {suspend: True}\n",
    "spec:\n  learningRate: .inf\n",
    "spec:\n  epochs: 0\n",
    "spec:\n  bogus: 1\n",
    "spec:\n  bogus: null\n",
    "spec:\n  nodeSelector: {disk: null}\n",
    "spec:\n  tolerations: [{key: null, operator: Exists}]\n",
    "spec:\n  releaseCriteria: {maxModelSizeMb: .inf}\n",
    "spec:\n  metrics: {job: .nan}\n",
    "spec:\n  metrics: {job: 1e400}\n",
    "spec:\n  learningRate: 1e400\n",
    "spec:\n  releaseCriteria: {maxModelSizeMb: 5}\n  output: {formats: [savedmodel]}\n",
    "spec:\n  releaseCriteria: {maxModelSizeMb: 5}\n  output: {formats: [keras]}\n",
    # Issue 14: the task's inputs, each exclusive pair and the paths that need their claim.
    "spec:\n  task: evaluate\n",
    "spec:\n  task: evaluate\n  baseModel: {training: digits}\n",
    "spec:\n  task: train\n  baseModel: {claimName: models, path: team/model.keras}\n",
    "spec:\n  baseModel: {claimName: models}\n",
    "spec:\n  baseModel: {training: a, claimName: models, path: m.keras}\n",
    "spec:\n  baseModel: {}\n",
    "spec:\n  task: predict\n  baseModel: {training: a}\n",
    "spec:\n  task: predict\n  baseModel: {training: a}\n  predict: {url: 'http://h/d.tgz'}\n",
    "spec:\n  task: predict\n  baseModel: {training: a}\n  predict: {claimName: digits, path: in}\n",
    "spec:\n  task: predict\n  baseModel: {training: a}\n  predict: {url: 'http://h/d.tgz', claimName: c}\n",
    "spec:\n  task: predict\n  baseModel: {training: a}\n  predict: {url: 'http://h/d.tgz', path: in}\n",
    "spec:\n  baseModel: {training: a}\n  predict: {url: 'http://h/d.tgz'}\n",
    "spec:\n  baseModel: {claimName: models, path: ../escape.keras}\n",
    "spec:\n  dataset: {claimName: images, path: mnist}\n",
    "spec:\n  dataset: {path: mnist}\n",
    "spec:\n  dataset: {claimName: images, url: 'http://h/mnist.tgz'}\n",
    "spec:\n  task: fit\n",
    "spec:\n  output: {formats: [onnx, tflite, keras, savedmodel], checkpointInterval: 5, modelCard: false}\n",
    "spec:\n  output: {checkpointInterval: 0}\n",
    "spec:\n  model: capsnet\n",
    # Issue 17: the learning-rate schedule; its warm-up must leave the cosine steps to fall.
    "spec:\n  learningRateSchedule: {}\n",
    "spec:\n  learningRateSchedule: null\n",
    "spec:\n  epochs: 2\n  learningRateSchedule: {warmupEpochs: 2}\n",
    "spec:\n  epochs: 2\n  learningRateSchedule: {warmupEpochs: 1.5}\n",
    "spec:\n  epochs: 1\n  learningRateSchedule: {warmupEpochs: 1, name: constant}\n",
    "spec:\n  learningRateSchedule: {warmupEpochs: 5}\n",
    "spec:\n  learningRateSchedule: {name: linear}\n",
]


@pytest.fixture(scope="module")
def crd_installed(control_plane: Any) -> Any:
    control_plane.kubectl("apply", "-f", str(REPO / "manifests" / "crd.yaml"), check=True)
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/mnisttrainings.training.mnist-operator.io", check=True
    )
    return control_plane


@pytest.mark.parametrize("body", CASES)
def test_loader_and_server_agree(crd_installed: Any, body: str, tmp_path: Path) -> None:
    text = HEADER + body
    manifest = tmp_path / "case.yaml"
    manifest.write_text(text)
    server = crd_installed.kubectl("apply", "--dry-run=server", "-o", "json", "-f", str(manifest))
    try:
        local = load_manifests(text)[0]
    except ManifestError as error:
        assert server.returncode != 0, f"server accepted what local refused ({error}): {server.stdout[:500]}"
        return
    assert server.returncode == 0, f"local accepted what the server refused: {server.stderr}"
    _assert_same_training(local_spec=_spec_of(local), stored=json.loads(server.stdout))


def _spec_of(training: Any) -> Any:
    return training.model_dump(mode="json", by_alias=True, exclude_none=True)["spec"]


def _assert_same_training(*, local_spec: Any, stored: dict[str, Any]) -> None:
    # The model renders unset collections as empty ones; the server simply omits them.
    assert _without_empty(local_spec) == _without_empty(stored["spec"])
    assert _spec_of(validate_training(stored)) == local_spec


def _without_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_empty(v) for k, v in value.items() if v not in ({}, [])}
    return value


# Scalars written every way YAML allows: numbers (exponent, hex, octal, underscores, integral floats,
# specials), booleans (1.1 and 1.2 spellings), nulls, quoted strings and words.
SCALARS = st.one_of(
    st.integers(-5, 300).map(str),
    # .inf and .nan are fixed CASES instead: kubectl refuses a whole file that holds one, so they cannot share
    # a batch with other documents.
    st.sampled_from(["1e-3", "1E+1", "1.0", "10.0", "0x10", "010", "1_0", "1e+308", "1e400", "-0.0"]),
    st.sampled_from(["0.5", "2.5", "0", "-1", "yes", "no", "on", "off", "true", "False", "null", "~", ""]),
    st.sampled_from(
        [
            '"5"',
            "'1e-3'",
            "mnist",
            "fashion-mnist",
            "adam",
            "sgd",
            "mlp",
            "convnet",
            "Never",
            "keras",
            "savedmodel",
            "onnx",
            "capsnet",
            "evaluate",
            "predict",
        ]
    ),
)
FIELDS = st.sampled_from(
    [
        "epochs", "batchSize", "learningRate", "optimizer", "validationSplit", "seed", "model", "image",
        "tolerations", "nodeSelector", "bogus", "dataset: {name: %s}", "runPolicy: {backoffLimit: %s}",
        "runPolicy: {suspend: %s}", "runPolicy: {ttlSecondsAfterFinished: %s}", "metrics: {job: %s}",
        "releaseCriteria: {minTestAccuracy: %s}", "releaseCriteria: {maxModelSizeMb: %s}",
        "output: {formats: [%s]}", "output: {formats: [savedmodel, %s]}", "task", "baseModel: {training: %s}",
        "output: {checkpointInterval: %s}", "dataset: {path: %s}",
    ]
)  # fmt: skip


@st.composite
def spec_texts(draw: st.DrawFn) -> str:
    lines = []
    for field in draw(st.lists(FIELDS, min_size=0, max_size=4, unique=True)):
        value = draw(SCALARS)
        lines.append(f"  {field % value}\n" if "%s" in field else f"  {field}: {value}\n")
    return "spec:\n" + "".join(lines) if lines else "spec: {}\n"


BATCH = 100
BATCHES = 20


@settings(
    max_examples=BATCHES,
    deadline=None,
    # No shrinking: a failure names the one document that disagrees, and shrinking batches takes minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(bodies=st.lists(spec_texts(), min_size=BATCH, max_size=BATCH))
def test_generated_manifests_agree(crd_installed: Any, bodies: list[str], tmp_path: Path) -> None:
    texts = [HEADER.replace("name: t,", f"name: t{index},") + body for index, body in enumerate(bodies)]
    manifest = tmp_path / "batch.yaml"
    manifest.write_text("---\n".join(texts))
    # kubectl apply sends every document of the file; with -o name it names each accepted one as it goes
    # (with -o json it prints nothing once one fails), so the accepted ones are applied again for the
    # objects the server would store.
    verdicts = crd_installed.kubectl("apply", "--dry-run=server", "-o", "name", "-f", str(manifest))
    accepted = {line.rpartition("/")[2] for line in verdicts.stdout.split()}
    stored = _stored_objects(crd_installed, [t for i, t in enumerate(texts) if f"t{i}" in accepted], tmp_path)
    assert set(stored) == accepted
    for index, (text, body) in enumerate(zip(texts, bodies, strict=True)):
        name = f"t{index}"
        try:
            local = load_manifests(text)[0]
        except ManifestError as error:
            assert name not in stored, f"server accepted what local refused ({error}):\n{body}"
            continue
        assert name in stored, f"local accepted what the server refused:\n{body}\n{verdicts.stderr}"
        _assert_same_training(local_spec=_spec_of(local), stored=stored[name])


def _stored_objects(plane: Any, texts: list[str], tmp_path: Path) -> dict[str, dict[str, Any]]:
    if not texts:
        return {}
    manifest = tmp_path / "accepted.yaml"
    manifest.write_text("---\n".join(texts))
    printed = json.loads(
        plane.kubectl("apply", "--dry-run=server", "-o", "json", "-f", str(manifest), check=True).stdout
    )
    items = printed["items"] if printed["kind"] == "List" else [printed]
    return {item["metadata"]["name"]: item for item in items}


def test_spec_edits_the_job_cannot_honour_are_refused(crd_installed: Any, tmp_path: Path) -> None:
    # Issue 12 item 3: an edit of spec.epochs used to be stored while the Job kept training the old value.
    manifest = tmp_path / "edit.yaml"
    manifest.write_text(HEADER.replace("name: t,", "name: edited,") + "spec: {epochs: 5}\n")
    crd_installed.kubectl("apply", "-f", str(manifest), check=True)
    target = ("patch", "mnisttraining", "edited", "-n", "default", "--type=merge", "-p")
    refused = crd_installed.kubectl(*target, '{"spec": {"epochs": 10}}')
    assert refused.returncode != 0
    assert "spec.epochs is immutable: the training's Job cannot change it" in refused.stderr, refused.stderr
    accepted = crd_installed.kubectl(*target, '{"spec": {"runPolicy": {"suspend": true}}}')
    assert accepted.returncode == 0, accepted.stderr
    ttl = crd_installed.kubectl(*target, '{"spec": {"runPolicy": {"ttlSecondsAfterFinished": 60}}}')
    assert ttl.returncode == 0, ttl.stderr
    deadline = crd_installed.kubectl(*target, '{"spec": {"runPolicy": {"activeDeadlineSeconds": 60}}}')
    assert "spec.runPolicy.activeDeadlineSeconds is immutable" in deadline.stderr, deadline.stderr
