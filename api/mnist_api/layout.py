"""Where things live on the trainer's volumes.

Two volumes: the data volume caches downloads (shareable between trainings: one download per dataset),
the output volume holds one directory per resource. Inside the pod they are mounted at the paths below;
in local mode they are ``./runs/<namespace>/<name>/{data,output}``. Resumable state is keyed by the
resource's uid, so a new resource that reuses a name never resumes from its predecessor's epoch.
"""

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final

DATA_MOUNT_PATH: Final = "/var/lib/mnist/data"
OUTPUT_MOUNT_PATH: Final = "/var/lib/mnist/output"
TMP_MOUNT_PATH: Final = "/tmp"

MODEL_KERAS_FILE: Final = "model.keras"
SAVED_MODEL_DIR: Final = "saved_model"
METRICS_FILE: Final = "metrics.json"
BEST_CHECKPOINT_FILE: Final = "checkpoints/best.keras"
BACKUP_DIR: Final = "backup"
HISTORY_FILE: Final = "history.json"
"""In the run's backup directory: every finished epoch's figures; local mode reads it for its table."""


@dataclass(frozen=True)
class RunPaths:
    """Paths of one run's files under the output volume's root."""

    output_root: PurePosixPath
    namespace: str
    name: str
    uid: str

    @property
    def run_dir(self) -> PurePosixPath:
        return self.output_root / self.namespace / self.name

    @property
    def model_keras(self) -> PurePosixPath:
        return self.run_dir / MODEL_KERAS_FILE

    @property
    def saved_model(self) -> PurePosixPath:
        return self.run_dir / SAVED_MODEL_DIR

    @property
    def metrics_json(self) -> PurePosixPath:
        return self.run_dir / METRICS_FILE

    @property
    def best_checkpoint(self) -> PurePosixPath:
        return self.run_dir / BEST_CHECKPOINT_FILE

    @property
    def backup_dir(self) -> PurePosixPath:
        return self.run_dir / BACKUP_DIR / self.uid

    @property
    def history(self) -> PurePosixPath:
        return self.backup_dir / HISTORY_FILE


def dataset_cache_dir(data_root: PurePosixPath, dataset: str) -> PurePosixPath:
    """Downloads of one dataset, shared by every training that mounts the same data volume."""
    return data_root / dataset
