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
# Claims the spec names for reading (mounted read-only): the base model's, the image-folder dataset's and
# the images to predict.
BASE_MODEL_MOUNT_PATH: Final = "/var/lib/mnist/base-model"
DATASET_MOUNT_PATH: Final = "/var/lib/mnist/dataset"
PREDICT_INPUT_MOUNT_PATH: Final = "/var/lib/mnist/predict-input"

MODEL_KERAS_FILE: Final = "model.keras"
SAVED_MODEL_DIR: Final = "saved_model"
SAVED_MODEL_VERSION: Final = 1
"""TF Serving and KServe load <model base path>/<version>/: saved_model/1/ (the base path is saved_model)."""
ONNX_FILE: Final = "model.onnx"
TFLITE_FILE: Final = "model.tflite"
METRICS_FILE: Final = "metrics.json"
BEST_CHECKPOINT_FILE: Final = "checkpoints/best.keras"
EPOCH_CHECKPOINT_FILE: Final = "checkpoints/epoch-{epoch:04d}.keras"
"""output.checkpointInterval's numbered checkpoints; the number is the finished epoch, from 1."""
TENSORBOARD_DIR: Final = "tensorboard"
"""TensorBoard event files, one run folder per uid: ``tensorboard --logdir`` the training's folder."""
MODEL_CARD_DIR: Final = "model_card"
MODEL_CARD_FILE: Final = "model_card/mnist_model_card.md"
"""The seeds' names (mnist-pipeline-usage.md), plots included, so their readers find them."""
PLOTS_DIR: Final = "model_card/plots"
PLOT_FILES: Final = (
    "training_loss.png",
    "training_accuracy.png",
    "confusion_matrix.png",
    "per_class_accuracy.png",
)
PREDICTIONS_DIR: Final = "predictions"
PREDICTIONS_HDF5_FILE: Final = "predictions/output_1.h5"
"""rmldnn's name: one dataset of shape (classes,) per input image, in the order of the CSV's rows."""
PREDICTIONS_CSV_FILE: Final = "predictions/predictions.csv"
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
    def saved_model_version(self) -> PurePosixPath:
        return self.saved_model / str(SAVED_MODEL_VERSION)

    @property
    def onnx(self) -> PurePosixPath:
        return self.run_dir / ONNX_FILE

    @property
    def tflite(self) -> PurePosixPath:
        return self.run_dir / TFLITE_FILE

    def epoch_checkpoint(self, epoch: int) -> PurePosixPath:
        return self.run_dir / EPOCH_CHECKPOINT_FILE.format(epoch=epoch)

    @property
    def tensorboard(self) -> PurePosixPath:
        """This run's TensorBoard log folder (Keras writes train/ and validation/ below it)."""
        return self.run_dir / TENSORBOARD_DIR / self.uid

    @property
    def model_card(self) -> PurePosixPath:
        return self.run_dir / MODEL_CARD_FILE

    @property
    def plots_dir(self) -> PurePosixPath:
        return self.run_dir / PLOTS_DIR

    @property
    def predictions_hdf5(self) -> PurePosixPath:
        return self.run_dir / PREDICTIONS_HDF5_FILE

    @property
    def predictions_csv(self) -> PurePosixPath:
        return self.run_dir / PREDICTIONS_CSV_FILE

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
