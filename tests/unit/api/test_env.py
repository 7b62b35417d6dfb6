"""The environment contract: pod env from spec + metadata, parsed back by the trainer."""

from typing import Any

import pytest

from mnist_api import EnvContractError, TrainerConfig, load_manifests, pod_env, trainer_config
from mnist_api.env import POD_NAME_ENV, PUSHGATEWAY_PASSWORD_ENV, PUSHGATEWAY_USERNAME_ENV

MANIFEST = """
apiVersion: training.mnist-operator.io/v1alpha1
kind: MnistTraining
metadata: {name: digits, namespace: team-a, uid: 0b7c-uid}
spec:
  dataset: {name: fashion-mnist, url: "https://mirror.example/fashion/", sha256: {t10k-labels-idx1-ubyte.gz: %s}}
  model: mlp
  epochs: 7
  learningRate: 0.01
  seed: 3
  earlyStopping: {patience: 2, monitor: val_accuracy}
  output: {formats: [keras]}
  metrics: {job: digits, prefix: acme, histogramBuckets: [-1, 0, 1], ignoreExceptions: false,
            authSecretRef: {name: pgw-auth}}
  releaseCriteria: {minTestAccuracy: 0.9, maxModelSizeMb: 5}
""" % ("a" * 64)


def resolve(env: list[dict[str, Any]], secrets: dict[tuple[str, str], str], pod_name: str) -> dict[str, str]:
    """What the kubelet does with an env list: values as they are, references looked up."""
    resolved = {}
    for var in env:
        if "value" in var:
            resolved[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            resolved[var["name"]] = secrets[(ref["name"], ref["key"])]
        elif var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name":
            resolved[var["name"]] = pod_name
    return resolved


def test_pod_env_parses_back_to_the_same_config() -> None:
    (training,) = load_manifests(MANIFEST)
    expected = trainer_config(training, default_pushgateway_url="http://pgw.monitoring:9091")
    env = pod_env(training, default_pushgateway_url="http://pgw.monitoring:9091")
    resolved = resolve(env, {("pgw-auth", "username"): "u", ("pgw-auth", "password"): "p"}, "digits-abc12")
    assert TrainerConfig.from_env(resolved) == expected
    assert (resolved[PUSHGATEWAY_USERNAME_ENV], resolved[PUSHGATEWAY_PASSWORD_ENV]) == ("u", "p")
    assert resolved[POD_NAME_ENV] == "digits-abc12"
    assert expected.early_stopping is not None and expected.early_stopping.patience == 2
    assert (expected.uid, expected.dataset, expected.epochs, expected.metrics_prefix) == (
        "0b7c-uid",
        "fashion-mnist",
        7,
        "acme",
    )


def test_secrets_never_appear_as_plain_values() -> None:
    (training,) = load_manifests(MANIFEST)
    env = pod_env(training, default_pushgateway_url=None)
    by_name = {var["name"]: var for var in env}
    assert "value" not in by_name[PUSHGATEWAY_PASSWORD_ENV]


def test_the_spec_pushgateway_wins_over_the_operator_default() -> None:
    (training,) = load_manifests(
        MANIFEST.replace("job: digits,", "job: digits, pushgatewayUrl: 'http://mine:9091',")
    )
    assert (
        trainer_config(training, default_pushgateway_url="http://default:9091").pushgateway_url
        == "http://mine:9091"
    )


def test_a_resource_without_uid_cannot_be_configured() -> None:
    (training,) = load_manifests(MANIFEST.replace("uid: 0b7c-uid", "uid: null"))
    with pytest.raises(EnvContractError, match="no uid yet"):
        trainer_config(training, default_pushgateway_url=None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MNIST_EPOCHS": "many"}, "MNIST_EPOCHS is not valid JSON"),
        ({"MNIST_EPOCHS": "0"}, "MNIST_EPOCHS: Input should be greater than or equal to 1"),
        ({"MNIST_NAME": None}, "MNIST_NAME: Field required"),
    ],
)
def test_a_bad_environment_names_the_variable(change: dict[str, str | None], message: str) -> None:
    (training,) = load_manifests(MANIFEST)
    env = trainer_config(training, default_pushgateway_url=None).to_env()
    for key, value in change.items():
        if value is None:
            del env[key]
        else:
            env[key] = value
    with pytest.raises(EnvContractError, match=message):
        TrainerConfig.from_env(env)
