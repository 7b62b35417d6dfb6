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


class ConditionType(StrEnum):
    CREATED = "Created"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    METRICS_AVAILABLE = "MetricsAvailable"
    MODEL_PERSISTENT = "ModelPersistent"


class StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(StatusModel):
    """A Kubernetes-style condition; each type appears at most once and says its own status."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field("", max_length=32768)
    last_transition_time: str | None = None
    observed_generation: int | None = None


class MnistTrainingStatus(StatusModel):
    phase: Phase | None = None
    conditions: list[Condition] = Field(default_factory=list)
    epoch: int | None = Field(None, description="Finished epochs.")
    epochs: int | None = Field(None, description="Epochs the spec asks for.")
    progress: str | None = Field(
        None,
        description="Finished/total epochs, e.g. 3/12 (the Epoch column); unset for evaluate and predict.",
    )
    accuracy: float | None = None
    loss: float | None = None
    val_accuracy: float | None = None
    val_loss: float | None = None
    test_accuracy: float | None = None
    test_loss: float | None = None
    elapsed_seconds: float | None = None
    model_parameters: int | None = None
    model_path: str | None = None
    predicted_images: int | None = Field(None, description="Images classified so far (task predict).")
    predictions_path: str | None = Field(
        None, description="Where the predictions went (task predict): the HDF5 and CSV files' folder."
    )
    job_name: str | None = None
    pod_name: str | None = None
    attempts: int | None = None
    start_time: str | None = None
    completion_time: str | None = None
    observed_generation: int | None = None
    message: str | None = None
