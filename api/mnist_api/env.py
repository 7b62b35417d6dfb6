"""The environment contract: the only way the operator (or local mode) configures the trainer.

``trainer_config`` reads what the trainer needs out of a resource; ``pod_env`` renders it as a pod's
``env`` list (plain values, plus Secret and downward-API references the kubelet resolves); the trainer
parses its environment back with ``TrainerConfig.from_env``. Variables are ``MNIST_<FIELD>``; lists and
objects are JSON so ``kubectl describe pod`` still shows them readably.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .layout import (
    BASE_MODEL_MOUNT_PATH,
    DATA_MOUNT_PATH,
    DATASET_MOUNT_PATH,
    MODEL_KERAS_FILE,
    OUTPUT_MOUNT_PATH,
    PREDICT_INPUT_MOUNT_PATH,
)
from .manifest import MnistTraining
from .metrics import DEFAULT_JOB, DEFAULT_PREFIX
from .spec import (
    EarlyStoppingSpec,
    LearningRateScheduleSpec,
    MnistTrainingSpec,
    ReleaseCriteriaSpec,
    Task,
)

ENV_PREFIX: Final = "MNIST_"
# Resolved by the kubelet from the auth Secret; never put into plain env values.
PUSHGATEWAY_USERNAME_ENV: Final = "MNIST_PUSHGATEWAY_USERNAME"
PUSHGATEWAY_PASSWORD_ENV: Final = "MNIST_PUSHGATEWAY_PASSWORD"
POD_NAME_ENV: Final = "MNIST_POD_NAME"


class EnvContractError(ValueError):
    """The environment does not describe a valid training (exit code CONFIG_INVALID)."""


class TrainerConfig(BaseModel):
    """Everything the trainer process needs, nothing it does not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str
    name: str
    uid: str
    task: Task = Task.TRAIN
    base_model_path: str | None = None
    """The .keras file to start from (fine-tuning) or to evaluate or predict with."""
    predict_url: str | None = None
    predict_dir: str | None = None
    dataset: str
    dataset_url: str | None = None
    dataset_dir: str | None = None
    """An image-folder dataset already on a volume (training/<class>/, testing/<class>/)."""
    dataset_sha256: dict[str, str] = Field(default_factory=dict)
    data_dir: str
    output_dir: str
    model: str
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    learning_rate_schedule: LearningRateScheduleSpec = Field(default_factory=LearningRateScheduleSpec)
    optimizer: str
    validation_split: float = Field(ge=0, lt=1)
    seed: int | None = None
    early_stopping: EarlyStoppingSpec | None = None
    export_formats: list[str]
    checkpoint_interval: int | None = Field(None, ge=1)
    model_card: bool = True
    pushgateway_url: str | None = None
    metrics_job: str = DEFAULT_JOB
    metrics_prefix: str = DEFAULT_PREFIX
    histogram_buckets: list[float] = Field(default_factory=list)
    ignore_exceptions: bool = True
    release_criteria: ReleaseCriteriaSpec = Field(default_factory=ReleaseCriteriaSpec)
    heartbeat_seconds: float = Field(30.0, gt=0)
    download_attempts: int = Field(5, ge=1, le=100)
    download_backoff_seconds: float = Field(1.0, ge=0)
    workers: int = Field(1, ge=1)
    worker_hosts: list[str] = Field(default_factory=list)
    """Every worker's ``host:port``, by index (``distribution.py``); empty for a single worker."""
    cpu_replicas: int = Field(0, ge=0, le=64)
    """Not from the spec: above 1, split the CPU into this many logical devices and train mirrored over
    them, the multi-GPU code path without GPUs (tests, benchmarks, a developer's laptop)."""

    @model_validator(mode="after")
    def _every_worker_has_an_address(self) -> "TrainerConfig":
        if self.workers > 1 and len(self.worker_hosts) != self.workers:
            raise ValueError(
                f"{self.workers} workers need {self.workers} worker_hosts, not {len(self.worker_hosts)}"
            )
        return self

    def to_env(self) -> dict[str, str]:
        """Plain ``MNIST_*`` variables; ``None`` fields are left out."""
        env: dict[str, str] = {}
        for field, value in self.model_dump(mode="json", by_alias=True).items():
            if value is None:
                continue
            env[ENV_PREFIX + field.upper()] = value if isinstance(value, str) else json.dumps(value)
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "TrainerConfig":
        raw: dict[str, Any] = {}
        for field, info in cls.model_fields.items():
            key = ENV_PREFIX + field.upper()
            if key not in environ:
                continue
            text = environ[key]
            raw[field] = text if _is_text(info.annotation) else _decode(key, text)
        try:
            return cls.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                for e in error.errors()
            )
            raise EnvContractError(f"invalid trainer environment: {problems}") from None


def _is_text(annotation: Any) -> bool:
    """Strings (and string enums) travel as they are; everything else as JSON."""
    return annotation in (str, str | None) or (isinstance(annotation, type) and issubclass(annotation, str))


def _decode(key: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise EnvContractError(f"{key} is not valid JSON: {error.msg} (value {text!r})") from None


def base_model_file(spec: MnistTrainingSpec, namespace: str) -> str | None:
    """The base model's path inside its volume: the claim's path, or where the named training's run
    exported model.keras on its output claim (``RunPaths.model_keras``, relative to the volume's root)."""
    source = spec.base_model
    if source is None:
        return None
    if source.training is not None:
        return f"{namespace}/{source.training}/{MODEL_KERAS_FILE}"
    return source.path


def _under(root: str, path: str | None) -> str:
    return f"{root.rstrip('/')}/{path}" if path else root


def trainer_config(
    resource: MnistTraining,
    *,
    default_pushgateway_url: str | None,
    data_dir: str = DATA_MOUNT_PATH,
    output_dir: str = OUTPUT_MOUNT_PATH,
    uid: str | None = None,
    mount_paths: Mapping[str, str] | None = None,
    worker_hosts: Sequence[str] = (),
) -> TrainerConfig:
    """What the trainer needs from a resource. ``uid`` defaults to the resource's own.

    ``worker_hosts`` are the workers' addresses of a multi-worker training (``distribution.py``).

    ``mount_paths`` replaces the pod's mount paths of the read-only claims (``BASE_MODEL_MOUNT_PATH``,
    ``DATASET_MOUNT_PATH``, ``PREDICT_INPUT_MOUNT_PATH``) with where local mode finds them.
    """
    spec, meta = resource.spec, resource.metadata
    run_uid = uid or meta.uid
    if not run_uid:
        raise EnvContractError(f"MnistTraining {meta.namespace}/{meta.name} has no uid yet")
    mounts = dict(mount_paths or {})

    def mounted(mount_path: str) -> str:
        return mounts.get(mount_path, mount_path)

    model_file = base_model_file(spec, meta.namespace)
    predict = spec.predict
    return TrainerConfig(
        namespace=meta.namespace,
        name=meta.name,
        uid=run_uid,
        task=spec.task,
        base_model_path=_under(mounted(BASE_MODEL_MOUNT_PATH), model_file) if model_file else None,
        predict_url=predict.url if predict else None,
        predict_dir=(
            _under(mounted(PREDICT_INPUT_MOUNT_PATH), predict.path)
            if predict and predict.claim_name
            else None
        ),
        dataset=spec.dataset.name,
        dataset_url=spec.dataset.url,
        dataset_dir=(
            _under(mounted(DATASET_MOUNT_PATH), spec.dataset.path) if spec.dataset.claim_name else None
        ),
        dataset_sha256=dict(spec.dataset.sha256 or {}),
        data_dir=data_dir,
        output_dir=output_dir,
        model=spec.model,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        learning_rate_schedule=spec.learning_rate_schedule,
        optimizer=spec.optimizer,
        validation_split=spec.validation_split,
        seed=spec.seed,
        early_stopping=spec.early_stopping,
        export_formats=[str(f) for f in spec.output.formats],
        checkpoint_interval=spec.output.checkpoint_interval,
        model_card=spec.output.model_card,
        pushgateway_url=spec.metrics.pushgateway_url or default_pushgateway_url,
        metrics_job=spec.metrics.job,
        metrics_prefix=spec.metrics.prefix,
        histogram_buckets=list(spec.metrics.histogram_buckets),
        ignore_exceptions=spec.metrics.ignore_exceptions,
        release_criteria=spec.release_criteria,
        workers=spec.workers,
        worker_hosts=list(worker_hosts),
    )


def pod_env(
    resource: MnistTraining, *, default_pushgateway_url: str | None, worker_hosts: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The trainer container's ``env``: the config, the pod's own name, and the auth Secret's keys."""
    config = trainer_config(
        resource, default_pushgateway_url=default_pushgateway_url, worker_hosts=worker_hosts
    )
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(config.to_env().items())]
    env.append({"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    auth = resource.spec.metrics.auth_secret_ref
    if auth is not None:
        for var, key in ((PUSHGATEWAY_USERNAME_ENV, "username"), (PUSHGATEWAY_PASSWORD_ENV, "password")):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": auth.name, "key": key}}})
    return env
