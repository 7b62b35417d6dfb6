"""The ``MnistTraining`` status, written only by the operator (and rendered by local mode)."""

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    # The Job waits for Kueue to admit its Workload (the training carries kueue.x-k8s.io/queue-name).
    QUEUED = "Queued"


class ConditionType(StrEnum):
    CREATED = "Created"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    QUEUED = "Queued"
    METRICS_AVAILABLE = "MetricsAvailable"
    MODEL_PERSISTENT = "ModelPersistent"


class StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(StatusModel):
    """A Kubernetes-style condition; each type appears at most once and says its own status."""

    type: str = Field(
        description="Created, Running, Succeeded, Failed, Suspended, Queued, MetricsAvailable or ModelPersistent."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Whether the condition holds now.")
    reason: str = Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        max_length=1024,
        description="Why, in one CamelCase word (e.g. Completed, DataUnavailable, PushgatewayUnreachable).",
    )
    message: str = Field("", max_length=32768, description="Why, in a sentence a person can act on.")
    last_transition_time: str | None = Field(
        None, description="When status last changed (RFC 3339); unchanged while status stays the same."
    )
    observed_generation: int | None = Field(
        None, description="The metadata.generation of the spec this condition was computed from."
    )


class MnistTrainingStatus(StatusModel):
    phase: Phase | None = Field(
        None,
        description="Pending, Queued (waiting for Kueue), Running, Succeeded, Failed or Suspended: the Phase "
        "column.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="The training's conditions, one per type (see Condition)."
    )
    epoch: int | None = Field(None, description="Finished epochs, as the trainer last pushed them.")
    epochs: int | None = Field(None, description="Epochs the spec asks for (task train only).")
    progress: str | None = Field(
        None,
        description="Finished/total epochs, e.g. 3/12 (the Epoch column); unset for evaluate and predict.",
    )
    accuracy: float | None = Field(None, description="Training accuracy of the last finished epoch.")
    loss: float | None = Field(None, description="Training loss of the last finished epoch.")
    val_accuracy: float | None = Field(None, description="Validation accuracy of the last finished epoch.")
    val_loss: float | None = Field(None, description="Validation loss of the last finished epoch.")
    test_accuracy: float | None = Field(
        None, description="Accuracy on the dataset's test set, after training (or of the evaluated model)."
    )
    test_loss: float | None = Field(None, description="Loss on the dataset's test set.")
    elapsed_seconds: float | None = Field(
        None, description="Seconds spent training so far, across retries of the run."
    )
    model_parameters: int | None = Field(None, description="Number of weights in the model.")
    model_path: str | None = Field(
        None,
        description="Where the trained model.keras is, as pvc://<claim>/<namespace>/<name>/model.keras, once a "
        "training with output.claimName has succeeded.",
    )
    predicted_images: int | None = Field(None, description="Images classified so far (task predict).")
    predictions_path: str | None = Field(
        None, description="Where the predictions went (task predict): the HDF5 and CSV files' folder."
    )
    job_name: str | None = Field(None, description="The batch/v1 Job that runs the trainer.")
    pod_name: str | None = Field(
        None,
        description="The Job's latest trainer pod (kubectl logs reads it); with workers above 1, the latest "
        "pod of worker 0, the chief, which logs the training's progress.",
    )
    attempts: int | None = Field(
        None,
        description="Trainer pods started so far: failed ones plus the running or finished one (with workers "
        "above 1, plus every running or finished worker's).",
    )
    workers: int | None = Field(
        None, description="Trainer pods training together (spec.workers); set only when above 1."
    )
    workers_ready: int | None = Field(
        None,
        description="Workers whose pod is Ready (the Job's status.ready); set only with workers above 1.",
    )
    workers_running: int | None = Field(
        None,
        description="Workers whose pod is running or starting (the Job's status.active); set only with "
        "workers above 1.",
    )
    worker_readiness: str | None = Field(
        None,
        description="Ready workers of all, e.g. 1/2 (the Workers column); set only with workers above 1.",
    )
    failed_worker: int | None = Field(
        None,
        description="The index (0 is the chief) of the worker whose failure last restarted the workers: the "
        "pod's batch.kubernetes.io/job-completion-index. The others then fail as WorkerLost (exit code 75), "
        "so a WorkerLost worker is named only when the lost one's own failure is unknown.",
    )
    start_time: str | None = Field(None, description="When the Job started (RFC 3339).")
    completion_time: str | None = Field(None, description="When the Job succeeded or failed (RFC 3339).")
    observed_generation: int | None = Field(
        None, description="The metadata.generation of the spec this status was computed from."
    )
    message: str | None = Field(None, description="What is happening, or what went wrong, in a sentence.")
