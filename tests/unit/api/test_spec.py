"""The spec model's defaults and bounds, as a manifest reaches them through the loader; every refusal
names the field and its rule as the API server does."""

import pytest

from mnist_api import load_manifests
from mnist_api.metrics import HISTOGRAM_WEIGHT_BUCKETS_0_3

from .manifests import HEADER, load_spec, problems


def test_an_empty_spec_gets_every_default() -> None:
    spec = load_manifests(HEADER)[0].spec
    assert (spec.dataset.name, spec.model, spec.optimizer) == ("mnist", "convnet", "adam")
    assert (spec.epochs, spec.batch_size, spec.learning_rate, spec.validation_split) == (5, 128, 0.004, 0.1)
    assert spec.metrics.histogram_buckets == list(HISTOGRAM_WEIGHT_BUCKETS_0_3)
    assert spec.metrics.ignore_exceptions is True
    assert spec.output.formats == ["keras", "savedmodel"]
    assert spec.early_stopping is None
    assert spec.run_policy.backoff_limit == 3
    assert (spec.learning_rate_schedule.name, spec.learning_rate_schedule.warmup_epochs) == ("cosine", 0.3)


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
        ("  output: {formats: [pickle]}\n", 'spec.output.formats[0]: Unsupported value: "pickle"'),
        (
            "  baseModel: {claimName: m, path: ../up.keras}\n",
            'spec.baseModel.path: Invalid value: "../up.keras"',
        ),
        ("  output: {checkpointInterval: 0}\n", "spec.output.checkpointInterval: Invalid value: 0"),
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


@pytest.mark.parametrize(
    ("spec_yaml", "path", "message"),
    [
        ("  task: evaluate\n", "spec", "task evaluate and task predict need baseModel"),
        (
            "  epochs: 2\n  learningRateSchedule: {warmupEpochs: 2}\n",
            "spec",
            "learningRateSchedule.warmupEpochs must be fewer than epochs",
        ),
        ("  learningRateSchedule: {warmupEpochs: 5}\n", "spec", "learningRateSchedule.warmupEpochs must be"),
        ("  task: predict\n  baseModel: {training: digits}\n", "spec", "task predict needs spec.predict"),
        ("  baseModel: {claimName: models}\n", "spec.baseModel", "baseModel.claimName needs path"),
        (
            "  baseModel: {training: a, claimName: models, path: m.keras}\n",
            "spec.baseModel",
            "baseModel needs exactly one of training and claimName",
        ),
        (
            "  predict: {claimName: c}\n  baseModel: {training: a}\n",
            "spec",
            "spec.predict needs task predict",
        ),
        (
            "  dataset: {claimName: images, url: 'http://h/mnist.tgz'}\n",
            "spec.dataset",
            "dataset.url and dataset.claimName exclude each other",
        ),
        ("  dataset: {path: mnist}\n", "spec.dataset", "dataset.path needs dataset.claimName"),
    ],
)
def test_cross_field_rules_name_the_object_and_the_rule(spec_yaml: str, path: str, message: str) -> None:
    found = problems(spec_yaml)
    assert any(p.startswith(f"{path}: Invalid value: ") and message in p for p in found), found


def test_task_inputs_and_image_folders_load() -> None:
    fine_tune = load_spec("  baseModel: {training: digits}\n  epochs: 2\n").spec
    assert (fine_tune.task, fine_tune.base_model and fine_tune.base_model.training) == ("train", "digits")
    predict = load_spec(
        "  task: predict\n  baseModel: {claimName: models, path: a/model.keras}\n"
        "  predict: {url: 'https://example.com/digits.zip'}\n"
    ).spec
    assert predict.predict is not None and predict.predict.url == "https://example.com/digits.zip"
    assert load_spec("  dataset: {url: 'https://example.com/mnist.tar.gz'}\n").spec.dataset.image_folder
    assert load_spec("  dataset: {claimName: images, path: mnist}\n").spec.dataset.image_folder
    assert not load_spec("  dataset: {url: 'https://example.com/mnist.npz'}\n").spec.dataset.image_folder


def test_a_size_gate_without_model_keras_is_refused() -> None:
    # Issue 12 item 7: the gate measures model.keras, so without that export it used to be skipped.
    refused = problems("  releaseCriteria: {maxModelSizeMb: 5}\n  output: {formats: [savedmodel]}\n")
    assert any("maxModelSizeMb measures model.keras: add keras to output.formats" in p for p in refused)
    kept = load_spec("  releaseCriteria: {maxModelSizeMb: 5}\n  output: {formats: [keras]}\n")
    assert kept.spec.release_criteria.max_model_size_mb == 5
