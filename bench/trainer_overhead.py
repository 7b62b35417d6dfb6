"""Trainer overhead: the trainer's fit (every callback on) against bare ``model.fit``, plus batch sizes,
input pipelines and XLA, all in one process on real Fashion-MNIST.

Four sections, each judged by RATIOS against a baseline measured in the same process, repetitions
interleaved (the order rotates every round), reported as the median of per-round paired ratios:

1. **overhead**: ``fit`` with the callbacks ``pipeline.run_training`` uses, built by the trainer's own
   ``callbacks.training_callbacks`` (SafeStop, RunState, the backup with its best-model checkpoint,
   ProgressLog, TensorBoard, TrainTestExporter pushing to a real Pushgateway after every epoch, weights
   histogram on) against the same ``fit`` with no callbacks: same model, data, validation set and batch
   (spec defaults). Every repetition gets fresh callbacks and run directories, as a new run would; the
   first epoch of each ``fit`` is therefore a fresh run's first epoch, in which the best-model checkpoint
   is always written (the worst case). The time spent inside each callback's hooks is recorded too, which says where any
   cost comes from and gives a noise-robust second reading of the ratio.
   Target: >= 0.98 of bare Keras' images/s, for every model of the zoo (``--model all``).
2. **batch size**: images/s of batch 64, 128 and 256 through the trainer's ``inputs.to_dataset``.
3. **input pipeline** at the spec's batch size: numpy arrays passed to ``fit`` (uint8 as loaded, and float32 as the
   seeds pass them), ``tf.data`` from_tensor_slices + shuffle + batch without and with cache/prefetch,
   and the trainer's own ``inputs.to_dataset`` (the baseline of this section).
4. **XLA**: ``jit_compile=True`` against the trainer's default (Keras resolves "auto" to False on a
   CPU-only host).

``--model`` names one model of the zoo, several (comma-separated) or ``all``; each gets every section,
and the results file then holds one set of sections per model under ``models``, with a summary of the
overhead ratios. All models are warmed by one untimed epoch first: the first epoch traces the graph (and, for XLA,
compiles it), which a run pays once; sections 2-4 report its time separately. Sections 2-4 also report
two cross-checks of the median paired wall-time ratio: the ratio of each variant's fastest epoch (other
work only ever adds time) and CPU-time ratios (this process, all threads), which other work on the
machine disturbs far less than wall time.

    python -m bench.trainer_overhead [--overhead-images 12000] [--images 6000] [--rounds 5] \
        [--overhead-rounds N] [--epochs 1] [--model convnet|mlp|capsnet|all|a,b] \
        [--sections overhead,batch,pipeline,xla] [--batch-sizes 64,128,256] [--pipelines all]
"""

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

# First: _common sets TensorFlow's logging and device variables before TensorFlow is imported.
from bench import _common as common

# isort: split
import keras
import numpy as np
import tensorflow as tf

from mnist_api.env import TrainerConfig
from mnist_api.layout import RunPaths
from mnist_api.metrics import HISTOGRAM_WEIGHT_BUCKETS_0_3
from mnist_api.spec import MnistTrainingSpec
from mnist_trainer.callbacks import training_callbacks
from mnist_trainer.datasets import MnistData
from mnist_trainer.inputs import Splits, split_train_validation, to_dataset
from mnist_trainer.metrics_push import TrainTestExporter
from mnist_trainer.models import ZOO, build_model, loss_for, make_optimizer
from mnist_trainer.stop_requests import StopRequests
from tests.support.servers import start_pushgateway

SEED = 42
_SPEC = MnistTrainingSpec()
DEFAULT_BATCH = _SPEC.batch_size


class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]
    """Wall and CPU seconds of each epoch, on_epoch_begin to on_epoch_end. Only epoch hooks: a batch hook
    would run at every step and slow the very thing it measures.

    CPU time (this process, all threads) is the cross-check: other work on a shared machine stretches
    wall time a lot more than it changes the CPU time the training itself needs."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self._started = self._cpu_started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started, self._cpu_started = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)
        self.cpu_seconds.append(time.process_time() - self._cpu_started)


MODEL = "convnet"  # spec default; --model picks others from the zoo, one after the other


def compiled_model(jit_compile: bool | str = "auto") -> keras.Model:
    """The spec-default model (or --model) and optimizer (adam, lr 0.001), compiled as the trainer does."""
    keras.utils.set_random_seed(SEED)  # every variant starts from the same weights
    model = build_model(MODEL)
    model.compile(
        optimizer=make_optimizer("adam", 0.001),
        loss=loss_for(MODEL),  # the zoo's: the capsule network's margin loss, cross-entropy otherwise
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


# -- 1. overhead ---------------------------------------------------------------------------------------
HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
)
PER_RUN_HOOKS = ("on_train_begin", "on_train_end")


def instrument(callback: keras.callbacks.Callback, ledger: dict[str, float]) -> None:
    """Add the seconds spent inside each of the callback's own hooks to ``ledger[hook]``.

    Only hooks the callback overrides are wrapped: a default hook is a no-op that Keras tells by a marker
    on the method (and on backends other than TensorFlow, one overridden batch-end hook turns off the
    asynchronous dispatch of every batch-end hook), so wrapping it would change what is measured. The
    wrapper costs about a microsecond per call.
    """
    for hook in HOOKS:
        method = getattr(callback, hook)
        if getattr(method, "_is_default", False):
            continue

        def timed(*args: Any, _method: Callable[..., Any] = method, _hook: str = hook, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                ledger[_hook] = ledger.get(_hook, 0.0) + time.perf_counter() - started

        setattr(callback, hook, timed)


class SyncBatchHook(keras.callbacks.Callback):  # type: ignore[misc]
    """A no-op ``on_train_batch_end``: what a batch hook costs by itself, one Python call per step. With
    the TensorFlow backend Keras runs batch-end hooks on the training thread whether or not any callback
    overrides them (``IS_THREAD_SAFE`` is False there: no asynchronous dispatch), so this is all it costs.
    Of the trainer's callbacks only ProgressLog (the heartbeat) has a training batch hook."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass


class EpochWindow:
    """Times each epoch from the first callback's ``on_epoch_begin`` to the last one's ``on_epoch_end``,
    so the window holds the training steps, the validation pass and every callback's epoch work, but not
    ``fit``'s set-up and tear-down (iterator clean-up there stalls for up to half a second at random on
    this machine, for bare and trainer alike: noise, not cost). Epoch hooks only, so no step pays for the
    measurement."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._started = 0.0
        window = self

        class Opening(keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                window._started = time.perf_counter()

        class Closing(keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                window.seconds.append(time.perf_counter() - window._started)

        self._opening, self._closing = Opening(), Closing()

    def around(self, callbacks: list[Any]) -> list[Any]:
        return [self._opening, *callbacks, self._closing]


@dataclass
class TrainerCallbacks:
    """Builds, per repetition, the callbacks ``pipeline.run_training`` fits with, by the trainer's own
    ``training_callbacks``, and instruments each of them."""

    config: TrainerConfig
    train_images: int
    root: Path
    runs: int = 0
    ledgers: list[dict[str, dict[str, float]]] = field(default_factory=list)
    push_failures: int = 0
    _pushers: list[TrainTestExporter] = field(default_factory=list)

    def build(self) -> list[Any]:
        # A fresh run directory each time: BackupAndRestore would otherwise restore the previous
        # repetition's finished state and train no epoch at all.
        self.runs += 1
        paths = RunPaths(PurePosixPath(self.root), "bench", f"run-{self.runs}", f"uid-{self.runs}")
        built = training_callbacks(
            self.config,
            paths,
            StopRequests(),
            {},
            train_images=self.train_images,
            validating=True,
            interactive=False,  # stdout is not a TTY in a pod
        )
        assert built.metrics_push is not None
        callbacks = {type(callback).__name__: callback for callback in built.in_order}
        assert len(callbacks) == len(built.in_order), "two callbacks of one class: name them apart"
        ledger: dict[str, dict[str, float]] = {name: {} for name in callbacks}
        for name, callback in callbacks.items():
            instrument(callback, ledger[name])
        self.ledgers.append(ledger)
        self._pushers.append(built.metrics_push)
        return built.in_order

    @property
    def callback_names(self) -> list[str]:
        """The trainer's callbacks by class name, in the order ``fit`` calls them."""
        return list(self.ledgers[0]) if self.ledgers else []

    def collect_failures(self) -> None:
        self.push_failures = sum(pusher.push_failures for pusher in self._pushers)


def trainer_config(root: str, epochs: int, pushgateway_url: str) -> TrainerConfig:
    """The spec defaults (convnet, adam, its learning rate and schedule, its batch size, validation 0.1,
    the seeds' 0.3 histogram buckets) as the operator would hand them to the trainer."""
    return TrainerConfig(
        namespace="bench",
        name="overhead",
        uid="uid",
        dataset="fashion-mnist",
        data_dir=root,
        output_dir=root,
        model=MODEL,
        epochs=epochs,
        batch_size=DEFAULT_BATCH,
        learning_rate=_SPEC.learning_rate,
        learning_rate_schedule=_SPEC.learning_rate_schedule,
        optimizer=_SPEC.optimizer.value,
        validation_split=0.1,
        export_formats=["keras"],
        pushgateway_url=pushgateway_url,
        histogram_buckets=list(HISTOGRAM_WEIGHT_BUCKETS_0_3),
    )


def log_like_the_trainer(path: Path) -> logging.Handler:
    """The trainer logs INFO lines (the epoch line, heartbeats) with this format; in a pod they go to
    stdout. Here they go to a file, so formatting and writing them is paid as in the trainer."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%SZ"))
    trainer_log = logging.getLogger("mnist_trainer")
    trainer_log.setLevel(logging.INFO)
    trainer_log.addHandler(handler)
    return handler


def run_overhead(splits: Splits, args: argparse.Namespace, pushgateway_url: str) -> dict[str, Any]:
    common.section(
        f"1. trainer overhead: all callbacks vs bare model.fit ({len(splits.x_train):,} train + "
        f"{len(splits.x_val):,} validation images, batch {DEFAULT_BATCH}, {args.epochs} epochs per fit)"
    )
    train = to_dataset(splits.x_train, splits.y_train, DEFAULT_BATCH, shuffle_seed=SEED)
    validation = to_dataset(splits.x_val, splits.y_val, DEFAULT_BATCH, shuffle_seed=None)
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as root:
        handler = log_like_the_trainer(Path(root) / "trainer.log")
        factory = TrainerCallbacks(
            trainer_config(root, args.epochs, pushgateway_url), len(splits.x_train), Path(root)
        )
        # One model for every variant: its graph is traced once (the warm-up fit below, not timed), and
        # callbacks do not change the traced train step, so no variant pays tracing.
        model = compiled_model()
        model.fit(train, validation_data=validation, epochs=1, verbose=0, shuffle=False)

        variants: dict[str, Callable[[], list[Any]]] = {
            "bare model.fit": list,
            "trainer (all callbacks)": factory.build,
            "bare + no-op batch hook": lambda: [SyncBatchHook()],
        }
        wall: dict[str, list[float]] = {name: [] for name in variants}
        for round_index in range(args.overhead_rounds):
            for name in common.rotated(list(variants), round_index):
                window = EpochWindow()
                model.fit(
                    train,
                    validation_data=validation,
                    epochs=args.epochs,
                    callbacks=window.around(variants[name]()),
                    shuffle=False,
                    verbose=0,
                )
                wall[name].append(sum(window.seconds))
            print(f"  round {round_index + 1}/{args.overhead_rounds} done", flush=True)
        factory.collect_failures()
        logging.getLogger("mnist_trainer").removeHandler(handler)
        handler.close()

    images = len(splits.x_train) * args.epochs
    rows, results = [], {}
    for name in variants:
        # speed ratio = baseline seconds / candidate seconds of the same round; >= 0.98 is the target
        speed = [1 / r for r in common.paired_ratios(wall[name], wall["bare model.fit"])]
        extra = [(t - b) / args.epochs for t, b in zip(wall[name], wall["bare model.fit"], strict=True)]
        results[name] = {
            "epochs_wall_seconds_per_fit": wall[name],
            "images_per_second_median": images / common.median(wall[name]),
            "speed_ratio_vs_bare_median": common.median(speed),
            "speed_ratios_vs_bare": speed,
            "extra_wall_seconds_per_epoch_median": common.median(extra),
        }
        rows.append(
            [
                name,
                images / common.median(wall[name]),
                common.median(speed),
                min(speed),
                max(speed),
                1000 * common.median(extra),
            ]
        )
    headers = ["variant", "images/s", "speed vs bare", "min", "max", "extra ms per epoch"]
    print(common.table(headers, rows))

    # Where the time goes: seconds inside each callback's own hooks, per epoch and per fit (median over
    # repetitions), as a share of a bare epoch of this run.
    bare_epoch = common.median(wall["bare model.fit"]) / args.epochs
    attribution, attribution_rows = {}, []
    for name in factory.callback_names:
        per_epoch = [
            sum(v for h, v in ledger[name].items() if h not in PER_RUN_HOOKS) / args.epochs
            for ledger in factory.ledgers
        ]
        per_fit = [
            sum(v for h, v in ledger[name].items() if h in PER_RUN_HOOKS) for ledger in factory.ledgers
        ]
        hooks = sorted({h for ledger in factory.ledgers for h in ledger[name]})
        attribution[name] = {
            "hooks": hooks,
            "seconds_per_epoch_median": common.median(per_epoch),
            "seconds_per_fit_begin_end_median": common.median(per_fit),
            "share_of_bare_epoch": common.median(per_epoch) / bare_epoch,
        }
        attribution_rows.append(
            [
                name,
                ", ".join(h.removeprefix("on_") for h in hooks),
                common.median(per_epoch) * 1000,
                common.median(per_fit) * 1000,
                100 * common.median(per_epoch) / bare_epoch,
            ]
        )
    attribution_headers = [
        "callback",
        "hooks it overrides",
        "ms per epoch",
        "ms per fit (begin+end)",
        "% of bare epoch",
    ]
    print(common.table(attribution_headers, attribution_rows))

    # Two readings of the target. (a) measured: the paired wall-time ratio above (noisy on a shared
    # machine). (b) from hook time: a bare epoch against a bare epoch plus the seconds the trainer's
    # callbacks spent in their hooks, both measured in this run; robust, but blind to indirect costs (the
    # "no-op batch hook" row measures the main one). The callbacks' cost is per epoch (pushes, checkpoint
    # and backup writes), not per image, so a small epoch overstates it: (b) is also projected onto a
    # full-size epoch of 54,000 training images using bare fit's own speed in this run.
    hook_seconds = sum(entry["seconds_per_epoch_median"] for entry in attribution.values())
    hook_ratio = bare_epoch / (bare_epoch + hook_seconds)
    full_epoch = bare_epoch * 54_000 / len(splits.x_train)
    projected = full_epoch / (full_epoch + hook_seconds)
    measured = results["trainer (all callbacks)"]["speed_ratio_vs_bare_median"]
    measured_extra = max(results["trainer (all callbacks)"]["extra_wall_seconds_per_epoch_median"], 0.0)
    projected_measured = full_epoch / (full_epoch + measured_extra)
    print(
        f"  trainer vs bare, {len(splits.x_train):,}-image epochs: measured {measured:.3f}, from hook time "
        f"{hook_ratio:.3f} ({1000 * hook_seconds:.0f} ms of callbacks per {bare_epoch:.2f}s epoch)\n"
        f"  projected onto a full 54,000-image epoch ({full_epoch:.1f}s bare): {projected:.3f} from hook time, "
        f"{projected_measured:.3f} from the measured extra {1000 * measured_extra:.0f} ms per epoch "
        f"(target >= 0.98); failed pushes: {factory.push_failures}"
    )
    return {
        "train_images": len(splits.x_train),
        "validation_images": len(splits.x_val),
        "epochs_per_fit": args.epochs,
        "batch_size": DEFAULT_BATCH,
        "variants": results,
        "attribution": attribution,
        "bare_epoch_seconds_median": bare_epoch,
        "callback_hook_seconds_per_epoch": hook_seconds,
        "speed_ratio_from_hook_time": hook_ratio,
        "projected_full_epoch_speed_ratio": projected,
        "projected_full_epoch_speed_ratio_from_measured_extra": projected_measured,
        "push_failures": factory.push_failures,
        "table": {"headers": headers, "rows": rows},
        "attribution_table": {"headers": attribution_headers, "rows": attribution_rows},
    }


# -- 2-4. throughput of one epoch ----------------------------------------------------------------------
@dataclass
class Variant:
    """One way of training: its own model (warmed by one untimed epoch), its data, its batch size."""

    name: str
    model: keras.Model
    fit_args: dict[str, Any]
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_cpu_seconds: list[float] = field(default_factory=list)
    first_epoch_seconds: float = 0.0

    def _epoch(self) -> EpochTimer:
        timer = EpochTimer()
        self.model.fit(**self.fit_args, epochs=1, callbacks=[timer], verbose=0)
        return timer

    def warm(self) -> None:
        self.first_epoch_seconds = self._epoch().seconds[0]

    def timed_epoch(self) -> None:
        timer = self._epoch()
        self.epoch_seconds.append(timer.seconds[0])
        self.epoch_cpu_seconds.append(timer.cpu_seconds[0])


def throughput_section(
    title: str, variants: list[Variant], baseline: str, images: int, rounds: int
) -> dict[str, Any]:
    common.section(title)
    for variant in variants:
        variant.warm()
    for round_index in range(rounds):
        for variant in common.rotated(variants, round_index):
            variant.timed_epoch()
        print(f"  round {round_index + 1}/{rounds} done", flush=True)
    base = next(v for v in variants if v.name == baseline)
    rows, results = [], {}
    for variant in variants:
        speed = [1 / r for r in common.paired_ratios(variant.epoch_seconds, base.epoch_seconds)]
        cpu_speed = [1 / r for r in common.paired_ratios(variant.epoch_cpu_seconds, base.epoch_cpu_seconds)]
        first = base.first_epoch_seconds / variant.first_epoch_seconds
        # Other work on the machine only ever adds time, so the fastest epoch of each variant is a
        # second robust reading (a ratio of minima), next to the median of paired ratios.
        best = min(base.epoch_seconds) / min(variant.epoch_seconds)
        results[variant.name] = {
            "epoch_wall_seconds": variant.epoch_seconds,
            "epoch_cpu_seconds": variant.epoch_cpu_seconds,
            "first_epoch_seconds": variant.first_epoch_seconds,
            "images_per_second_median": images / common.median(variant.epoch_seconds),
            "speed_ratio_median": common.median(speed),
            "speed_ratios": speed,
            "cpu_speed_ratio_median": common.median(cpu_speed),
            "best_epoch_speed_ratio": best,
            "first_epoch_speed_ratio": first,
        }
        rows.append(
            [
                variant.name,
                images / common.median(variant.epoch_seconds),
                common.median(speed),
                min(speed),
                max(speed),
                best,
                common.median(cpu_speed),
                variant.first_epoch_seconds,
                first,
            ]
        )
    headers = [
        "variant",
        "images/s",
        "speed (wall)",
        "min",
        "max",
        "speed (best epochs)",
        "speed (CPU time)",
        "1st epoch s",
        "1st-epoch speed",
    ]
    print(f"  speeds are ratios to '{baseline}' of the same round (> 1 is faster)")
    print(common.table(headers, rows))
    return {"baseline": baseline, "variants": results, "table": {"headers": headers, "rows": rows}}


def tf_slices(x: np.ndarray, y: np.ndarray, batch: int, *, cache: bool, prefetch: bool) -> tf.data.Dataset:
    """The textbook pipeline: from_tensor_slices, shuffle (seeded, as the trainer's), batch; the model
    rescales uint8 itself, so no map is needed; optionally cache and prefetch."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if cache:
        dataset = dataset.cache()
    dataset = dataset.shuffle(len(x), seed=SEED, reshuffle_each_iteration=True).batch(batch)
    if prefetch:
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
    return dataset


def run_batch_sizes(splits: Splits, args: argparse.Namespace) -> dict[str, Any]:
    variants = [
        Variant(
            f"batch {size}",
            compiled_model(),
            {"x": to_dataset(splits.x_train, splits.y_train, size, shuffle_seed=SEED), "shuffle": False},
        )
        for size in args.batch_sizes
    ]
    return throughput_section(
        f"2. batch size (inputs.to_dataset, no callbacks, {len(splits.x_train):,}-image epochs)",
        variants,
        f"batch {DEFAULT_BATCH}",
        len(splits.x_train),
        args.rounds,
    )


PIPELINES: dict[str, str] = {
    # key for --pipelines: the name in the tables
    "numpy": "numpy uint8 arrays",
    "numpy-float32": "numpy float32 arrays (seeds)",
    "slices": "tf.data slices",
    "slices-cache": "tf.data slices+cache",
    "slices-prefetch": "tf.data slices+prefetch",
    "slices-cache-prefetch": "tf.data slices+cache+prefetch",
    "to_dataset": "inputs.to_dataset (trainer)",
}
DEFAULT_PIPELINES = "numpy,numpy-float32,slices,slices-cache-prefetch,to_dataset"


def pipeline_fit_args(key: str, x: np.ndarray, y: np.ndarray, batch: int) -> dict[str, Any]:
    if key == "numpy":
        return {"x": x, "y": y, "batch_size": batch, "shuffle": True}
    if key == "numpy-float32":  # the seeds convert to float32 up front (they also divide by 255)
        return {"x": x.astype(np.float32), "y": y, "batch_size": batch, "shuffle": True}
    if key == "to_dataset":
        return {"x": to_dataset(x, y, batch, shuffle_seed=SEED), "shuffle": False}
    cache, prefetch = "cache" in key, "prefetch" in key
    return {"x": tf_slices(x, y, batch, cache=cache, prefetch=prefetch), "shuffle": False}


def run_pipelines(splits: Splits, args: argparse.Namespace) -> dict[str, Any]:
    keys = list(PIPELINES) if args.pipelines == ["all"] else args.pipelines
    if "to_dataset" not in keys:
        keys.append("to_dataset")  # the baseline
    variants = [
        Variant(
            PIPELINES[key],
            compiled_model(),
            pipeline_fit_args(key, splits.x_train, splits.y_train, DEFAULT_BATCH),
        )
        for key in keys
    ]
    return throughput_section(
        f"3. input pipeline (batch {DEFAULT_BATCH}, no callbacks, {len(splits.x_train):,}-image epochs)",
        variants,
        PIPELINES["to_dataset"],
        len(splits.x_train),
        args.rounds,
    )


def run_xla(splits: Splits, args: argparse.Namespace) -> dict[str, Any]:
    data = {
        "x": to_dataset(splits.x_train, splits.y_train, DEFAULT_BATCH, shuffle_seed=SEED),
        "shuffle": False,
    }
    default = compiled_model()
    resolved = bool(default.jit_compile)  # what the trainer's implicit "auto" became on this host
    variants = [
        Variant("jit_compile auto (trainer)", default, data),
        Variant("jit_compile=True", compiled_model(jit_compile=True), data),
    ]
    result = throughput_section(
        f"4. XLA (batch {DEFAULT_BATCH}; the trainer's 'auto' resolves to jit_compile={resolved} here)",
        variants,
        "jit_compile auto (trainer)",
        len(splits.x_train),
        args.rounds,
    )
    result["auto_resolves_to"] = resolved
    return result


def subset(arrays: dict[str, Any], images: int) -> Splits:
    """The first ``images`` training images, split 90/10 by the trainer's own seeded split."""
    n = min(images, len(arrays["x_train"]))
    data = MnistData(arrays["x_train"][:n], arrays["y_train"][:n], arrays["x_test"], arrays["y_test"])
    return split_train_validation(data, 0.1, SEED)


def run_sections(
    model: str, sections: list[str], arrays: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Every section asked for, for one model of the zoo."""
    global MODEL  # noqa: PLW0603 - one knob read by every section's model builder
    MODEL = model
    print(
        f"\n{MODEL} on Fashion-MNIST from {args.data_dir}; sections {', '.join(sections)}; "
        f"{args.rounds} interleaved rounds"
    )
    results: dict[str, Any] = {}
    if "overhead" in sections:
        gateway = start_pushgateway()
        try:
            results["overhead"] = run_overhead(subset(arrays, args.overhead_images), args, gateway.url)
        finally:
            gateway.stop()
    splits = subset(arrays, round(args.images / 0.9))
    if "batch" in sections:
        results["batch_size"] = run_batch_sizes(splits, args)
    if "pipeline" in sections:
        results["pipeline"] = run_pipelines(splits, args)
    if "xla" in sections:
        results["xla"] = run_xla(splits, args)
    return results


def overhead_summary(by_model: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One line per model: the trainer's speed relative to bare ``fit``, measured and from hook time."""
    common.section("trainer overhead by model (speed of the trainer's fit relative to bare fit)")
    headers = [
        "model",
        "bare epoch s",
        "measured",
        "from hook time",
        "ms of hooks per epoch",
        "projected, full epoch (hooks)",
        "projected, full epoch (measured extra)",
    ]
    rows = []
    for model, results in by_model.items():
        overhead = results["overhead"]
        rows.append(
            [
                model,
                overhead["bare_epoch_seconds_median"],
                overhead["variants"]["trainer (all callbacks)"]["speed_ratio_vs_bare_median"],
                overhead["speed_ratio_from_hook_time"],
                1000 * overhead["callback_hook_seconds_per_epoch"],
                overhead["projected_full_epoch_speed_ratio"],
                overhead["projected_full_epoch_speed_ratio_from_measured_extra"],
            ]
        )
    print(common.table(headers, rows))
    return {"headers": headers, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.trainer_overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--overhead-images",
        type=int,
        default=12_000,
        help="Fashion-MNIST images for the overhead section, before the 10%% validation split (max 60000)",
    )
    parser.add_argument("--images", type=int, default=6_000, help="training images per epoch in sections 2-4")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions per variant")
    parser.add_argument(
        "--overhead-rounds", type=int, help="rounds of the overhead section (default: --rounds)"
    )
    parser.add_argument("--epochs", type=int, default=1, help="epochs per fit in the overhead section")
    parser.add_argument("--sections", default="overhead,batch,pipeline,xla", help="comma-separated")
    parser.add_argument("--batch-sizes", default="64,128,256")
    parser.add_argument(
        "--pipelines", default=DEFAULT_PIPELINES, help=f"'all' or some of {','.join(PIPELINES)}"
    )
    parser.add_argument(
        "--model",
        default="convnet",
        help=f"model(s) of the zoo, comma-separated, or 'all' ({','.join(ZOO)})",
    )
    parser.add_argument("--data-dir", type=Path, default=common.FASHION_MNIST_DIR)
    parser.add_argument(
        "--json", type=Path, help="results file (default bench/results/trainer_overhead.json)"
    )
    args = parser.parse_args()
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.pipelines = args.pipelines.split(",")
    unknown = set(args.pipelines) - {*PIPELINES, "all"}
    if unknown:
        parser.error(f"unknown pipelines {', '.join(sorted(unknown))}; choose from {', '.join(PIPELINES)}")
    sections = args.sections.split(",")
    args.overhead_rounds = args.overhead_rounds or args.rounds
    models = list(ZOO) if args.model == "all" else args.model.split(",")
    unknown = set(models) - set(ZOO)
    if unknown:
        parser.error(f"unknown models {', '.join(sorted(unknown))}; the zoo has {', '.join(ZOO)}")

    started = time.monotonic()
    arrays = common.load_fashion_mnist(args.data_dir)
    settings = {k: v for k, v in vars(args).items() if k not in ("data_dir", "json")}
    results: dict[str, Any] = {"settings": settings}
    by_model = {model: run_sections(model, sections, arrays, args) for model in models}
    if len(models) == 1:
        results |= by_model[models[0]]  # the layout of the files written before --model took several
    else:
        results["models"] = by_model
    if "overhead" in sections:
        results["overhead_summary"] = overhead_summary(by_model)
    results["wall_seconds"] = time.monotonic() - started
    path = common.write_results("trainer_overhead", results, args.json)
    print(f"\n{results['wall_seconds']:.0f}s; results in {path}")


if __name__ == "__main__":
    main()
