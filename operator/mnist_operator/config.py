"""The operator's settings: one documented ``Config`` read from ``MNIST_OPERATOR_*`` variables.

| variable | default | meaning |
|---|---|---|
| ``MNIST_OPERATOR_NAMESPACES`` | (all) | comma-separated namespaces to watch; empty watches the whole cluster |
| ``MNIST_OPERATOR_TRAINER_IMAGE`` | ``ghcr.io/mnist-operator/trainer:0.1.0`` | image when ``spec.image`` is unset |
| ``MNIST_OPERATOR_IMAGE_PULL_POLICY`` | ``IfNotPresent`` | the trainer container's pull policy |
| ``MNIST_OPERATOR_TRAINER_COMMAND`` | ``["python", "-m", "mnist_trainer"]`` | JSON list; the trainer's command |
| ``MNIST_OPERATOR_TRAINER_SERVICE_ACCOUNT`` | (namespace default) | ServiceAccount of trainer pods |
| ``MNIST_OPERATOR_PUSHGATEWAY_URL`` | (none) | Pushgateway for runs whose spec names none |
| ``MNIST_OPERATOR_PUSHGATEWAY_USERNAME`` | (none) | basic auth for that Pushgateway (sent to it only) |
| ``MNIST_OPERATOR_PUSHGATEWAY_PASSWORD`` | (none) | with the username; the chart takes both from a Secret |
| ``MNIST_OPERATOR_POLL_INTERVAL_SECONDS`` | ``5`` | seconds between Pushgateway polls (one request each) |
| ``MNIST_OPERATOR_SWEEP_INTERVAL_SECONDS`` | ``300`` | seconds between sweeps of groups whose training is gone |
| ``MNIST_OPERATOR_STATUS_COALESCE_SECONDS`` | ``0.5`` | changes within this long make one status write (0: one each) |
| ``MNIST_OPERATOR_METRICS_PORT`` | ``9090`` | port of the operator's own /metrics (0 disables) |
| ``MNIST_OPERATOR_WATCH_TIMEOUT_SECONDS`` | ``300`` | server-side watch timeout; the client waits 30 s more |
| ``MNIST_OPERATOR_RUN_AS_USER`` | ``1000`` | uid (and gid, fsGroup) of trainer pods |
| ``MNIST_OPERATOR_LEADER_ELECTION_NAMESPACE`` | (none: no election) | namespace of the Lease replicas share |
| ``MNIST_OPERATOR_LEADER_ELECTION_LEASE`` | ``mnist-operator`` | the Lease's name |
| ``MNIST_OPERATOR_LEASE_DURATION_SECONDS`` | ``15`` | a leader silent this long is replaced |
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

PREFIX: Final = "MNIST_OPERATOR_"
DEFAULT_TRAINER_IMAGE: Final = "ghcr.io/mnist-operator/trainer:0.1.0"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str = field(repr=False)  # never in a log line


@dataclass(frozen=True)
class Config:
    namespaces: tuple[str, ...] = ()
    trainer_image: str = DEFAULT_TRAINER_IMAGE
    image_pull_policy: str = "IfNotPresent"
    trainer_command: tuple[str, ...] = ("python", "-m", "mnist_trainer")
    trainer_service_account: str | None = None
    pushgateway_url: str | None = None
    pushgateway_auth: BasicAuth | None = None
    poll_interval_seconds: float = 5.0
    sweep_interval_seconds: float = 300.0
    status_coalesce_seconds: float = 0.5
    metrics_port: int = 9090
    watch_timeout_seconds: int = 300
    run_as_user: int = 1000
    leader_election_namespace: str | None = None
    leader_election_lease: str = "mnist-operator"
    lease_duration_seconds: float = 15.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Config":
        def text(name: str) -> str | None:
            value = environ.get(PREFIX + name, "").strip()
            return value or None

        def number(name: str, default: float, *, minimum: float) -> float:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{PREFIX}{name}={raw!r} is not a number") from None
            if value < minimum:
                raise ConfigError(f"{PREFIX}{name}={raw!r} must be at least {minimum:g}")
            return value

        command = cls.trainer_command
        if (raw_command := text("TRAINER_COMMAND")) is not None:
            try:
                parsed = json.loads(raw_command)
            except json.JSONDecodeError:
                parsed = None
            if not (isinstance(parsed, list) and parsed and all(isinstance(p, str) for p in parsed)):
                raise ConfigError(
                    f"{PREFIX}TRAINER_COMMAND must be a JSON list of strings, got {raw_command!r}"
                )
            command = tuple(parsed)
        pull_policy = text("IMAGE_PULL_POLICY") or cls.image_pull_policy
        if pull_policy not in ("Always", "IfNotPresent", "Never"):
            raise ConfigError(
                f"{PREFIX}IMAGE_PULL_POLICY must be Always, IfNotPresent or Never, got {pull_policy!r}"
            )
        pushgateway = text("PUSHGATEWAY_URL")
        if pushgateway is not None and not pushgateway.startswith(("http://", "https://")):
            raise ConfigError(
                f"{PREFIX}PUSHGATEWAY_URL must start with http:// or https://, got {pushgateway!r}"
            )
        username, password = text("PUSHGATEWAY_USERNAME"), environ.get(PREFIX + "PUSHGATEWAY_PASSWORD", "")
        if bool(username) != bool(password):
            raise ConfigError(
                f"{PREFIX}PUSHGATEWAY_USERNAME and {PREFIX}PUSHGATEWAY_PASSWORD go together: set both or neither"
            )
        if username and pushgateway is None:
            raise ConfigError(
                f"{PREFIX}PUSHGATEWAY_USERNAME is set but {PREFIX}PUSHGATEWAY_URL is not: the credentials are "
                "sent to that Pushgateway only"
            )
        namespaces = tuple(n.strip() for n in (text("NAMESPACES") or "").split(",") if n.strip())
        return cls(
            namespaces=namespaces,
            trainer_image=text("TRAINER_IMAGE") or cls.trainer_image,
            image_pull_policy=pull_policy,
            trainer_command=command,
            trainer_service_account=text("TRAINER_SERVICE_ACCOUNT"),
            pushgateway_url=pushgateway.rstrip("/") if pushgateway else None,
            pushgateway_auth=BasicAuth(username, password) if username else None,
            poll_interval_seconds=number("POLL_INTERVAL_SECONDS", cls.poll_interval_seconds, minimum=0.1),
            sweep_interval_seconds=number("SWEEP_INTERVAL_SECONDS", cls.sweep_interval_seconds, minimum=1),
            status_coalesce_seconds=number("STATUS_COALESCE_SECONDS", cls.status_coalesce_seconds, minimum=0),
            metrics_port=int(number("METRICS_PORT", cls.metrics_port, minimum=0)),
            watch_timeout_seconds=int(number("WATCH_TIMEOUT_SECONDS", cls.watch_timeout_seconds, minimum=10)),
            run_as_user=int(number("RUN_AS_USER", cls.run_as_user, minimum=1)),
            leader_election_namespace=text("LEADER_ELECTION_NAMESPACE"),
            leader_election_lease=text("LEADER_ELECTION_LEASE") or cls.leader_election_lease,
            lease_duration_seconds=number("LEASE_DURATION_SECONDS", cls.lease_duration_seconds, minimum=3),
        )
