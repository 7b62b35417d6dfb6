"""The training run, stage by stage: fetch, build, train, evaluate, export, report."""

import hashlib
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import keras
from prometheus_client.exposition import basic_auth_handler

from mnist_api.env import PUSHGATEWAY_PASSWORD_ENV, PUSHGATEWAY_USERNAME_ENV, TrainerConfig
from mnist_api.layout import RunPaths, dataset_cache_dir
from mnist_api.metrics import grouping_key

from .datasets import FetchPolicy, load_dataset
from .errors import ReleaseCriteriaError
from .evaluation import Evaluation, evaluate
from .export import export_keras, export_saved_model
from .inputs import split_train_validation, to_dataset
from .metrics_push import Handler, TrainTestExporter
from .models import build_model, make_optimizer
from .progress import ProgressLog
from .release import ModelFigures, release_failures
from .run_state import RunState, best_value, write_json_atomically
from .safe_stop import SafeStop
from .stop_requests import StopRequests

log = logging.getLogger(__name__)
METRICS_SCHEMA_VERSION = 1


def run_seed(config: TrainerConfig) -> int:
    """The spec's seed, or one derived from the run's uid: random across runs, stable across retries."""
    if config.seed is not None:
        return config.seed
    return int(hashlib.sha256(config.uid.encode()).hexdigest()[:8], 16) % 2**31


def pushgateway_handler(environ: Mapping[str, str]) -> Handler | None:
    username, password = environ.get(PUSHGATEWAY_USERNAME_ENV), environ.get(PUSHGATEWAY_PASSWORD_ENV)
    if not username:
        return None

    def handler(url: str, method: str, timeout: float | None, headers: Any, data: bytes) -> Any:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return handler


def run_training(config: TrainerConfig, environ: Mapping[str, str], stops: StopRequests) -> dict[str, Any]:
    """Run every stage; returns what metrics.json holds. Raises TrainerError subclasses on failure.

    Call it inside ``stops.deferred()``: it stops, raising ``Interrupted``, only at safe points.
    """
    started = time.monotonic()
    timings: dict[str, float] = {}
    paths = RunPaths(PurePosixPath(config.output_dir), config.namespace, config.name, config.uid)
    backup_dir = Path(paths.backup_dir)
    seed = run_seed(config)
    keras.utils.set_random_seed(seed)
    log.info(
        "training %s/%s (uid %s): %s on %s, %d epochs, batch %d, %s lr %g, seed %d",
        config.namespace,
        config.name,
        config.uid,
        config.model,
        config.dataset,
        config.epochs,
        config.batch_size,
        config.optimizer,
        config.learning_rate,
        seed,
    )

    # -- fetch ---------------------------------------------------------------------------------------
    stage = time.monotonic()
    policy = FetchPolicy(attempts=config.download_attempts, backoff_seconds=config.download_backoff_seconds)
    cache = Path(dataset_cache_dir(PurePosixPath(config.data_dir), config.dataset))
    with stops.at_once():  # downloads may wait on the network for long, and run no TensorFlow
        data = load_dataset(config.dataset, config.dataset_url, cache, config.dataset_sha256, policy)
    splits = split_train_validation(data, config.validation_split, seed)
    timings["fetch_seconds"] = time.monotonic() - stage
    log.info(
        "data: %d train, %d validation, %d test images",
        len(splits.x_train),
        len(splits.x_val),
        len(data.x_test),
    )

    # -- build ---------------------------------------------------------------------------------------
    model = build_model(config.model)
    model.compile(
        optimizer=make_optimizer(config.optimizer, config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    log.info("model: %s, %s parameters", model.name, f"{model.count_params():,}")

    # -- train ---------------------------------------------------------------------------------------
    stage = time.monotonic()
    train = to_dataset(splits.x_train, splits.y_train, config.batch_size, shuffle_seed=seed)
    validation = (
        to_dataset(splits.x_val, splits.y_val, config.batch_size, shuffle_seed=None)
        if len(splits.x_val)
        else None
    )
    run_state = RunState(backup_dir)
    previous = run_state.load()
    monitor = "val_loss" if validation is not None else "loss"
    exporter = _exporter(config, environ)
    if exporter is not None:
        exporter.resume_elapsed(run_state.elapsed_seconds)
    steps = -(-len(splits.x_train) // config.batch_size)
    interactive = sys.stdout.isatty()
    progress = ProgressLog(
        config.epochs,
        len(splits.x_train),
        heartbeat_seconds=float("inf") if interactive else config.heartbeat_seconds,
        steps_per_epoch=steps,
    )
    Path(paths.best_checkpoint).parent.mkdir(parents=True, exist_ok=True)
    callbacks: list[Any] = [
        SafeStop(stops),
        run_state,
        keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True, delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(
            str(paths.best_checkpoint),
            monitor=monitor,
            save_best_only=True,
            initial_value_threshold=best_value(previous, monitor),
        ),
        progress,
    ]
    if config.early_stopping is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=config.early_stopping.monitor,
                patience=config.early_stopping.patience,
                min_delta=config.early_stopping.min_delta,
                restore_best_weights=True,
                verbose=0,
            )
        )
    if exporter is not None:
        callbacks.append(exporter)
    model.fit(
        train,
        validation_data=validation,
        epochs=config.epochs,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline shuffles, seeded
        verbose=1 if interactive else 0,
    )
    timings["train_seconds"] = time.monotonic() - stage
    if Path(paths.best_checkpoint).exists():
        model = keras.models.load_model(paths.best_checkpoint)
        log.info("evaluating the best checkpoint (%s %.4f)", monitor, best_value(run_state.history, monitor))

    # -- evaluate ------------------------------------------------------------------------------------
    stops.check()
    stage = time.monotonic()
    test = to_dataset(data.x_test, data.y_test, config.batch_size, shuffle_seed=None)
    result = evaluate(
        model, test, data.x_test, data.y_test, [SafeStop(stops), *([exporter] if exporter else [])]
    )
    if exporter is not None:
        exporter.push_class_accuracy(result.per_class_accuracy)
    timings["evaluate_seconds"] = time.monotonic() - stage
    log.info(
        "test: loss %.4f  accuracy %.4f  (%.1fs; worst class %d at %.4f; %.2f ms per image)",
        result.loss,
        result.accuracy,
        result.seconds,
        *min(result.per_class_accuracy.items(), key=lambda item: item[1]),
        result.inference_time_ms,
    )

    # -- export --------------------------------------------------------------------------------------
    stops.check()
    stage = time.monotonic()
    exported: dict[str, str] = {}
    if "keras" in config.export_formats:
        exported["keras"] = str(export_keras(model, Path(paths.model_keras)))
    if "savedmodel" in config.export_formats:
        exported["savedmodel"] = str(export_saved_model(model, Path(paths.saved_model)))
    timings["export_seconds"] = time.monotonic() - stage
    log.info("model exported: %s", ", ".join(exported.values()))

    # -- report --------------------------------------------------------------------------------------
    size_mb = os.path.getsize(exported["keras"]) / 1e6 if "keras" in exported else None
    failures = release_failures(
        config.release_criteria,
        ModelFigures(result.accuracy, result.per_class_accuracy, size_mb, result.inference_time_ms),
    )
    timings["total_seconds"] = time.monotonic() - started
    report = _report(
        config=config,
        model=model,
        run_state=run_state,
        progress=progress,
        result=result,
        exporter=exporter,
        exported=exported,
        size_mb=size_mb,
        failures=failures,
        timings=timings,
    )
    write_json_atomically(Path(paths.metrics_json), report)
    log.info("metrics written to %s", paths.metrics_json)
    if failures:
        raise ReleaseCriteriaError("release criteria not met: " + "; ".join(failures))
    return report


def _exporter(config: TrainerConfig, environ: Mapping[str, str]) -> TrainTestExporter | None:
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


def _report(
    *,
    config: TrainerConfig,
    model: keras.Model,
    run_state: RunState,
    progress: ProgressLog,
    result: Evaluation,
    exporter: TrainTestExporter | None,
    exported: dict[str, str],
    size_mb: float | None,
    failures: list[str],
    timings: dict[str, float],
) -> dict[str, Any]:
    histogram = exporter.last_weight_histogram if exporter is not None else None
    return {
        "schemaVersion": METRICS_SCHEMA_VERSION,
        "run": {"namespace": config.namespace, "name": config.name, "uid": config.uid},
        "config": config.model_dump(mode="json"),
        "history": run_state.history,
        "epochs": len(run_state.history),
        "test": {
            "loss": result.loss,
            "accuracy": result.accuracy,
            "elapsedSeconds": result.seconds,
            "perClassAccuracy": {str(k): v for k, v in result.per_class_accuracy.items()},
        },
        "model": {
            "name": model.name,
            "parameters": int(model.count_params()),
            "sizeMb": size_mb,
            "inferenceTimeMs": result.inference_time_ms,
            "exports": exported,
        },
        "weights": None
        if histogram is None
        else {
            "count": histogram.count,
            "sum": histogram.total,
            "mean": histogram.mean,
            "std": histogram.std,
            "min": histogram.minimum,
            "max": histogram.maximum,
        },
        "imagesPerSecond": progress.images_per_second,
        "metricsPushFailures": exporter.push_failures if exporter is not None else None,
        "release": {"passed": not failures, "failures": failures},
        "timings": timings,
        "trainingSeconds": run_state.elapsed_seconds,
    }
