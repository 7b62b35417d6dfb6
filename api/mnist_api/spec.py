"""The ``MnistTraining`` v1alpha1 spec: every field, default and bound.

This model is the single source of truth: the CRD's OpenAPI schema is generated from it
(``python -m mnist_api.crd``), the local runner validates manifests with it, and the operator reads
resources through it. Field descriptions become ``kubectl explain`` text.
"""

from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .metrics import DEFAULT_JOB, DEFAULT_PREFIX, HISTOGRAM_WEIGHT_BUCKETS_0_3

# Kubernetes resource quantity, e.g. "500m", "2", "4Gi" (the API server's own grammar, simplified).
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
URL_PATTERN = r"^(https?|file)://\S+$"
# A path inside a PersistentVolumeClaim: relative, no "..", no empty or "." segments.
CLAIM_PATH_PATTERN = r"^[^/.\s][^/\s]*(/[^/\s]+)*$"
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".zip")
PROMETHEUS_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
INCREASING_BUCKETS = "histogramBuckets must be strictly increasing"
# The size gate measures model.keras; without that file it could only be skipped or fail after training.
MODEL_SIZE_NEEDS_KERAS = "releaseCriteria.maxModelSizeMb measures model.keras: add keras to output.formats"
MODEL_SIZE_NEEDS_KERAS_RULE = (
    "!has(self.releaseCriteria) || !has(self.releaseCriteria.maxModelSizeMb) || !has(self.output)"
    " || !has(self.output.formats) || 'keras' in self.output.formats"
)


DATASET_ONE_SOURCE = "dataset.url and dataset.claimName exclude each other"
DATASET_PATH_NEEDS_CLAIM = "dataset.path needs dataset.claimName"
DATASET_RULES = (
    ("!has(self.url) || !has(self.claimName)", DATASET_ONE_SOURCE),
    ("!has(self.path) || has(self.claimName)", DATASET_PATH_NEEDS_CLAIM),
)
MODEL_SOURCE_ONE_OF = "baseModel needs exactly one of training and claimName"
MODEL_SOURCE_PATH = "baseModel.claimName needs path (the .keras file on the claim), and path needs claimName"
MODEL_SOURCE_RULES = (
    ("has(self.training) != has(self.claimName)", MODEL_SOURCE_ONE_OF),
    ("has(self.claimName) == has(self.path)", MODEL_SOURCE_PATH),
)
PREDICT_ONE_OF = "predict needs exactly one of url and claimName"
PREDICT_PATH_NEEDS_CLAIM = "predict.path needs predict.claimName"
PREDICT_RULES = (
    ("has(self.url) != has(self.claimName)", PREDICT_ONE_OF),
    ("!has(self.path) || has(self.claimName)", PREDICT_PATH_NEEDS_CLAIM),
)
TASK_NEEDS_BASE_MODEL = (
    "task evaluate and task predict need baseModel (the model to evaluate or predict with)"
)
PREDICT_NEEDS_INPUT = "task predict needs spec.predict (the images), and spec.predict needs task predict"
WORKERS_NEED_TRAIN = "workers above 1 need task train: evaluate and predict run in one pod"
TASK_RULES = (
    ("!has(self.task) || self.task == 'train' || has(self.baseModel)", TASK_NEEDS_BASE_MODEL),
    ("(has(self.task) && self.task == 'predict') == has(self.predict)", PREDICT_NEEDS_INPUT),
    (
        "!has(self.workers) || self.workers == 1 || !has(self.task) || self.task == 'train'",
        WORKERS_NEED_TRAIN,
    ),
)
DEFAULT_EPOCHS = 5
DEFAULT_WARMUP_EPOCHS = 0.3
WARMUP_SHORTER_THAN_RUN = (
    "learningRateSchedule.warmupEpochs must be fewer than epochs (the cosine needs steps to fall)"
)
WARMUP_SHORTER_THAN_RUN_RULE = (
    "!has(self.learningRateSchedule) || self.learningRateSchedule.name == 'constant' || "
    f"(has(self.learningRateSchedule.warmupEpochs) ? self.learningRateSchedule.warmupEpochs : "
    f"{DEFAULT_WARMUP_EPOCHS}) < double(has(self.epochs) ? self.epochs : {DEFAULT_EPOCHS})"
)


class SpecModel(BaseModel):
    """Base of every spec part: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=True,
    )


class DatasetName(StrEnum):
    MNIST = "mnist"
    FASHION_MNIST = "fashion-mnist"


class ModelName(StrEnum):
    CONVNET = "convnet"
    """The seeds' convnet (Chollet, Deep Learning with Python, ch. 8): 104,202 parameters."""
    MLP = "mlp"
    """A small dense network: trains in seconds on a CPU; for smoke tests and demos."""
    CAPSNET = "capsnet"
    """Sabour, Frosst and Hinton's capsule network with dynamic routing, trained with the margin loss."""


class Task(StrEnum):
    TRAIN = "train"
    """Train a model (from scratch, or on from baseModel: fine-tuning), evaluate it and export it."""
    EVALUATE = "evaluate"
    """Evaluate baseModel on the dataset's test set: gangplank's test.py."""
    PREDICT = "predict"
    """Predict every image of spec.predict with baseModel: rmldnn's inference run."""


class OptimizerName(StrEnum):
    ADAM = "adam"
    ADAMW = "adamw"
    RMSPROP = "rmsprop"
    SGD = "sgd"


class LearningRateScheduleName(StrEnum):
    CONSTANT = "constant"
    COSINE = "cosine"


class ExportFormat(StrEnum):
    KERAS = "keras"
    SAVEDMODEL = "savedmodel"
    ONNX = "onnx"
    TFLITE = "tflite"


class DatasetSpec(SpecModel):
    model_config = ConfigDict(
        **SpecModel.model_config,
        json_schema_extra={"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in DATASET_RULES]},
    )

    name: DatasetName = Field(DatasetName.MNIST, description="Which dataset to train on.")
    url: Annotated[str, Field(max_length=2048, pattern=URL_PATTERN)] | None = Field(
        None,
        description=(
            "Where to download from instead of the canonical location: http(s):// or file://. A URL ending "
            "in .npz is a Keras-format archive (x_train, y_train, x_test, y_test); one ending in .tgz, "
            ".tar.gz or .zip is an image-folder archive (training/<class>/ and testing/<class>/ of PNG or "
            "JPEG images; class names are the folder names); any other URL is the folder holding the idx "
            "quartet train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
            "and t10k-labels-idx1-ubyte.gz."
        ),
    )
    claim_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)] | None = Field(
        None,
        description=(
            "PersistentVolumeClaim holding an image-folder dataset (mounted read-only): path names the "
            "folder with training/<class>/ and testing/<class>/. Excludes url."
        ),
    )
    path: Annotated[str, Field(pattern=CLAIM_PATH_PATTERN, max_length=1024)] | None = Field(
        None, description="Folder of the image-folder dataset inside claimName; its root when unset."
    )
    sha256: dict[str, Annotated[str, Field(pattern=SHA256_PATTERN)]] | None = Field(
        None,
        description=(
            "Expected sha256 per file name, replacing the built-in sums of the canonical files; needed for "
            "mirrors that recompress. A file not listed here is checked against the built-in sum if one "
            "exists, and otherwise not checked."
        ),
    )
    cache_claim_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)] | None = Field(
        None,
        description=(
            "PersistentVolumeClaim that caches downloads, shareable by many trainings; an emptyDir (one "
            "download per pod) when unset."
        ),
    )

    @model_validator(mode="after")
    def _one_source(self) -> "DatasetSpec":
        # The API server's copies are DATASET_RULES (crd.py puts them on the dataset).
        if self.url is not None and self.claim_name is not None:
            raise ValueError(DATASET_ONE_SOURCE)
        if self.path is not None and self.claim_name is None:
            raise ValueError(DATASET_PATH_NEEDS_CLAIM)
        return self

    @property
    def image_folder(self) -> bool:
        """Whether the dataset is an image folder (on a claim, or an archive at a URL)."""
        return self.claim_name is not None or (self.url or "").endswith(ARCHIVE_SUFFIXES)


class ModelSourceSpec(SpecModel):
    model_config = ConfigDict(
        **SpecModel.model_config,
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": r, "message": m} for r, m in MODEL_SOURCE_RULES]
        },
    )

    training: Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)] | None = Field(
        None,
        description=(
            "A Succeeded MnistTraining in the same namespace whose model.keras to start from; it must "
            "have kept its model on output.claimName."
        ),
    )
    claim_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)] | None = Field(
        None, description="PersistentVolumeClaim holding the model (mounted read-only); needs path."
    )
    path: Annotated[str, Field(pattern=CLAIM_PATH_PATTERN, max_length=1024)] | None = Field(
        None, description="The .keras file inside claimName, e.g. team/mnist/model.keras."
    )

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSourceSpec":
        # The API server's copies are MODEL_SOURCE_RULES (crd.py puts them on baseModel).
        if (self.training is None) == (self.claim_name is None):
            raise ValueError(MODEL_SOURCE_ONE_OF)
        if (self.claim_name is None) != (self.path is None):
            raise ValueError(MODEL_SOURCE_PATH)
        return self


class PredictSpec(SpecModel):
    model_config = ConfigDict(
        **SpecModel.model_config,
        json_schema_extra={"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in PREDICT_RULES]},
    )

    url: Annotated[str, Field(max_length=2048, pattern=URL_PATTERN)] | None = Field(
        None,
        description=(
            "Archive of the images to predict (.tgz, .tar.gz or .zip of PNG or JPEG files, any folder "
            "depth): http(s):// or file://. Excludes claimName."
        ),
    )
    claim_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)] | None = Field(
        None, description="PersistentVolumeClaim holding the images to predict (mounted read-only)."
    )
    path: Annotated[str, Field(pattern=CLAIM_PATH_PATTERN, max_length=1024)] | None = Field(
        None, description="Folder of the images inside claimName (searched recursively); its root when unset."
    )

    @model_validator(mode="after")
    def _one_source(self) -> "PredictSpec":
        # The API server's copies are PREDICT_RULES (crd.py puts them on predict).
        if (self.url is None) == (self.claim_name is None):
            raise ValueError(PREDICT_ONE_OF)
        if self.path is not None and self.claim_name is None:
            raise ValueError(PREDICT_PATH_NEEDS_CLAIM)
        return self


class EarlyStoppingSpec(SpecModel):
    monitor: Literal["val_loss", "val_accuracy", "loss", "accuracy"] = Field(
        "val_loss", description="Metric that must keep improving."
    )
    patience: int = Field(3, ge=1, le=1000, description="Epochs without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0, le=1, description="Smallest change that counts as an improvement.")


class LearningRateScheduleSpec(SpecModel):
    name: LearningRateScheduleName = Field(
        LearningRateScheduleName.COSINE,
        description="cosine (the default): the rate rises linearly from 0 to learningRate over warmupEpochs, "
        "then falls along a half cosine to 0 at the last epoch (Keras' CosineDecay with warm-up): big steps "
        "while the model is far off, careful ones at the end. constant: learningRate throughout.",
    )
    warmup_epochs: float = Field(
        DEFAULT_WARMUP_EPOCHS,
        ge=0,
        le=1000,
        description="Epochs (fractions allowed) of the linear warm-up of the cosine schedule; must be "
        "fewer than epochs. Ignored by constant.",
    )


class ResourcesSpec(SpecModel):
    cpu: Annotated[str, Field(pattern=QUANTITY_PATTERN)] | None = Field(
        "1", description="CPU request of the trainer container (no CPU limit: throttling slows training)."
    )
    memory: Annotated[str, Field(pattern=QUANTITY_PATTERN)] | None = Field(
        "2Gi", description="Memory request and limit of the trainer container."
    )
    gpus: int = Field(
        0,
        ge=0,
        le=16,
        description="NVIDIA GPUs (nvidia.com/gpu) per trainer pod; adds the matching NVIDIA toleration. "
        "Above 1, training is data-parallel over the pod's GPUs (tf.distribute.MirroredStrategy) and "
        "batchSize is split between them.",
    )


class Toleration(SpecModel):
    key: str | None = Field(None, max_length=316)
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = Field(None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(None, ge=0)


class OutputSpec(SpecModel):
    claim_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)] | None = Field(
        None,
        description=(
            "PersistentVolumeClaim for the exported model, metrics.json and checkpoints. When unset an "
            "emptyDir is used and the model is lost with the pod (the status warns)."
        ),
    )
    formats: list[ExportFormat] = Field(
        default_factory=lambda: [ExportFormat.KERAS, ExportFormat.SAVEDMODEL],
        json_schema_extra={
            "default": [ExportFormat.KERAS.value, ExportFormat.SAVEDMODEL.value],
            "x-kubernetes-list-type": "set",
        },
        min_length=1,
        max_length=4,
        description=(
            "Export formats: model.keras; a SavedModel laid out for TF Serving and KServe "
            "(saved_model/1/); model.onnx (ONNX, opset 17+); model.tflite (TensorFlow Lite)."
        ),
    )
    checkpoint_interval: int | None = Field(
        None,
        ge=1,
        le=1000,
        description=(
            "Also keep checkpoints/epoch-<N>.keras every this many epochs (rmldnn's checkpoints.interval), "
            "besides checkpoints/best.keras; unset keeps only the best."
        ),
    )
    model_card: bool = Field(
        True,
        description=(
            "Write model_card/mnist_model_card.md and its plots (training curves, confusion matrix, "
            "per-class accuracy); false is the seeds' --skip-visualizations."
        ),
    )

    @field_validator("formats")
    @classmethod
    def _unique_formats(cls, formats: list[ExportFormat]) -> list[ExportFormat]:
        if len(set(formats)) != len(formats):
            raise ValueError("formats must not repeat")
        return formats


class SecretRef(SpecModel):
    name: str = Field(
        pattern=DNS_SUBDOMAIN_PATTERN, max_length=253, description="Secret in the same namespace."
    )


class MetricsSpec(SpecModel):
    pushgateway_url: Annotated[str, Field(max_length=2048, pattern=r"^https?://\S+$")] | None = Field(
        None, description="Pushgateway to push to, overriding the operator's default."
    )
    job: str = Field(
        DEFAULT_JOB, min_length=1, max_length=128, description="The Pushgateway job label (the seeds' 'job')."
    )
    prefix: str = Field(
        DEFAULT_PREFIX,
        pattern=PROMETHEUS_NAME_PATTERN,
        max_length=64,
        description="Metric name prefix: <prefix>_train_* and <prefix>_test_*.",
    )
    histogram_buckets: list[float] = Field(
        default_factory=lambda: list(HISTOGRAM_WEIGHT_BUCKETS_0_3),
        json_schema_extra={
            "default": list(HISTOGRAM_WEIGHT_BUCKETS_0_3),
            # The API server's copy of _increasing below: a set has no repeats, isSorted() the order.
            "x-kubernetes-list-type": "set",
            "x-kubernetes-validations": [{"rule": "self.isSorted()", "message": INCREASING_BUCKETS}],
        },
        max_length=64,
        description=(
            "Upper bounds of the model-weights histogram, strictly increasing; [] pushes no histogram. "
            "Default: the seeds' HISTOGRAM_WEIGHT_BUCKETS_0_3."
        ),
    )
    ignore_exceptions: bool = Field(
        True, description="Keep training when a push fails (a warning is logged); false aborts the run."
    )
    auth_secret_ref: SecretRef | None = Field(
        None, description="Secret with 'username' and 'password' keys for Pushgateway basic auth."
    )

    @field_validator("histogram_buckets")
    @classmethod
    def _increasing(cls, buckets: list[float]) -> list[float]:
        if any(upper <= lower for lower, upper in pairwise(buckets)):
            raise ValueError(INCREASING_BUCKETS)
        return buckets


class ReleaseCriteriaSpec(SpecModel):
    min_test_accuracy: float | None = Field(None, ge=0, le=1, description="Lowest acceptable test accuracy.")
    min_per_class_accuracy: float | None = Field(
        None, ge=0, le=1, description="Lowest acceptable accuracy of any single class."
    )
    max_model_size_mb: float | None = Field(
        None, gt=0, description="Largest acceptable model.keras, in MB (needs keras in output.formats)."
    )
    max_inference_time_ms: float | None = Field(
        None, gt=0, description="Slowest acceptable single-image prediction, in milliseconds."
    )


class RunPolicySpec(SpecModel):
    backoff_limit: int = Field(
        3,
        ge=0,
        le=100,
        description="Retries of a failed training: of its trainer pod, or with workers above 1 of the "
        "whole set of workers, which restarts together (one lost worker fails the others, exit code 75 "
        "WorkerLost), so the Job allows backoffLimit times workers failed pods. An evicted or preempted pod "
        "does not count, but the failures of its peers do.",
    )
    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Seconds the whole training may take before it is stopped and failed."
    )
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description="Delete the finished MnistTraining (and its Job and pods) after this long."
    )
    suspend: bool = Field(False, description="Create no pod until set to false (also how Kueue queues).")


class MnistTrainingSpec(SpecModel):
    task: Task = Field(
        Task.TRAIN,
        description=(
            "train (the default): train, evaluate and export; from baseModel when set, for epochs more "
            "epochs (fine-tuning). evaluate: test baseModel on the dataset's test set. predict: classify "
            "the images of spec.predict with baseModel. evaluate and predict need baseModel."
        ),
    )
    base_model: ModelSourceSpec | None = Field(
        None,
        description=(
            "A saved model to start from instead of a new one from the zoo (model is then ignored): "
            "another training's output, or a .keras file on a claim."
        ),
    )
    predict: PredictSpec | None = Field(None, description="The images to classify (task predict).")
    dataset: DatasetSpec = Field(default_factory=DatasetSpec, description="What to train on.")
    model: ModelName = Field(ModelName.CONVNET, description="Model from the zoo.")
    epochs: int = Field(DEFAULT_EPOCHS, ge=1, le=1000, description="Training epochs.")
    batch_size: int = Field(
        128,
        ge=1,
        le=8192,
        description="Images per training step (and per prediction step): the global batch, split evenly "
        "between all GPUs and workers, so the same batchSize trains the same model on any number of them. "
        "128 with the cosine learningRateSchedule reaches a given accuracy soonest on a CPU "
        "(docs/benchmarks.md).",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Trainer pods training one model together, data-parallel (tf.distribute."
        "MultiWorkerMirroredStrategy): one Indexed Job of this many pods and a headless Service that "
        "names them. Worker 0 is the chief: it alone pushes metrics, checkpoints and exports. A lost "
        "worker restarts the whole set, which resumes from the last finished epoch. task train only.",
    )
    learning_rate: float = Field(
        0.004,
        gt=0,
        le=10,
        description="The optimizer's learning rate: its peak under the cosine learningRateSchedule.",
    )
    learning_rate_schedule: LearningRateScheduleSpec = Field(
        default_factory=LearningRateScheduleSpec,
        description="How the learning rate changes over the run's steps (docs/benchmarks.md section 2).",
    )
    optimizer: OptimizerName = Field(OptimizerName.ADAM, description="The optimizer.")
    validation_split: float = Field(
        0.1, ge=0, lt=1, description="Share of the training images held out for validation."
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Random seed; unset means random.")
    early_stopping: EarlyStoppingSpec | None = Field(None, description="Stop when a metric stops improving.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Compute for the trainer.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pod requires.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Taints the pod tolerates.")
    image: Annotated[str, Field(min_length=1, max_length=512)] | None = Field(
        None, description="Trainer image; the operator's default when unset."
    )
    output: OutputSpec = Field(default_factory=OutputSpec, description="Where the model goes.")
    metrics: MetricsSpec = Field(default_factory=MetricsSpec, description="Where metrics go.")
    release_criteria: ReleaseCriteriaSpec = Field(
        default_factory=ReleaseCriteriaSpec, description="Checks the trained model must pass to succeed."
    )
    run_policy: RunPolicySpec = Field(
        default_factory=RunPolicySpec, description="Retries, deadlines, cleanup."
    )

    @model_validator(mode="after")
    def _task_has_its_inputs(self) -> "MnistTrainingSpec":
        # The API server's copies are TASK_RULES (crd.py puts them on the spec).
        if self.task != Task.TRAIN and self.base_model is None:
            raise ValueError(TASK_NEEDS_BASE_MODEL)
        if (self.task == Task.PREDICT) != (self.predict is not None):
            raise ValueError(PREDICT_NEEDS_INPUT)
        if self.workers > 1 and self.task != Task.TRAIN:
            raise ValueError(WORKERS_NEED_TRAIN)
        return self

    @model_validator(mode="after")
    def _warmup_leaves_steps_to_decay(self) -> "MnistTrainingSpec":
        # The API server's copy is WARMUP_SHORTER_THAN_RUN_RULE (crd.py puts it on the spec).
        schedule = self.learning_rate_schedule
        if schedule.name == LearningRateScheduleName.COSINE and schedule.warmup_epochs >= self.epochs:
            raise ValueError(WARMUP_SHORTER_THAN_RUN)
        return self

    @model_validator(mode="after")
    def _model_size_gate_is_measurable(self) -> "MnistTrainingSpec":
        # The API server's copy is MODEL_SIZE_NEEDS_KERAS_RULE (crd.py puts it on the spec).
        if (
            self.release_criteria.max_model_size_mb is not None
            and ExportFormat.KERAS not in self.output.formats
        ):
            raise ValueError(MODEL_SIZE_NEEDS_KERAS)
        return self
