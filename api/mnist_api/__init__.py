"""mnist_api: the contract between the mnist-operator and its trainer.

The ``MnistTraining`` v1alpha1 models (spec, status, the whole object), the manifest loader, the
environment contract, metric names and grouping key, the volume layout, exit codes and the CRD generator.
Depends on pydantic and pyyaml only, so both the operator and the trainer image can carry it.
"""

from .env import EnvContractError, TrainerConfig, pod_env, trainer_config
from .exit_codes import ExitCode, codes_that_fail_at_once, describe_exit_code
from .layout import RunPaths
from .loader import ManifestError, load_manifest_file, load_manifests, validate_resource
from .manifest import MnistTraining, ObjectMeta
from .resource import API_VERSION, GROUP, KIND, PLURAL, VERSION
from .spec import MnistTrainingSpec
from .status import Condition, ConditionType, MnistTrainingStatus, Phase

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Condition",
    "ConditionType",
    "EnvContractError",
    "ExitCode",
    "ManifestError",
    "MnistTraining",
    "MnistTrainingSpec",
    "MnistTrainingStatus",
    "ObjectMeta",
    "Phase",
    "RunPaths",
    "TrainerConfig",
    "codes_that_fail_at_once",
    "describe_exit_code",
    "load_manifest_file",
    "load_manifests",
    "pod_env",
    "trainer_config",
    "validate_resource",
]
