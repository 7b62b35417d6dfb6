"""The train stage's callback list, built in one place: ``pipeline.run_training`` fits with it, and
``bench/trainer_overhead.py`` measures exactly it rather than a copy that could drift.

The callback classes live in their own modules (``safe_stop``, ``run_state``, ``progress``,
``metrics_push``); this module only decides which ones a run gets, in which order, with which arguments.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
from prometheus_client.exposition import basic_auth_handler

from mnist_api.env import PUSHGATEWAY_PASSWORD_ENV, PUSHGATEWAY_USERNAME_ENV, TrainerConfig
from mnist_api.layout import RunPaths
from mnist_api.metrics import grouping_key

from .checkpoints import BackupAndBestModel
from .export import export_keras
from .metrics_push import Handler, TrainTestExporter
from .progress import ProgressLog
from .run_state import RunState, best_value
from .safe_stop import SafeStop
from .stop_requests import StopRequests

__all__ = [
    "EpochTensorBoard",
    "TrainingCallbacks",
    "metrics_pusher",
    "pushgateway_handler",
    "training_callbacks",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingCallbacks:
    """What ``fit`` gets (``in_order``), and the callbacks later stages read again after it."""

    in_order: list[keras.callbacks.Callback]
    run_state: RunState  # the epoch history, across attempts
    progress: ProgressLog  # the images per second
    metrics_push: TrainTestExporter | None  # None without a Pushgateway; also serves the evaluation
    monitor: str  # what the best-model checkpoint minimises


def training_callbacks(
    config: TrainerConfig,
    paths: RunPaths,
    stops: StopRequests,
    environ: Mapping[str, str],
    *,
    train_images: int,
    validating: bool,
    interactive: bool,
    chief: bool = True,
) -> TrainingCallbacks:
    """The callbacks of one run's ``fit``, in the order they must run.

    ``interactive`` is whether stdout is a terminal: Keras' own progress bar then replaces the heartbeat
    lines. Loads the run's history from an earlier attempt, so build it anew for every ``fit``.

    Only the ``chief`` (worker 0 of a multi-worker training; the only worker otherwise) reads and writes
    the run's files: the history, the backup, checkpoints, TensorBoard's events, and pushes the metrics.
    The other workers take the restored weights and epoch from the chief (``distributed.py``) and log
    their own progress.
    """
    backup_dir = Path(paths.backup_dir)
    run_state = RunState(backup_dir)
    previous = run_state.load()
    monitor = "val_loss" if validating else "loss"
    progress = ProgressLog(
        config.epochs,
        train_images,
        heartbeat_seconds=float("inf") if interactive else config.heartbeat_seconds,
        steps_per_epoch=-(-train_images // config.batch_size),
    )
    in_order: list[keras.callbacks.Callback]
    if not chief:
        in_order = [SafeStop(stops), progress, *_early_stopping(config)]
        return TrainingCallbacks(in_order, run_state, progress, None, monitor)
    metrics_push = metrics_pusher(config, environ)
    if metrics_push is not None:
        metrics_push.resume_elapsed(run_state.elapsed_seconds)
    Path(paths.best_checkpoint).parent.mkdir(parents=True, exist_ok=True)
    in_order = [
        # First: a stop ends a half-trained epoch before anything below records it (safe_stop.py).
        SafeStop(stops),
        run_state,
        BackupAndBestModel(
            backup_dir,
            Path(paths.best_checkpoint),
            monitor=monitor,
            # A retried attempt's first epoch must beat the earlier attempts' best, not overwrite it.
            initial_value_threshold=best_value(previous, monitor),
        ),
        progress,
        # A retried attempt appends to the same run folder at the right epoch numbers.
        EpochTensorBoard(str(paths.tensorboard)),
    ]
    if config.checkpoint_interval is not None:
        in_order.append(EpochCheckpoints(paths, config.checkpoint_interval))
    in_order += _early_stopping(config)
    if metrics_push is not None:
        in_order.append(metrics_push)
    return TrainingCallbacks(in_order, run_state, progress, metrics_push, monitor)


def _early_stopping(config: TrainerConfig) -> list[keras.callbacks.Callback]:
    # On every worker of a multi-worker training: their logs hold the same global figures, so all of
    # them stop after the same epoch.
    if config.early_stopping is None:
        return []
    return [
        keras.callbacks.EarlyStopping(
            monitor=config.early_stopping.monitor,
            patience=config.early_stopping.patience,
            min_delta=config.early_stopping.min_delta,
            restore_best_weights=True,
            verbose=0,
        )
    ]


class EpochTensorBoard(keras.callbacks.TensorBoard):  # type: ignore[misc]
    """TensorBoard's curves, per epoch only: no graph, no histograms, no profiling, which would cost time
    every step.

    Keras' TensorBoard also has training batch hooks, called at every step: one hands every step's
    figures to ``tf.summary``, which records nothing when curves are written per epoch (no summary writer
    is open between epochs) but still costs a sizeable share of a small model's step; the other counts
    steps for per-batch curves and profiling, neither of which is on here. Both are Keras' no-op
    defaults here.
    """

    on_train_batch_begin = keras.callbacks.Callback.on_train_batch_begin
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir, histogram_freq=0, write_graph=False, update_freq="epoch", profile_batch=0)


class EpochCheckpoints(keras.callbacks.Callback):  # type: ignore[misc]
    """rmldnn's ``checkpoints.interval``: keep ``checkpoints/epoch-<N>.keras`` after every ``interval``-th
    epoch, besides the best one. Epoch numbers count from 1 and across attempts (a resumed fit starts at
    the restored epoch), so a number always means the same epoch."""

    def __init__(self, paths: RunPaths, interval: int) -> None:
        super().__init__()
        self.paths, self.interval = paths, interval

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        finished = epoch + 1
        if finished % self.interval == 0:
            saved = export_keras(self.model, Path(self.paths.epoch_checkpoint(finished)))
            log.info("checkpoint of epoch %d: %s", finished, saved)


def metrics_pusher(config: TrainerConfig, environ: Mapping[str, str]) -> TrainTestExporter | None:
    """The run's Pushgateway callback, pushing to the run's own group; None when no Pushgateway is set."""
    if not config.pushgateway_url:
        log.info("no Pushgateway configured: metrics go to the log and metrics.json only")
        return None
    return TrainTestExporter(
        config.pushgateway_url,
        config.metrics_job,
        histogram_buckets=config.histogram_buckets,
        handler=pushgateway_handler(environ),
        ignore_exceptions=config.ignore_exceptions,
        grouping_key=grouping_key(config.namespace, config.name, config.uid),
        prefix=config.metrics_prefix,
    )


def pushgateway_handler(environ: Mapping[str, str]) -> Handler | None:
    """Basic auth for the Pushgateway when the pod has the auth secret's username (and password)."""
    username, password = environ.get(PUSHGATEWAY_USERNAME_ENV), environ.get(PUSHGATEWAY_PASSWORD_ENV)
    if not username:
        return None

    def handler(url: str, method: str, timeout: float | None, headers: Any, data: bytes) -> Any:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return handler
