"""The whole ``MnistTraining`` object as found in a manifest or on the API server."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .spec import DNS_LABEL_PATTERN, MnistTrainingSpec
from .status import MnistTrainingStatus


class ObjectMeta(BaseModel):
    """The part of ``metadata`` that the contract reads; the rest is kept but ignored."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    # A name becomes a Job and pod name prefix and a label value, so it must be a DNS label (<= 63).
    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63)
    namespace: str = Field("default", pattern=DNS_LABEL_PATTERN, max_length=63)
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class MnistTraining(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    # Literals must be spelled out for the type checker; tests/unit checks them against resource.py.
    api_version: Literal["training.mnist-operator.io/v1alpha1"] = Field(
        "training.mnist-operator.io/v1alpha1", alias="apiVersion"
    )
    kind: Literal["MnistTraining"] = "MnistTraining"
    metadata: ObjectMeta
    spec: MnistTrainingSpec = Field(default_factory=MnistTrainingSpec)
    status: MnistTrainingStatus | None = None
