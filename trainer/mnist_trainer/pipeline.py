"""The training run, stage by stage in keras-io's order: fetch, build, train, evaluate, export, report,
then the model card.

``run_training`` reads top to bottom as a run goes; below it, one function per stage in the same order,
each taking and returning plain values. The callbacks of the train stage are built in ``callbacks.py``.
"""

import contextlib
import hashlib
import logging
import os
import sys
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import keras

from mnist_api.env import TrainerConfig
from mnist_api.layout import RunPaths, dataset_cache_dir
from mnist_api.spec import ReleaseCriteriaSpec, Task

from .callbacks import TrainingCallbacks, metrics_pusher, training_callbacks
from .datasets import CLASS_NAMES, DIGIT_CLASSES, Array, FetchPolicy, MnistData, load_dataset
from .distributed import Cluster, fit_across_workers, shard_by_data, start_cluster, strategy_scope
from .errors import DataInvalidError, DataUnavailableError, ReleaseCriteriaError
from .evaluation import Evaluation, evaluate
from .export import export_keras, export_onnx, export_saved_model, export_tflite
from .image_folder import is_archive_url, load_image_folder_dataset
from .inputs import Splits, split_train_validation, steps_per_epoch, to_dataset
from .metrics_push import TrainTestExporter
from .models import NUM_CLASSES, ZOO, build_model, learning_rate_over_run, loss_for, make_optimizer
from .predict import class_names_beside, predict_for_config
from .release import ModelFigures, release_failures
from .run_state import best_value, write_json_atomically
from .safe_stop import SafeStop
from .stop_requests import StopRequests

log = logging.getLogger(__name__)
METRICS_SCHEMA_VERSION = 1


def run_training(config: TrainerConfig, environ: Mapping[str, str], stops: StopRequests) -> dict[str, Any]:
    """Run the spec's task; returns what metrics.json holds. Raises TrainerError subclasses on failure.

    Call it inside ``stops.deferred()``: it stops, raising ``Interrupted``, only at safe points.
    """
    tasks = {Task.TRAIN: train_task, Task.EVALUATE: evaluate_task, Task.PREDICT: predict_task}
    return tasks[config.task](config, environ, stops)


def train_task(config: TrainerConfig, environ: Mapping[str, str], stops: StopRequests) -> dict[str, Any]:
    """Train (from the base model when there is one), evaluate, export, report."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    paths = run_paths(config)
    seed = run_seed(config)
    cluster = start_cluster(config, environ)  # before TensorFlow's first op fixes the devices
    keras.utils.set_random_seed(seed)
    _log_start(config, seed)
    with _timed(timings, "fetch_seconds"):
        images = fetch_data(config, seed, stops)
    with strategy_scope(cluster):
        model = build_compiled_model(
            config,
            num_classes=len(images.class_names),
            steps_per_epoch=steps_per_epoch(len(images.splits.x_train), config.batch_size),
        )
    with _timed(timings, "train_seconds"):
        callbacks = train_model(
            model, images, config, seed=seed, paths=paths, environ=environ, stops=stops, cluster=cluster
        )
    if not cluster.is_chief:
        return worker_report(config, cluster, callbacks, timings, started)
    model = best_checkpoint(model, paths, callbacks, distributed=cluster.strategy is not None)
    stops.check()
    with _timed(timings, "evaluate_seconds"):
        result = evaluate_model(model, images, config.batch_size, stops, callbacks.metrics_push)
    stops.check()
    with _timed(timings, "export_seconds"):
        exported = export_model(model, config.export_formats, paths)
    failures = unmet_release_criteria(config.release_criteria, result, exported)
    timings["total_seconds"] = time.monotonic() - started
    report = write_report(
        config,
        paths,
        model,
        TrainingRecord.of(callbacks),
        result,
        exported=exported,
        failures=failures,
        timings=timings,
        metrics_push=callbacks.metrics_push,
        class_names=images.class_names,
    )
    # Before the release verdict raises: a card is most useful for a model that missed a criterion.
    report = write_model_card(config, paths, report, result, class_names=list(images.class_names))
    if failures:
        raise ReleaseCriteriaError("release criteria not met: " + "; ".join(failures))
    return report


def evaluate_task(config: TrainerConfig, environ: Mapping[str, str], stops: StopRequests) -> dict[str, Any]:
    """gangplank's test.py: the base model on the dataset's test set, pushed as ``<prefix>_test_*`` with
    the weights histogram; release criteria apply as after a training. Nothing is trained or exported."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    paths = run_paths(config)
    seed = run_seed(config)
    keras.utils.set_random_seed(seed)
    log.info(
        "evaluating %s on %s (%s/%s)", config.base_model_path, config.dataset, config.namespace, config.name
    )
    model = load_base_model(config)  # before the download: a missing model fails at once
    with _timed(timings, "fetch_seconds"):
        images = fetch_data(config, seed, stops)
    metrics_push = metrics_pusher(config, environ)
    stops.check()
    with _timed(timings, "evaluate_seconds"):
        result = evaluate_model(model, images, config.batch_size, stops, metrics_push)
    exported = ExportedModel({}, _file_size_mb(config.base_model_path))
    failures = unmet_release_criteria(config.release_criteria, result, exported)
    timings["total_seconds"] = time.monotonic() - started
    report = write_report(
        config,
        paths,
        model,
        None,
        result,
        exported=exported,
        failures=failures,
        timings=timings,
        metrics_push=metrics_push,
        class_names=images.class_names,
    )
    if failures:
        raise ReleaseCriteriaError("release criteria not met: " + "; ".join(failures))
    return report


def predict_task(config: TrainerConfig, environ: Mapping[str, str], stops: StopRequests) -> dict[str, Any]:
    """rmldnn's inference run: every image of spec.predict through the base model, written as
    ``predictions/output_1.h5`` (one dataset per image) and ``predictions/predictions.csv``."""
    started = time.monotonic()
    paths = run_paths(config)
    log.info("predicting with %s (%s/%s)", config.base_model_path, config.namespace, config.name)
    model = load_base_model(config)
    metrics_push = metrics_pusher(config, environ)
    stops.check()
    assert config.base_model_path is not None  # load_base_model refuses a run without one
    # The names the base model was trained with, from the metrics.json its training wrote beside it.
    class_names = class_names_beside(Path(config.base_model_path), int(model.output_shape[-1]))
    predicted = predict_for_config(model, config, paths, class_names=class_names, stops=stops)
    log.info("predicted %d images: %s, %s", predicted, paths.predictions_hdf5, paths.predictions_csv)
    if metrics_push is not None:
        metrics_push.push_predictions(predicted)
    report: dict[str, Any] = {
        "schemaVersion": METRICS_SCHEMA_VERSION,
        "run": {"namespace": config.namespace, "name": config.name, "uid": config.uid},
        "task": str(config.task),
        "config": config.model_dump(mode="json"),
        "classNames": list(class_names),
        "predictions": {
            "images": predicted,
            "hdf5": str(paths.predictions_hdf5),
            "csv": str(paths.predictions_csv),
        },
        "model": {
            "name": model.name,
            "parameters": int(model.count_params()),
            "path": config.base_model_path,
        },
        "metricsPushFailures": metrics_push.push_failures if metrics_push is not None else None,
        "timings": {"total_seconds": time.monotonic() - started},
    }
    write_json_atomically(Path(paths.metrics_json), report)
    return report


def run_paths(config: TrainerConfig) -> RunPaths:
    return RunPaths(PurePosixPath(config.output_dir), config.namespace, config.name, config.uid)


def run_seed(config: TrainerConfig) -> int:
    """The spec's seed, or one derived from the run's uid: random across runs, stable across retries."""
    if config.seed is not None:
        return config.seed
    return int(hashlib.sha256(config.uid.encode()).hexdigest()[:8], 16) % 2**31


# -- fetch -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Images:
    """What the fetch stage hands on: the run's seeded train/validation split, and the test set."""

    splits: Splits
    x_test: Array
    y_test: Array
    class_names: tuple[str, ...] = DIGIT_CLASSES
    """Label ``i`` is ``class_names[i]``; the model has one output per name."""


def fetch_data(config: TrainerConfig, seed: int, stops: StopRequests) -> Images:
    """The dataset from the volume's cache or downloaded and checked, split by the run's seed."""
    with stops.at_once():  # downloads and image decoding may take long, and run no TensorFlow
        data = load_data(config)
    splits = split_train_validation(data, config.validation_split, seed)
    log.info(
        "data: %d train, %d validation, %d test images of %d classes",
        len(splits.x_train),
        len(splits.x_val),
        len(data.x_test),
        len(data.class_names),
    )
    return Images(splits, data.x_test, data.y_test, data.class_names)


def load_data(config: TrainerConfig) -> MnistData:
    """The run's dataset: an image folder when it is mounted (``dataset_dir``) or its URL names an
    archive; the idx or npz files of ``config.dataset`` otherwise."""
    policy = FetchPolicy(attempts=config.download_attempts, backoff_seconds=config.download_backoff_seconds)
    cache = Path(dataset_cache_dir(PurePosixPath(config.data_dir), config.dataset))
    if config.dataset_dir is not None or is_archive_url(config.dataset_url):
        folder = Path(config.dataset_dir) if config.dataset_dir is not None else None
        return load_image_folder_dataset(config.dataset_url, folder, cache, config.dataset_sha256, policy)
    return load_dataset(config.dataset, config.dataset_url, cache, config.dataset_sha256, policy)


# -- build -------------------------------------------------------------------------------------------
def build_compiled_model(
    config: TrainerConfig, *, steps_per_epoch: int, num_classes: int = NUM_CLASSES
) -> keras.Model:
    """The spec's model from the zoo with its loss, for ``num_classes`` classes, or the base model
    (fine-tuning: its weights and loss, trained on), compiled with the spec's optimizer and learning rate
    (scheduled over the run's ``config.epochs`` epochs of ``steps_per_epoch`` steps)."""
    if config.base_model_path is not None:
        model = load_base_model(config)
        # The loss it was trained with, saved in the file; the zoo's for its architecture otherwise.
        loss = model.loss or loss_for(model.name if model.name in ZOO else "convnet")
        log.info("fine-tuning %s for %d more epochs", config.base_model_path, config.epochs)
    else:
        model = build_model(config.model, num_classes)
        loss = loss_for(config.model)
    model.compile(
        optimizer=make_optimizer(
            config.optimizer,
            learning_rate_over_run(
                config.learning_rate,
                config.learning_rate_schedule,
                epochs=config.epochs,
                steps_per_epoch=steps_per_epoch,
            ),
        ),
        loss=loss,
        # Keras picks sparse categorical accuracy from the shapes: argmax of any per-class scores.
        metrics=["accuracy"],
    )
    log.info("model: %s, %s parameters", model.name, f"{model.count_params():,}")
    return model


def load_base_model(config: TrainerConfig) -> keras.Model:
    """The spec's base model, read from its volume; a missing or unreadable file is a readable error."""
    path = config.base_model_path
    if path is None:
        raise DataUnavailableError(f"task {config.task} needs spec.baseModel")
    if not Path(path).is_file():
        raise DataUnavailableError(
            f"base model {path} does not exist: the named training must have Succeeded with keras in "
            "output.formats, or baseModel.path must name a .keras file on baseModel.claimName"
        )
    try:
        model = keras.models.load_model(path)
    except (ValueError, OSError, TypeError) as error:
        raise DataInvalidError(f"base model {path} is not a Keras model file: {error}") from None
    log.info("base model %s: %s, %s parameters", path, model.name, f"{model.count_params():,}")
    return model


# -- train -------------------------------------------------------------------------------------------
def train_model(
    model: keras.Model,
    images: Images,
    config: TrainerConfig,
    *,
    seed: int,
    paths: RunPaths,
    environ: Mapping[str, str],
    stops: StopRequests,
    cluster: Cluster | None = None,
) -> TrainingCallbacks:
    """Fit ``model`` in place, resuming after an earlier attempt's last finished epoch. Returns the
    callbacks: they hold what later stages use (history, throughput, the metrics pusher).

    ``cluster`` is where it trains (``distributed.start_cluster``); None is one device. ``model`` was
    built and compiled in its strategy's scope."""
    cluster = cluster or Cluster(None)
    splits = images.splits
    train = to_dataset(splits.x_train, splits.y_train, config.batch_size, shuffle_seed=seed)
    validation = (
        to_dataset(splits.x_val, splits.y_val, config.batch_size, shuffle_seed=None)
        if len(splits.x_val)
        else None
    )
    interactive = sys.stdout.isatty()
    callbacks = training_callbacks(
        config,
        paths,
        stops,
        environ,
        train_images=len(splits.x_train),
        validating=validation is not None,
        interactive=interactive,
        chief=cluster.is_chief,
    )
    if cluster.across_workers:
        fit_across_workers(
            model,
            cluster,
            shard_by_data(train),
            shard_by_data(validation) if validation is not None else None,
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch(len(splits.x_train), config.batch_size),
            validation_steps=steps_per_epoch(len(splits.x_val), config.batch_size),
            callbacks=callbacks.in_order,
        )
        return callbacks
    model.fit(
        train,
        validation_data=validation,
        epochs=config.epochs,
        callbacks=callbacks.in_order,
        shuffle=False,  # the tf.data pipeline shuffles, seeded
        verbose=1 if interactive else 0,
    )
    return callbacks


def best_checkpoint(
    model: keras.Model, paths: RunPaths, callbacks: TrainingCallbacks, *, distributed: bool = False
) -> keras.Model:
    """The best epoch's model from its checkpoint (this attempt's or an earlier one's), not the last
    epoch's; ``model`` itself when there is no checkpoint.

    A model trained under a strategy (``distributed``) is never evaluated or exported as it is: its
    variables belong to the strategy, and under MultiWorkerMirroredStrategy every use of them would
    wait for the other workers, which have finished. The checkpoint is a plain model; without one, the
    last epoch's weights are saved and read back as one."""
    if not Path(paths.best_checkpoint).exists():
        return undistributed(model, paths) if distributed else model
    best = keras.models.load_model(paths.best_checkpoint)
    monitor = callbacks.monitor
    log.info(
        "evaluating the best checkpoint (%s %.4f)", monitor, best_value(callbacks.run_state.history, monitor)
    )
    return best


def undistributed(model: keras.Model, paths: RunPaths) -> keras.Model:
    """``model``'s architecture, weights and compile settings outside any strategy."""
    copy = Path(paths.run_dir) / ".last-epoch.keras"
    copy.parent.mkdir(parents=True, exist_ok=True)
    model.save(copy)
    try:
        return keras.models.load_model(copy)
    finally:
        copy.unlink(missing_ok=True)


def worker_report(
    config: TrainerConfig,
    cluster: Cluster,
    callbacks: TrainingCallbacks,
    timings: dict[str, float],
    started: float,
) -> dict[str, Any]:
    """What a worker other than the chief returns: it evaluates, exports and writes nothing (the chief
    does, from the same weights); its log's last line says so."""
    timings["total_seconds"] = time.monotonic() - started
    log.info("worker %d finished training; worker 0 evaluates, exports and reports", cluster.index)
    return {
        "schemaVersion": METRICS_SCHEMA_VERSION,
        "run": {"namespace": config.namespace, "name": config.name, "uid": config.uid},
        "task": str(config.task),
        "worker": cluster.index,
        "imagesPerSecond": callbacks.progress.images_per_second,
        "timings": timings,
    }


# -- evaluate ----------------------------------------------------------------------------------------
def evaluate_model(
    model: keras.Model,
    images: Images,
    batch_size: int,
    stops: StopRequests,
    metrics_push: TrainTestExporter | None,
) -> Evaluation:
    """Test loss and accuracy, per-class accuracy and latency; pushed too when there is a Pushgateway."""
    test = to_dataset(images.x_test, images.y_test, batch_size, shuffle_seed=None)
    result = evaluate(
        model,
        test,
        images.x_test,
        images.y_test,
        [SafeStop(stops), *([metrics_push] if metrics_push else [])],
    )
    if metrics_push is not None:
        metrics_push.push_class_accuracy(result.per_class_accuracy, images.class_names)
    log.info(
        "test: loss %.4f  accuracy %.4f  (%.1fs; worst class %d at %.4f; %.2f ms per image)",
        result.loss,
        result.accuracy,
        result.seconds,
        *min(result.per_class_accuracy.items(), key=lambda item: item[1]),
        result.inference_time_ms,
    )
    return result


# -- export ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportedModel:
    """Where the export stage wrote the model, by format, and the size of ``model.keras``."""

    files: dict[str, str]
    size_mb: float | None  # None when the formats leave out "keras"


def export_model(model: keras.Model, formats: Collection[str], paths: RunPaths) -> ExportedModel:
    """The model in each of the spec's export formats, at the run's paths. ``files`` maps each format to
    what a consumer loads: for savedmodel, the version folder ``saved_model/1``."""
    files: dict[str, str] = {}
    if "keras" in formats:
        files["keras"] = str(export_keras(model, Path(paths.model_keras)))
    if "savedmodel" in formats:
        files["savedmodel"] = str(export_saved_model(model, Path(paths.saved_model_version)))
    if "onnx" in formats:
        files["onnx"] = str(export_onnx(model, Path(paths.onnx)))
    if "tflite" in formats:
        files["tflite"] = str(export_tflite(model, Path(paths.tflite)))
    log.info("model exported: %s", ", ".join(files.values()))
    size_mb = os.path.getsize(files["keras"]) / 1e6 if "keras" in files else None
    return ExportedModel(files, size_mb)


# -- report ------------------------------------------------------------------------------------------
def unmet_release_criteria(
    criteria: ReleaseCriteriaSpec, result: Evaluation, exported: ExportedModel
) -> list[str]:
    """Each release criterion the model fails, as a sentence; empty when it may be released."""
    figures = ModelFigures(
        result.accuracy, result.per_class_accuracy, exported.size_mb, result.inference_time_ms
    )
    return release_failures(criteria, figures)


@dataclass(frozen=True)
class TrainingRecord:
    """What the train stage leaves for the report; an evaluate run has none."""

    history: list[dict[str, float]]
    images_per_second: list[float]  # per epoch of this attempt
    seconds: float

    @classmethod
    def of(cls, callbacks: TrainingCallbacks) -> "TrainingRecord":
        return cls(
            callbacks.run_state.history,
            callbacks.progress.images_per_second,
            callbacks.run_state.elapsed_seconds,
        )


def write_report(
    config: TrainerConfig,
    paths: RunPaths,
    model: keras.Model,
    training: TrainingRecord | None,
    result: Evaluation,
    *,
    exported: ExportedModel,
    failures: list[str],
    timings: dict[str, float],
    metrics_push: TrainTestExporter | None,
    class_names: Sequence[str] = DIGIT_CLASSES,
) -> dict[str, Any]:
    """Write metrics.json, the run's one record of what it did, and return what it holds."""
    histogram = metrics_push.last_weight_histogram if metrics_push is not None else None
    report: dict[str, Any] = {
        "schemaVersion": METRICS_SCHEMA_VERSION,
        "run": {"namespace": config.namespace, "name": config.name, "uid": config.uid},
        "task": str(config.task),
        "config": config.model_dump(mode="json"),
        "baseModel": config.base_model_path,
        "history": training.history if training else [],
        "epochs": len(training.history) if training else 0,
        # perClassAccuracy's keys are label indexes, as the metrics' class label; this maps them to names.
        "classNames": list(class_names),
        "test": {
            "loss": result.loss,
            "accuracy": result.accuracy,
            "elapsedSeconds": result.seconds,
            "perClassAccuracy": {str(k): v for k, v in result.per_class_accuracy.items()},
        },
        "model": {
            "name": model.name,
            "parameters": int(model.count_params()),
            "sizeMb": exported.size_mb,
            "inferenceTimeMs": result.inference_time_ms,
            "exports": exported.files,
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
        "imagesPerSecond": training.images_per_second if training else None,
        "metricsPushFailures": metrics_push.push_failures if metrics_push is not None else None,
        "release": {"passed": not failures, "failures": failures},
        "timings": timings,
        "trainingSeconds": training.seconds if training else None,
    }
    write_json_atomically(Path(paths.metrics_json), report)
    log.info("metrics written to %s", paths.metrics_json)
    return report


# -- model card --------------------------------------------------------------------------------------
def write_model_card(
    config: TrainerConfig,
    paths: RunPaths,
    report: dict[str, Any],
    result: Evaluation,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """model_card/: the Markdown card and its plots, unless ``output.modelCard`` is false (then nothing is
    written). Records where they went, or why they are missing, as metrics.json's ``modelCard``, and
    returns the report with it. ``class_names`` are the dataset's (``Images.class_names``); when None,
    the built-in dataset's.

    A card that cannot be drawn only warns: the model is exported and metrics.json written by now, and
    the card merely describes them. Failing the run instead (exit 1, which the Job retries) would retrain
    nothing, draw again, most likely fail the same way, and leave a good model under a Failed training.
    """
    if not config.model_card:
        return report
    try:
        # Imported here, not at the top: with output.modelCard false a run never loads matplotlib (whose
        # first import in a fresh pod builds its font cache).
        from .model_card import write_card

        files = write_card(
            report,
            result.confusion_matrix,
            Path(paths.run_dir),
            class_names=class_names or list(CLASS_NAMES.get(config.dataset, DIGIT_CLASSES)),
        )
    except Exception as error:  # any drawing or writing error: see the docstring
        log.warning("model card not written: %s: %s", type(error).__name__, error, exc_info=True)
        card: dict[str, Any] = {"error": f"{type(error).__name__}: {error}"}
    else:
        log.info("model card written to %s (plots in %s)", files.card, paths.plots_dir)
        card = {"file": str(files.card), "plots": [str(p) for p in files.plots]}
    report = {**report, "modelCard": card}
    write_json_atomically(Path(paths.metrics_json), report)
    return report


# -- helpers -----------------------------------------------------------------------------------------
def _file_size_mb(path: str | None) -> float | None:
    return os.path.getsize(path) / 1e6 if path and os.path.isfile(path) else None


def _log_start(config: TrainerConfig, seed: int) -> None:
    log.info(
        "training %s/%s (uid %s): %s on %s, %d epochs, batch %d, %s lr %g (%s), seed %d",
        config.namespace,
        config.name,
        config.uid,
        config.model,
        config.dataset,
        config.epochs,
        config.batch_size,
        config.optimizer,
        config.learning_rate,
        config.learning_rate_schedule.name,
        seed,
    )


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Record the seconds the ``with`` block took as ``timings[key]`` (metrics.json's ``timings``)."""
    started = time.monotonic()
    yield
    timings[key] = time.monotonic() - started
