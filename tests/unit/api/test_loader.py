"""The loader's user-facing errors, and manifests read as kubectl reads them (YAML to JSON, then the
spec model). The spec's own defaults and bounds: test_spec.py."""

import re
from pathlib import Path

import pytest

from mnist_api import ManifestError, load_manifest_file, load_manifests

from .manifests import HEADER, load_spec, problems

REPO = Path(__file__).resolve().parents[3]


def test_the_sample_manifest_loads_with_its_values() -> None:
    (training,) = load_manifest_file(REPO / "manifests/samples/mnist-training.yaml")
    assert training.metadata.name == "mnist-convnet"
    assert training.spec.epochs == 5
    assert training.spec.release_criteria.min_test_accuracy == 0.97


def test_the_task_samples_load_in_the_order_they_run() -> None:
    samples = Path(__file__).resolve().parents[3] / "manifests" / "samples"
    chain = load_manifest_file(samples / "mnist-evaluate.yaml")
    assert [(t.metadata.name, t.spec.task) for t in chain] == [
        ("mnist-convnet", "train"),
        ("mnist-convnet-test", "evaluate"),
        ("fashion-from-mnist", "train"),
    ]
    assert chain[0].spec.output.formats == ["keras", "savedmodel", "onnx", "tflite"]
    assert all(t.spec.base_model and t.spec.base_model.training == "mnist-convnet" for t in chain[1:])
    (predict,) = load_manifest_file(samples / "mnist-predict.yaml")
    assert predict.spec.predict is not None and predict.spec.predict.claim_name == "digits"


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


@pytest.mark.parametrize(("scalar", "spelt"), [(".inf", "+Inf"), ("-.inf", "-Inf"), (".nan", "NaN")])
def test_infinities_are_refused_as_kubectl_refuses_them(scalar: str, spelt: str) -> None:
    with pytest.raises(ManifestError, match=f"json: unsupported value: {re.escape(spelt)}"):
        load_manifests(HEADER + f"spec:\n  releaseCriteria: {{maxModelSizeMb: {scalar}}}\n")


def test_a_float_beyond_float64_stays_a_string() -> None:
    assert any(
        "spec.learningRate" in p and "must be of type number" in p
        for p in problems("  learningRate: 1e400\n")
    )
