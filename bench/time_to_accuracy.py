"""Time to accuracy on real Fashion-MNIST: training seconds until test accuracy >= 0.90, for the spec's
default hyperparameters against the seeds' reference settings, and other candidates.

Configurations are ``optimizer:learning_rate:batch_size[:schedule[:warmup_epochs]]``, schedule
``constant`` (the default) or ``cosine`` (the spec's ``learningRateSchedule``: linear warm-up to the
learning rate, then cosine decay to 0 at the end of ``--schedule-epochs``, the spec's default epochs,
through the trainer's own ``models.learning_rate_over_run``). All train the spec-default model (the
convnet) through the trainer's own input pipeline (``inputs.to_dataset``) on the trainer's seeded
train/validation split (spec default 0.1), so only the hyperparameters differ:

* the spec defaults, read from ``MnistTrainingSpec`` (today ``adam:0.003:64:cosine:0.3``);
* ``rmsprop:0.001:64``: the seeds' reference (Chollet's convnet script: rmsprop with Keras' default
  learning rate, batch 64) and the BASELINE of every ratio;
* ``adam:0.001:64``: the spec's default until these figures showed the schedule gets there sooner.

The configurations train in the same process, interleaved epoch by epoch (config A epoch 1, B epoch 1,
C epoch 1, A epoch 2, ...), so a burst of other work on the machine slows all of them alike. After every
epoch each model is evaluated on the 10,000 test images; that evaluation is the measuring instrument and
is not counted. Counted: the ``fit`` wall time of each epoch, validation pass included (the trainer
runs it), first epoch (graph tracing) included (every run pays it). The figure is the ratio of a
configuration's seconds-to-target to the reference's; "epochs to target" is noise-free. A configuration
that does not reach the target within ``--epochs`` says "not reached".

By default a configuration stops once it reached the target (to keep ``make bench`` short); use
``--full-curves`` to train every configuration for all ``--epochs`` (the curves in the docs).

    python -m bench.time_to_accuracy [--configs adam:0.003:64:cosine:0.3,rmsprop:0.001:64,adam:0.001:64] \
        [--reference rmsprop:0.001:64] [--target 0.90] [--epochs 12] [--schedule-epochs 5] [--seeds 1] \
        [--full-curves] \
        [--train-images 60000] [--png bench/results/time_to_accuracy.png]
"""

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# First: _common sets TensorFlow's logging and device variables before TensorFlow is imported.
from bench import _common as common

# isort: split
import keras

from mnist_api.spec import LearningRateScheduleName, LearningRateScheduleSpec, MnistTrainingSpec
from mnist_trainer.datasets import MnistData
from mnist_trainer.inputs import Splits, split_train_validation, steps_per_epoch, to_dataset
from mnist_trainer.models import build_model, learning_rate_over_run, make_optimizer

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
_SPEC = MnistTrainingSpec()
_SCHEDULE = _SPEC.learning_rate_schedule
SPEC_DEFAULT = f"{_SPEC.optimizer.value}:{_SPEC.learning_rate:g}:{_SPEC.batch_size}" + (
    ""
    if _SCHEDULE.name == LearningRateScheduleName.CONSTANT
    else f":{_SCHEDULE.name.value}:{_SCHEDULE.warmup_epochs:g}"
)
SEEDS_REFERENCE = "rmsprop:0.001:64"
PREVIOUS_DEFAULT = "adam:0.001:64"
LABELS = {SPEC_DEFAULT: "spec default", SEEDS_REFERENCE: "seeds' reference", PREVIOUS_DEFAULT: "old default"}


@dataclass
class Run:
    """One configuration with one seed: its model, its data pipeline and its per-epoch record."""

    config: str
    seed: int
    splits: Splits
    test: Any
    schedule_epochs: int  # what a cosine schedule plans for
    epochs: list[dict[str, float]] = field(default_factory=list)
    reached_at_epoch: int | None = None

    def __post_init__(self) -> None:
        optimizer, learning_rate, batch, schedule = parse_config(self.config)
        self.batch_size = batch
        self.scheduled = schedule.name != LearningRateScheduleName.CONSTANT
        keras.utils.set_random_seed(self.seed)  # the same initial weights for every config of a seed
        self.model = build_model("convnet")
        rate = learning_rate_over_run(
            learning_rate,
            schedule,
            epochs=self.schedule_epochs,
            steps_per_epoch=steps_per_epoch(len(self.splits.x_train), batch),
        )
        self.model.compile(
            optimizer=make_optimizer(optimizer, rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        s = self.splits
        self.train = to_dataset(s.x_train, s.y_train, self.batch_size, shuffle_seed=self.seed)
        self.validation = to_dataset(s.x_val, s.y_val, self.batch_size, shuffle_seed=None)

    @property
    def label(self) -> str:
        name = LABELS.get(self.config)
        return f"{self.config} ({name})" if name else self.config

    @property
    def seconds(self) -> float:
        return sum(e["seconds"] for e in self.epochs)

    def train_one_epoch(self, target: float) -> None:
        epoch = len(self.epochs)
        cpu_started, started = time.process_time(), time.perf_counter()
        history = self.model.fit(
            self.train,
            validation_data=self.validation,
            initial_epoch=epoch,
            epochs=epoch + 1,
            shuffle=False,
            verbose=0,
        )
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        test = self.model.evaluate(self.test, return_dict=True, verbose=0)  # not counted: the instrument
        figures = {k: float(v[-1]) for k, v in history.history.items()}
        self.epochs.append(
            {
                "epoch": epoch + 1,
                "seconds": seconds,
                "cpu_seconds": cpu,
                **figures,
                "test_loss": float(test["loss"]),
                "test_accuracy": float(test["accuracy"]),
            }
        )
        if self.reached_at_epoch is None and test["accuracy"] >= target:
            self.reached_at_epoch = epoch + 1

    def to_target(self) -> tuple[float | None, float | None]:
        """(wall seconds, CPU seconds) of training up to and including the epoch that reached it."""
        if self.reached_at_epoch is None:
            return None, None
        done = self.epochs[: self.reached_at_epoch]
        return sum(e["seconds"] for e in done), sum(e["cpu_seconds"] for e in done)


def parse_config(config: str) -> tuple[str, float, int, LearningRateScheduleSpec]:
    """``optimizer:learning_rate:batch_size[:schedule[:warmup_epochs]]``; ValueError when malformed."""
    parts = config.split(":")
    if not 3 <= len(parts) <= 5 or parts[0] not in OPTIMIZERS:
        raise ValueError(config)
    optimizer, learning_rate, batch_size = parts[0], float(parts[1]), int(parts[2])
    schedule = LearningRateScheduleSpec(
        name=LearningRateScheduleName(parts[3] if len(parts) > 3 else "constant"),
        warmup_epochs=float(parts[4]) if len(parts) > 4 else 0.0,
    )
    if learning_rate <= 0 or batch_size <= 0:
        raise ValueError(config)
    return optimizer, learning_rate, batch_size, schedule


def parse_configs(text: str) -> list[str]:
    """The configurations, checked here so a typo fails before any training."""
    configs = [c.strip() for c in text.split(",") if c.strip()]
    for config in configs:
        try:
            parse_config(config)
        except ValueError:
            raise SystemExit(
                f"bad config {config!r}: expected optimizer:learning_rate:batch_size[:schedule[:warmup_epochs]], "
                "e.g. adam:0.001:128 or adam:0.003:64:cosine:0.3"
            ) from None
    return configs


@dataclass(frozen=True)
class Curve:
    """What the plot needs of a run; also rebuilt from a results file by ``--replot``."""

    config: str
    seed: int
    label: str
    epochs: list[dict[str, float]]


def plot(curves: list[Curve], target: float, train_images: int, path: Path) -> Path | None:
    """Test accuracy against training seconds (the race itself), then accuracy and loss per epoch."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display here, and none needed for a file
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        print("  matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    configs = list(dict.fromkeys(c.config for c in curves))
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    colours = dict(zip(configs, palette, strict=False))
    first_seed = min(c.seed for c in curves)
    figure, (race, accuracy, loss) = plt.subplots(1, 3, figsize=(17, 5.2))
    for curve in curves:
        # The first seed in full colour and labelled; further seeds faint, to show the spread.
        faint = curve.seed != first_seed
        style: dict[str, Any] = {"color": colours[curve.config], "alpha": 0.3 if faint else 1.0}
        label = None if faint else curve.label
        epochs = [e["epoch"] for e in curve.epochs]
        elapsed = [sum(e["seconds"] for e in curve.epochs[: i + 1]) for i in range(len(curve.epochs))]
        test_accuracy = [e["test_accuracy"] for e in curve.epochs]
        race.plot(elapsed, test_accuracy, marker="o", label=label, **style)
        accuracy.plot(epochs, test_accuracy, marker="o", label=label, **style)
        accuracy.plot(epochs, [e["accuracy"] for e in curve.epochs], linestyle="--", **style)
        loss.plot(epochs, [e["test_loss"] for e in curve.epochs], marker="o", label=label, **style)
        loss.plot(epochs, [e["loss"] for e in curve.epochs], linestyle="--", **style)
    # Zoom: the race on test accuracy (from a little under its lowest point, or under the target), the
    # per-epoch panel on everything it shows (train accuracy starts lower).
    tests = [e["test_accuracy"] for c in curves for e in c.epochs]
    trains = [e["accuracy"] for c in curves for e in c.epochs]
    top = min(1.0, max(tests + trains) + 0.01)
    race.set_ylim(max(0.0, min(target - 0.03, min(tests) - 0.01)), top)
    accuracy.set_ylim(max(0.0, min(target - 0.03, min(tests + trains) - 0.01)), top)
    for axis in (race, accuracy):
        axis.axhline(target, color="grey", linewidth=1, linestyle=":")
    for axis in (accuracy, loss):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    race.set(
        title=f"test accuracy vs training time (target {target:.2f})",
        xlabel="training seconds (fit wall time, validation included)",
        ylabel="test accuracy",
    )
    accuracy.set(title="accuracy per epoch (solid: test, dashed: train)", xlabel="epoch", ylabel="accuracy")
    loss.set(title="loss per epoch (solid: test, dashed: train)", xlabel="epoch", ylabel="loss")
    for axis in (race, accuracy, loss):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right" if axis is not loss else "upper right")
    others = sorted({c.seed for c in curves} - {first_seed})
    figure.suptitle(
        f"Convnet on Fashion-MNIST, {train_images:,} training images: seed {first_seed}"
        + (f" (faint: seed {', '.join(map(str, others))})" if others else "")
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def replot(results: Path, png: Path) -> None:
    """Draw the PNG again from a results file, without training (e.g. after changing the plot)."""
    document = json.loads(results.read_text(encoding="utf-8"))
    curves = [
        Curve(config, run["seed"], entry["label"], run["epochs"])
        for config, entry in document["configs"].items()
        for run in entry["runs"]
    ]
    settings = document["settings"]
    path = plot(curves, settings["target"], document["train_images"], png)
    print(f"curves: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.time_to_accuracy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--configs", default=f"{SPEC_DEFAULT},{SEEDS_REFERENCE},{PREVIOUS_DEFAULT}")
    parser.add_argument("--reference", default=SEEDS_REFERENCE, help="the baseline of the ratios")
    parser.add_argument("--target", type=float, default=0.90, help="test accuracy to reach")
    parser.add_argument("--epochs", type=int, default=12, help="at most this many epochs per configuration")
    parser.add_argument(
        "--schedule-epochs",
        type=int,
        default=_SPEC.epochs,
        help="the run length a cosine schedule plans for (its rate is 0 from then on); the spec's default",
    )
    parser.add_argument("--seeds", type=int, default=1, help="repeat with this many seeds (42, 43, ...)")
    parser.add_argument("--full-curves", action="store_true", help="train all --epochs even after the target")
    parser.add_argument(
        "--train-images", type=int, default=60_000, help="of Fashion-MNIST's 60,000, before the split"
    )
    parser.add_argument("--validation-split", type=float, default=0.1, help="spec default 0.1")
    parser.add_argument("--data-dir", type=Path, default=common.FASHION_MNIST_DIR)
    parser.add_argument("--png", type=Path, default=common.RESULTS_DIR / "time_to_accuracy.png")
    parser.add_argument(
        "--json", type=Path, help="results file (default bench/results/time_to_accuracy.json)"
    )
    parser.add_argument(
        "--replot", type=Path, metavar="RESULTS_JSON", help="only draw --png from a results file"
    )
    args = parser.parse_args()
    if args.replot:
        replot(args.replot, args.png)
        return
    configs = parse_configs(args.configs)
    if args.reference not in configs:
        configs.append(args.reference)

    started = time.monotonic()
    arrays = common.load_fashion_mnist(args.data_dir)
    n = min(args.train_images, len(arrays["x_train"]))
    data = MnistData(arrays["x_train"][:n], arrays["y_train"][:n], arrays["x_test"], arrays["y_test"])
    test = to_dataset(
        data.x_test, data.y_test, 1000, shuffle_seed=None
    )  # batch size does not change accuracy

    runs: list[Run] = []
    for seed in range(42, 42 + args.seeds):
        splits = split_train_validation(data, args.validation_split, seed)
        runs.extend(Run(config, seed, splits, test, args.schedule_epochs) for config in configs)
    common.section(
        f"time to test accuracy >= {args.target:.2f}: {len(runs[0].splits.x_train):,} training images, "
        f"{len(runs[0].splits.x_val):,} validation, up to {args.epochs} epochs, seeds "
        f"{', '.join(str(s) for s in range(42, 42 + args.seeds))}"
    )
    for epoch in range(args.epochs):
        # A cosine schedule's rate is 0 after its planned epochs: further epochs would not change it.
        active = [
            r
            for r in runs
            if (args.full_curves or r.reached_at_epoch is None)
            and not (r.scheduled and len(r.epochs) >= r.schedule_epochs)
        ]
        if not active:
            break
        # Rotate the order each epoch: no configuration always trains right after the same other one.
        for run in common.rotated(active, epoch):
            run.train_one_epoch(args.target)
            last = run.epochs[-1]
            print(
                f"  seed {run.seed}  {run.config:<18} epoch {last['epoch']:>2}  {last['seconds']:5.1f}s  "
                f"loss {last['loss']:.4f}  val_accuracy {last['val_accuracy']:.4f}  "
                f"test_accuracy {last['test_accuracy']:.4f}",
                flush=True,
            )

    rows, results = [], {}
    for config in configs:
        mine = [r for r in runs if r.config == config]
        refs = {r.seed: r for r in runs if r.config == args.reference}
        ratios, cpu_ratios, bounds = [], [], []
        for run in mine:
            wall, cpu = run.to_target()
            ref_wall, ref_cpu = refs[run.seed].to_target()
            if wall is not None and ref_wall is not None and cpu is not None and ref_cpu is not None:
                ratios.append(wall / ref_wall)
                cpu_ratios.append(cpu / ref_cpu)
            elif wall is not None:
                # The reference never got there: all we know is an upper bound on the ratio.
                bounds.append(wall / refs[run.seed].seconds)
        reached = [r for r in mine if r.reached_at_epoch is not None]
        seconds = [r.to_target()[0] or 0.0 for r in reached]
        epoch_seconds = [e["seconds"] for r in mine for e in r.epochs[1:]]  # steady epochs (no tracing)
        best = [max(e["test_accuracy"] for e in r.epochs) for r in mine]
        results[config] = {
            "label": mine[0].label,
            "reached": f"{len(reached)}/{len(mine)}",
            "epochs_to_target": [r.reached_at_epoch for r in mine],
            "seconds_to_target": [r.to_target()[0] for r in mine],
            "time_ratio_vs_reference": ratios,
            "time_ratio_vs_reference_median": common.median(ratios),
            "time_ratio_upper_bounds_where_reference_did_not_reach": bounds,
            "cpu_time_ratio_vs_reference_median": common.median(cpu_ratios),
            "steady_epoch_seconds_median": common.median(epoch_seconds),
            "best_test_accuracy": best,
            "runs": [{"seed": r.seed, "epochs": r.epochs} for r in mine],
        }
        rows.append(
            [
                mine[0].label,
                f"{len(reached)}/{len(mine)}",
                "/".join(str(r.reached_at_epoch or "not reached") for r in mine),
                common.median(seconds) if seconds else "not reached",
                common.median(ratios) if ratios else (f"< {max(bounds):.3f}" if bounds else "n/a"),
                common.median(cpu_ratios) if cpu_ratios else "n/a",
                common.median(epoch_seconds),
                max(best),
            ]
        )
    headers = [
        "config (optimizer:lr:batch[:schedule:warm-up])",
        "reached",
        "epochs to target",
        "seconds to target",
        f"time vs {args.reference}",
        "CPU time vs ref",
        "s per later epoch",
        "best test acc",
    ]
    print(f"\n  ratios < 1: reaches {args.target:.2f} faster than {args.reference} with the same seed")
    print(common.table(headers, rows))
    curves = [Curve(r.config, r.seed, r.label, r.epochs) for r in runs]
    png = plot(curves, args.target, len(runs[0].splits.x_train), args.png)
    if png is not None:
        print(f"  curves: {png}")
    settings = {k: v for k, v in vars(args).items() if k not in ("data_dir", "json", "png")}
    payload = {
        "settings": settings,
        "train_images": len(runs[0].splits.x_train),
        "validation_images": len(runs[0].splits.x_val),
        "reference": args.reference,
        "configs": results,
        "table": {"headers": headers, "rows": rows},
        "png": str(png) if png else None,
        "wall_seconds": time.monotonic() - started,
    }
    path = common.write_results("time_to_accuracy", payload, args.json)
    print(f"\n{payload['wall_seconds']:.0f}s; results in {path}")


if __name__ == "__main__":
    main()
