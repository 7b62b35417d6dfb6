"""The spec model's defaults and bounds, and the loader's user-facing errors."""

import re
from pathlib import Path

import pytest

from mnist_api import ManifestError, MnistTraining, load_manifest_file, load_manifests
from mnist_api.metrics import HISTOGRAM_WEIGHT_BUCKETS_0_3

REPO = Path(__file__).resolve().parents[3]
HEADER = "apiVersion: training.mnist-operator.io/v1alpha1\nkind: MnistTraining\nmetadata: {name: t}\n"


def load_spec(spec_yaml: str) -> MnistTraining:
    return load_manifests(HEADER + "spec:\n" + spec_yaml)[0]


def problems(spec_yaml: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_spec(spec_yaml)
    return caught.value.problems


def test_the_sample_manifest_loads_with_its_values() -> None:
    (training,) = load_manifest_file(REPO / "manifests/samples/mnist-training.yaml")
    assert training.metadata.name == "mnist-convnet"
    assert training.spec.epochs == 5
    assert training.spec.release_criteria.min_test_accuracy == 0.97


def test_an_empty_spec_gets_every_default() -> None:
    spec = load_manifests(HEADER)[0].spec
    assert (spec.dataset.name, spec.model, spec.optimizer) == ("mnist", "convnet", "adam")
    assert (spec.epochs, spec.batch_size, spec.learning_rate, spec.validation_split) == (5, 64, 0.001, 0.1)
    assert spec.metrics.histogram_buckets == list(HISTOGRAM_WEIGHT_BUCKETS_0_3)
    assert spec.metrics.ignore_exceptions is True
    assert spec.output.formats == ["keras", "savedmodel"]
    assert spec.early_stopping is None
    assert spec.run_policy.backoff_limit == 3


@pytest.mark.parametrize(
    ("spec_yaml", "expected"),
    [
        (
            "  epochs: 0\n",
            "spec.epochs: Invalid value: 0: spec.epochs in body should be greater than or equal to 1",
        ),
        (
            "  epochs: 1001\n",
            "spec.epochs: Invalid value: 1001: spec.epochs in body should be less than or equal to 1000",
        ),
        ('  epochs: "5"\n', 'spec.epochs: Invalid value: "5": spec.epochs in body must be of type integer'),
        (
            "  learningRate: 0\n",
            "spec.learningRate: Invalid value: 0: spec.learningRate in body should be greater than 0",
        ),
        (
            "  validationSplit: 1\n",
            "spec.validationSplit: Invalid value: 1: spec.validationSplit in body should be less than 1",
        ),
        (
            "  optimizer: adagrad\n",
            'spec.optimizer: Unsupported value: "adagrad": supported values: "adam", "adamw", "rmsprop", "sgd"',
        ),
        ("  model: resnet\n", 'spec.model: Unsupported value: "resnet": supported values: "convnet", "mlp"'),
        ("  epoch: 3\n", 'spec.epoch: unknown field "spec.epoch"'),
        (
            "  dataset: {url: ftp://mirror/x}\n",
            'spec.dataset.url: Invalid value: "ftp://mirror/x": spec.dataset.url in body should match',
        ),
        ("  dataset: {sha256: {mnist.npz: abc}}\n", 'spec.dataset.sha256.mnist.npz: Invalid value: "abc"'),
        (
            "  resources: {gpus: -1}\n",
            "spec.resources.gpus: Invalid value: -1: spec.resources.gpus in body should be greater than or equal to 0",
        ),
        ("  resources: {memory: lots}\n", 'spec.resources.memory: Invalid value: "lots"'),
        (
            "  metrics: {histogramBuckets: [0.1, 0.1]}\n",
            "spec.metrics.histogramBuckets: Invalid value: [0.1, 0.1]: histogramBuckets must be strictly increasing",
        ),
        ("  metrics: {prefix: 9bad}\n", 'spec.metrics.prefix: Invalid value: "9bad"'),
        (
            "  output: {formats: [keras, keras]}\n",
            'spec.output.formats: Invalid value: ["keras", "keras"]: formats must not repeat',
        ),
        ("  output: {formats: [onnx]}\n", 'spec.output.formats[0]: Unsupported value: "onnx"'),
        (
            "  releaseCriteria: {minTestAccuracy: 1.5}\n",
            "spec.releaseCriteria.minTestAccuracy: Invalid value: 1.5",
        ),
        ("  runPolicy: {backoffLimit: -1}\n", "spec.runPolicy.backoffLimit: Invalid value: -1"),
        ("  tolerations: [{operator: Maybe}]\n", 'spec.tolerations[0].operator: Unsupported value: "Maybe"'),
        ("  metrics: {authSecretRef: {}}\n", "spec.metrics.authSecretRef.name: Required value"),
    ],
)
def test_each_bad_field_is_named_with_its_rule(spec_yaml: str, expected: str) -> None:
    found = problems(spec_yaml)
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_is_reported_at_once_under_a_kubectl_style_header() -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifests(HEADER.replace("name: t", "name: Bad_Name") + "spec: {epochs: 0, batchSize: 0}\n")
    message = str(caught.value)
    assert message.startswith('<manifest>: The MnistTraining "Bad_Name" is invalid: \n* metadata.name')
    assert len(caught.value.problems) == 3
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("spec: [", "not valid YAML: line 1"),
        ("", "holds no MnistTraining"),
        ("- a\n- b\n", "expected a YAML mapping"),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
            "found apiVersion: apps/v1 and kind: Deployment",
        ),
    ],
)
def test_files_that_are_not_trainings_say_why(text: str, expected: str) -> None:
    with pytest.raises(ManifestError, match=expected):
        load_manifests(text, source="f.yaml")


def test_a_missing_file_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest_file(tmp_path / "absent.yaml")


def test_several_documents_load_in_order() -> None:
    text = HEADER + "---\n" + HEADER.replace("name: t", "name: u")
    assert [t.metadata.name for t in load_manifests(text)] == ["t", "u"]


@pytest.mark.parametrize(
    ("spec_yaml", "field", "expected"),
    [
        # Issue 12 item 1: kubectl (sigs.k8s.io/yaml, go-yaml v2) reads these as numbers; PyYAML did not.
        ("  learningRate: 1e-3\n", "learning_rate", 0.001),
        ("  learningRate: 5E-4\n", "learning_rate", 0.0005),
        ("  batchSize: 1.0\n", "batch_size", 1),
        ("  runPolicy: {backoffLimit: 10.0}\n", "run_policy.backoff_limit", 10),
        ("  epochs: 0x10\n", "epochs", 16),
        ("  epochs: 1_0\n", "epochs", 10),
        ("  epochs: 010\n", "epochs", 8),
        # A null for a defaulted field is pruned, then defaulted, as the API server does.
        ("  model: null\n", "model", "convnet"),
        ("  tolerations: ~\n", "tolerations", []),
    ],
)
def test_values_are_read_as_kubectl_reads_them(spec_yaml: str, field: str, expected: object) -> None:
    value: object = load_spec(spec_yaml).spec
    for part in field.split("."):
        value = getattr(value, part)
    assert value == expected


def test_a_null_spec_is_defaulted() -> None:
    assert load_manifests(HEADER + "spec: null\n")[0].spec.epochs >= 1


def test_a_float_where_a_string_belongs_is_refused() -> None:
    assert any(
        p.startswith("spec.metrics.job: Invalid value: 1e+308")
        for p in problems("  metrics: {job: 1e+308}\n")
    )


def test_quoted_numbers_stay_strings() -> None:
    assert any("must be of type integer" in p for p in problems('  epochs: "5"\n'))


def test_a_size_gate_without_model_keras_is_refused() -> None:
    # Issue 12 item 7: the gate measures model.keras, so without that export it used to be skipped.
    refused = problems("  releaseCriteria: {maxModelSizeMb: 5}\n  output: {formats: [savedmodel]}\n")
    assert any("maxModelSizeMb measures model.keras: add keras to output.formats" in p for p in refused)
    kept = load_spec("  releaseCriteria: {maxModelSizeMb: 5}\n  output: {formats: [keras]}\n")
    assert kept.spec.release_criteria.max_model_size_mb == 5


@pytest.mark.parametrize(("scalar", "spelt"), [(".inf", "+Inf"), ("-.inf", "-Inf"), (".nan", "NaN")])
def test_infinities_are_refused_as_kubectl_refuses_them(scalar: str, spelt: str) -> None:
    with pytest.raises(ManifestError, match=f"json: unsupported value: {re.escape(spelt)}"):
        load_manifests(HEADER + f"spec:\n  releaseCriteria: {{maxModelSizeMb: {scalar}}}\n")


def test_a_float_beyond_float64_stays_a_string() -> None:
    assert any(
        "spec.learningRate" in p and "must be of type number" in p
        for p in problems("  learningRate: 1e400\n")
    )
