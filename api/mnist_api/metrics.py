"""The metrics contract: names the trainer pushes, the grouping key it pushes under, bucket presets.

Names keep the seeds' ``gangplank_train_*`` / ``gangplank_test_*`` form by default so that
``curl -s $PGW/metrics | grep gangplank_train`` works verbatim; the prefix is configurable. Two gauge
names, ``*_epochs_count`` and ``*_model_parameters_count``, make ``promtool check metrics`` note that
``_count`` suffixes belong to histograms and summaries. We keep them for compatibility with the seeds'
dashboards; docs/metrics.md records the exception.
"""

from typing import Final

DEFAULT_PREFIX: Final = "gangplank"
DEFAULT_JOB: Final = "mnist"

TRAIN_STAGE: Final = "train"
TEST_STAGE: Final = "test"
PREDICT_STAGE: Final = "predict"

# Gauges pushed after every epoch, ``<prefix>_train_<name>``.
TRAIN_GAUGES: Final[dict[str, str]] = {
    "accuracy": "Training accuracy of the last finished epoch",
    "loss": "Training loss of the last finished epoch",
    "val_accuracy": "Validation accuracy of the last finished epoch",
    "val_loss": "Validation loss of the last finished epoch",
    "epochs_count": "Number of finished epochs",
    "elapsed_time_seconds": "Seconds spent training so far",
    "model_parameters_count": "Number of weights in the model",
}

# Gauges pushed after evaluation, ``<prefix>_test_<name>``.
TEST_GAUGES: Final[dict[str, str]] = {
    "accuracy": "Accuracy on the test set",
    "loss": "Loss on the test set",
    "elapsed_time_seconds": "Seconds spent evaluating the test set",
    "model_parameters_count": "Number of weights in the model",
}
# Gauge pushed by a prediction run (task predict), ``<prefix>_predict_<name>``; not in the seeds.
PREDICT_GAUGES: Final[dict[str, str]] = {
    "images": "Number of images the model classified",
}
# Extra test gauge with a ``class`` label; not in the seeds, so it never collides with their dashboards.
TEST_CLASS_ACCURACY: Final = "class_accuracy"
WEIGHTS_HISTOGRAM: Final = "model_weights"

# The seeds' bucket presets: upper bounds for model weights in [-0.3, +0.3] and [-1.0, +1.0].
HISTOGRAM_WEIGHT_BUCKETS_0_3: Final[tuple[float, ...]] = tuple(round(-0.3 + 0.05 * i, 2) for i in range(13))
HISTOGRAM_WEIGHT_BUCKETS_1_0: Final[tuple[float, ...]] = tuple(round(-1.0 + 0.1 * i, 1) for i in range(21))

# Labels of the Pushgateway group of one run. Unlike the seeds (job only), each run gets its own group
# so two trainings, or two runs of one name, never overwrite each other's metrics.
GROUP_LABEL_NAMESPACE: Final = "namespace"
GROUP_LABEL_TRAINING: Final = "training"
GROUP_LABEL_UID: Final = "uid"


def metric_name(prefix: str, stage: str, name: str) -> str:
    """``metric_name("gangplank", "train", "loss") == "gangplank_train_loss"``."""
    return f"{prefix}_{stage}_{name}"


def grouping_key(namespace: str, name: str, uid: str) -> dict[str, str]:
    """The Pushgateway grouping labels (besides ``job``) that identify one run of one resource."""
    return {GROUP_LABEL_NAMESPACE: namespace, GROUP_LABEL_TRAINING: name, GROUP_LABEL_UID: uid}
