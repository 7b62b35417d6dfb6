import pytest

from mnist_operator.config import BasicAuth, Config, ConfigError


def test_defaults_without_any_variable() -> None:
    config = Config.from_env({})
    assert config.namespaces == () and config.pushgateway_url is None and config.poll_interval_seconds == 5.0
    assert config.status_coalesce_seconds == 0.5
    assert config.leader_election_namespace is None  # no election outside a cluster


def test_every_variable_is_read() -> None:
    config = Config.from_env(
        {
            "MNIST_OPERATOR_NAMESPACES": "ml, research ,",
            "MNIST_OPERATOR_TRAINER_IMAGE": "r/t:1",
            "MNIST_OPERATOR_IMAGE_PULL_POLICY": "Always",
            "MNIST_OPERATOR_TRAINER_COMMAND": '["/venv/bin/python", "-m", "mnist_trainer"]',
            "MNIST_OPERATOR_TRAINER_SERVICE_ACCOUNT": "trainer",
            "MNIST_OPERATOR_PUSHGATEWAY_URL": "http://pgw:9091/",
            "MNIST_OPERATOR_POLL_INTERVAL_SECONDS": "2.5",
            "MNIST_OPERATOR_STATUS_COALESCE_SECONDS": "0",
            "MNIST_OPERATOR_METRICS_PORT": "0",
            "MNIST_OPERATOR_WATCH_TIMEOUT_SECONDS": "60",
            "MNIST_OPERATOR_RUN_AS_USER": "2000",
            "MNIST_OPERATOR_PUSHGATEWAY_USERNAME": "metrics",
            "MNIST_OPERATOR_PUSHGATEWAY_PASSWORD": " spaces are part of it ",
            "MNIST_OPERATOR_SWEEP_INTERVAL_SECONDS": "30",
            "MNIST_OPERATOR_LEADER_ELECTION_NAMESPACE": "ops",
            "MNIST_OPERATOR_LEADER_ELECTION_LEASE": "trainer-operator",
            "MNIST_OPERATOR_LEASE_DURATION_SECONDS": "20",
        }
    )
    assert config.namespaces == ("ml", "research")
    assert config.trainer_command == ("/venv/bin/python", "-m", "mnist_trainer")
    assert config.pushgateway_url == "http://pgw:9091"
    assert (config.poll_interval_seconds, config.metrics_port, config.watch_timeout_seconds) == (2.5, 0, 60)
    assert config.status_coalesce_seconds == 0
    assert config.pushgateway_auth == BasicAuth("metrics", " spaces are part of it ")
    assert config.sweep_interval_seconds == 30
    assert (config.trainer_image, config.image_pull_policy, config.run_as_user) == ("r/t:1", "Always", 2000)
    assert (config.leader_election_namespace, config.leader_election_lease) == ("ops", "trainer-operator")
    assert config.lease_duration_seconds == 20


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("POLL_INTERVAL_SECONDS", "soon", "is not a number"),
        ("POLL_INTERVAL_SECONDS", "0", "must be at least 0.1"),
        ("STATUS_COALESCE_SECONDS", "-1", "must be at least 0"),
        ("TRAINER_COMMAND", "python -m mnist_trainer", "must be a JSON list of strings"),
        ("IMAGE_PULL_POLICY", "Sometimes", "must be Always, IfNotPresent or Never"),
        ("PUSHGATEWAY_URL", "pgw:9091", "must start with http:// or https://"),
        ("LEASE_DURATION_SECONDS", "1", "must be at least 3"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"MNIST_OPERATOR_{variable}.*{message}"):
        Config.from_env({f"MNIST_OPERATOR_{variable}": value})


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"PUSHGATEWAY_USERNAME": "metrics"}, "set both or neither"),
        ({"PUSHGATEWAY_PASSWORD": "secret"}, "set both or neither"),
        (
            {"PUSHGATEWAY_USERNAME": "metrics", "PUSHGATEWAY_PASSWORD": "secret"},
            "the credentials are sent to that Pushgateway only",
        ),
    ],
)
def test_pushgateway_credentials_come_whole_and_with_their_pushgateway(
    variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env({f"MNIST_OPERATOR_{k}": v for k, v in variables.items()})
