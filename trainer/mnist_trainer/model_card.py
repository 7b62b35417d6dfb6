"""The model card: ``model_card/mnist_model_card.md`` and its four plots, the seeds' names and places
(``mnist_api.layout``), drawn from what metrics.json holds plus the evaluation's confusion matrix.

Functions of their inputs apart from the files they write, so a test builds a report dict and checks
the card without training anything. The plots are drawn on matplotlib's Agg canvas directly (no pyplot):
nothing global is switched, no display is looked for, and the trainer image needs no GUI toolkit.
"""

import math
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from mnist_api.layout import MODEL_CARD_FILE, PLOT_FILES, PLOTS_DIR

__all__ = ["ModelCardFiles", "write_card"]

TRAINING_LOSS_PNG, TRAINING_ACCURACY_PNG, CONFUSION_MATRIX_PNG, PER_CLASS_ACCURACY_PNG = PLOT_FILES
DPI: Final = 100
MAX_ANNOTATED_CLASSES: Final = 30  # beyond this the counts would be too small to read: colours only
EXPORT_KINDS: Final = {
    "keras": "Keras model",
    "savedmodel": "SavedModel (TF Serving, KServe)",
    "onnx": "ONNX model",
    "tflite": "TensorFlow Lite model",
}
# Release criteria in the order release.py checks them, by the spec's name, which each of its failure
# sentences contains: a verdict is read off the run's own decision rather than decided a second time.
CRITERIA: Final = (
    ("minTestAccuracy", "min_test_accuracy"),
    ("minPerClassAccuracy", "min_per_class_accuracy"),
    ("maxModelSizeMb", "max_model_size_mb"),
    ("maxInferenceTimeMs", "max_inference_time_ms"),
)


@dataclass(frozen=True)
class ModelCardFiles:
    """What ``write_card`` wrote: the Markdown file and the plots, in ``PLOT_FILES``' order."""

    card: Path
    plots: list[Path]


def write_card(
    report: Mapping[str, Any],
    confusion_matrix: npt.ArrayLike,
    run_dir: Path,
    *,
    class_names: Sequence[str] | None = None,
) -> ModelCardFiles:
    """Write the plots, then the card that shows them, under ``run_dir``; each file atomically.

    ``report`` is what metrics.json holds (``pipeline.write_report``); ``confusion_matrix`` has a row per
    true class and a column per predicted class; ``class_names`` default to the labels "0", "1", ...
    """
    matrix = np.asarray(confusion_matrix, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"the confusion matrix must be square and not empty, not of shape {matrix.shape}")
    names = [str(c) for c in range(matrix.shape[0])] if class_names is None else list(class_names)
    if len(names) != matrix.shape[0]:
        raise ValueError(f"{len(names)} class names for a confusion matrix of {matrix.shape[0]} classes")
    plots_dir = run_dir / PLOTS_DIR
    plots = [plots_dir / name for name in PLOT_FILES]
    history: list[Mapping[str, float]] = list(report.get("history") or [])
    criteria: Mapping[str, Any] = report["config"].get("release_criteria") or {}
    best = _best_epoch(history)
    draw_curves(history, "loss", plots_dir / TRAINING_LOSS_PNG, best_epoch=best)
    draw_curves(history, "accuracy", plots_dir / TRAINING_ACCURACY_PNG, best_epoch=best)
    draw_confusion_matrix(matrix, names, plots_dir / CONFUSION_MATRIX_PNG)
    draw_per_class_accuracy(
        _per_class(report),
        names,
        plots_dir / PER_CLASS_ACCURACY_PNG,
        test_accuracy=float(report["test"]["accuracy"]),
        min_per_class_accuracy=criteria.get("min_per_class_accuracy"),
    )
    card = run_dir / MODEL_CARD_FILE
    text = card_markdown(
        report,
        matrix,
        names,
        {name: os.path.relpath(p, card.parent) for name, p in zip(PLOT_FILES, plots, strict=True)},
        run_dir,
    )
    _replace_atomically(card, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    return ModelCardFiles(card, plots)


# -- the Markdown ------------------------------------------------------------------------------------
def card_markdown(
    report: Mapping[str, Any],
    matrix: npt.NDArray[np.int64],
    names: Sequence[str],
    plot_links: Mapping[str, str],
    run_dir: Path,
) -> str:
    """The card's text. ``plot_links`` maps each of ``PLOT_FILES`` to its path relative to the card."""
    config, test, model = report["config"], report["test"], report["model"]
    run = report["run"]
    per_class = _per_class(report)
    totals = matrix.sum(axis=1)
    worst = min(per_class.items(), key=lambda item: item[1]) if per_class else None
    lines = [
        f"# Model card: {model['name']} on {config['dataset']}",
        "",
        f"Training `{run['namespace']}/{run['name']}` (uid `{run['uid']}`), written by the trainer from the "
        "run's `metrics.json` and its test-set predictions.",
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `{model['name']}` |",
        f"| parameters | {model['parameters']:,} |",
        f"| size (`model.keras`) | {_or_unknown(model.get('sizeMb'), '{:.2f} MB', 'unknown: keras not exported')} |",
        f"| single-image inference | {model['inferenceTimeMs']:.2f} ms (median of 20 on the training node's CPU) |",
        "| input | 28x28 grayscale, raw pixel values 0-255 (the model rescales them itself) |",
        f"| output | {len(names)} class probabilities (softmax) |",
        "",
        "## Dataset",
        "",
        f"`{config['dataset']}`, {_dataset_source(config)}. Evaluated on its test set: {int(matrix.sum()):,} "
        f"images; {config['validation_split']:.0%} of the training images were held out for validation.",
        "",
        "Classes: " + ", ".join(_class_label(c, names) for c in range(len(names))) + ".",
        "",
        "## Training",
        "",
        "| hyperparameter | value |",
        "|---|---|",
        f"| optimizer | {config['optimizer']} |",
        f"| learning rate | {_learning_rate(config)} |",
        f"| batch size | {config['batch_size']} |",
        f"| epochs | {report['epochs']} trained of {config['epochs']} requested{_early_stopping(config)} |",
        f"| seed | {_seed(config)} |",
        f"| validation split | {config['validation_split']:g} |",
        "",
        *_history_table(report.get("history") or []),
        "",
        f"![Training and validation loss per epoch]({plot_links[TRAINING_LOSS_PNG]})",
        "",
        f"![Training and validation accuracy per epoch]({plot_links[TRAINING_ACCURACY_PNG]})",
        "",
        "## Evaluation (test set)",
        "",
        f"Test loss **{test['loss']:.4f}**, test accuracy **{test['accuracy']:.2%}** (of the best epoch's "
        "checkpoint).",
        "",
        "| class | accuracy | test images | most often mistaken for |",
        "|---|---:|---:|---|",
        *(
            f"| {_class_label(c, names)} | {_or_unknown(per_class.get(c), '{:.2%}', 'no test images')} "
            f"| {int(totals[c]):,} | {_most_confused(matrix, c, names)} |"
            for c in range(len(names))
        ),
        "",
        f"![Confusion matrix: true class by predicted class]({plot_links[CONFUSION_MATRIX_PNG]})",
        "",
        f"![Accuracy per class]({plot_links[PER_CLASS_ACCURACY_PNG]})",
        "",
        "## Release criteria",
        "",
        *_release_lines(report, per_class, names),
        "",
        "## Timings",
        "",
        *_timing_lines(report),
        "",
        "## Intended use",
        "",
        f"- Classifying 28x28 grayscale images like those of `{config['dataset']}` into its {len(names)} "
        "classes: a baseline trained and served through mnist-operator, loaded from the exported files below.",
        "- Not for decisions about people, nor for anything where a wrong label is costly: no part of this "
        "card measures that.",
        "",
        "## Limitations",
        "",
        f"- Measured only on `{config['dataset']}`'s own test set, which comes from the same source as the "
        "training images: accuracy on other images (other scanners, handwriting, photographs, other sizes, "
        "inverted colours) is unknown and likely lower.",
        f'- It always answers one of its {len(names)} classes: there is no "none of these", so an image '
        "of something else gets a label too, often with a high score. The softmax scores are not "
        "calibrated probabilities.",
        *(
            [
                f"- Accuracy differs by class: the weakest is {_class_label(worst[0], names)} at "
                f"{worst[1]:.2%}, most often mistaken for {_most_confused(matrix, worst[0], names)}."
            ]
            if worst is not None
            else []
        ),
        "- The inference time is one image at a time on the node that trained it, not a serving benchmark.",
        "- Not tested for robustness to noise, shifts or adversarial inputs.",
        "",
        "## Files",
        "",
        "Paths relative to the run's directory.",
        "",
        "| what | path |",
        "|---|---|",
        *(
            f"| {EXPORT_KINDS.get(kind, kind + ' model')} | `{_relative(path, run_dir)}` |"
            for kind, path in sorted(model["exports"].items())
        ),
        "| run report | `metrics.json` |",
        f"| this card | `{MODEL_CARD_FILE}` |",
        *(f"| plot | `{PLOTS_DIR}/{name}` |" for name in PLOT_FILES),
        "",
    ]
    return "\n".join(lines)


def _release_lines(
    report: Mapping[str, Any], per_class: Mapping[int, float], names: Sequence[str]
) -> list[str]:
    """The criteria table, a verdict each (met, not met, not set), and the failures in release.py's words."""
    criteria: Mapping[str, Any] = report["config"].get("release_criteria") or {}
    release = report["release"]
    failures: list[str] = list(release.get("failures") or [])
    model, test = report["model"], report["test"]
    worst = min(per_class.items(), key=lambda item: item[1]) if per_class else None
    measured = {
        "minTestAccuracy": f"{test['accuracy']:.4f}",
        "minPerClassAccuracy": (
            "no classes" if worst is None else f"{worst[1]:.4f} ({_class_label(worst[0], names)})"
        ),
        "maxModelSizeMb": _or_unknown(model.get("sizeMb"), "{:.2f}", "unknown"),
        "maxInferenceTimeMs": f"{model['inferenceTimeMs']:.2f}",
    }
    lines = ["| criterion | limit | this model | verdict |", "|---|---:|---:|---|"]
    for spec_name, field in CRITERIA:
        limit = criteria.get(field)
        if limit is None:
            verdict = "not set"
        elif any(spec_name in failure for failure in failures):
            verdict = "**not met**"
        else:
            verdict = "met"
        shown = "-" if limit is None else f"{limit:g}"
        lines.append(f"| `{spec_name}` | {shown} | {measured[spec_name]} | {verdict} |")
    lines.append("")
    if release.get("passed"):
        lines.append("Released: every criterion set is met.")
    else:
        lines.append(
            "**Not released** (exit code 79, ReleaseCriteriaNotMet); the model is kept for inspection:"
        )
        lines.append("")
        lines.extend(f"- {failure}" for failure in failures)
    return lines


def _history_table(history: Sequence[Mapping[str, float]]) -> list[str]:
    if not history:
        return ["No epochs were trained in this run."]
    columns = [c for c in ("loss", "accuracy", "val_loss", "val_accuracy") if any(c in e for e in history)]
    lines = [
        "| epoch | " + " | ".join(columns) + " | seconds |",
        "|---:|" + "---:|" * len(columns) + "---:|",
    ]
    for entry in history:
        figures = " | ".join(f"{entry[c]:.4f}" if c in entry else "-" for c in columns)
        lines.append(f"| {int(entry['epoch'])} | {figures} | {entry.get('seconds', math.nan):.1f} |")
    return lines


def _timing_lines(report: Mapping[str, Any]) -> list[str]:
    timings: Mapping[str, float] = report.get("timings") or {}
    rates = [r for r in report.get("imagesPerSecond") or [] if math.isfinite(r)]
    lines = ["| stage | seconds |", "|---|---:|"]
    lines.extend(
        f"| {key.removesuffix('_seconds')} | {value:.1f} |"
        for key, value in timings.items()
        if key != "total_seconds"
    )
    if "total_seconds" in timings:
        lines.append(f"| total (this attempt) | {timings['total_seconds']:.1f} |")
    # The epochs alone, summed over every attempt a retried pod made (the rows above are this attempt's).
    lines.append(f"| epochs, every attempt | {report.get('trainingSeconds', math.nan):.1f} |")
    if rates:
        lines.extend(
            ["", f"Training throughput: {statistics.median(rates):,.0f} images per second (median epoch)."]
        )
    return lines


def _dataset_source(config: Mapping[str, Any]) -> str:
    if config.get("dataset_dir"):
        return f"image folders under `{config['dataset_dir']}`"
    if config.get("dataset_url"):
        return f"downloaded from `{config['dataset_url']}` and checked against its sha256 sums"
    return "from its canonical download, checked against the published sha256 sums"


def _early_stopping(config: Mapping[str, Any]) -> str:
    early = config.get("early_stopping")
    return "" if not early else f" (early stopping on `{early.get('monitor')}`)"


def _learning_rate(config: Mapping[str, Any]) -> str:
    schedule = config.get("learning_rate_schedule") or {}
    if schedule.get("name", "constant") == "constant":
        return f"{config['learning_rate']:g}"
    return (
        f"{config['learning_rate']:g} at its peak: linear warm-up over {schedule['warmup_epochs']:g} "
        f"epochs, then cosine decay to 0 at the last epoch"
    )


def _seed(config: Mapping[str, Any]) -> str:
    seed = config.get("seed")
    return str(seed) if seed is not None else "not set: derived from the run's uid (the same on every retry)"


def _most_confused(matrix: npt.NDArray[np.int64], true_class: int, names: Sequence[str]) -> str:
    row = matrix[true_class].copy()
    row[true_class] = 0
    if not row.any():
        return "-"
    predicted = int(np.argmax(row))
    return f"{_class_label(predicted, names)} ({int(row[predicted]):,})"


def _class_label(label: int, names: Sequence[str]) -> str:
    name = names[label] if label < len(names) else str(label)
    return f"`{name}`" if name == str(label) else f"{label} `{_cell(name)}`"


def _per_class(report: Mapping[str, Any]) -> dict[int, float]:
    return {int(c): float(v) for c, v in (report["test"].get("perClassAccuracy") or {}).items()}


def _relative(path: str, run_dir: Path) -> str:
    relative = os.path.relpath(path, run_dir)
    return path if relative.startswith("..") else relative


def _or_unknown(value: float | None, template: str, unknown: str) -> str:
    return unknown if value is None else template.format(value)


def _cell(text: str) -> str:
    """Text safe inside a table cell and a code span (class names may come from folder names)."""
    return text.replace("|", "\\|").replace("`", "'")


def _best_epoch(history: Sequence[Mapping[str, float]]) -> tuple[int, str] | None:
    """The epoch whose checkpoint was evaluated: the lowest val_loss, or loss without validation (the
    best-checkpoint callback's monitor), with that monitor's name."""
    monitor = "val_loss" if any("val_loss" in e for e in history) else "loss"
    scored = [(e[monitor], int(e["epoch"])) for e in history if monitor in e and math.isfinite(e[monitor])]
    return (min(scored)[1], monitor) if scored else None


# -- the plots ---------------------------------------------------------------------------------------
def draw_curves(
    history: Sequence[Mapping[str, float]], metric: str, path: Path, *, best_epoch: tuple[int, str] | None
) -> None:
    """Training and validation ``metric`` per epoch, with markers (one epoch is one point, not a line)."""
    figure, axes = _figure(7.0, 4.2)
    for key, label, style in ((metric, "training", "o-"), (f"val_{metric}", "validation", "s--")):
        points = [(int(e["epoch"]), float(e[key])) for e in history if key in e]
        if points:
            epochs, values = zip(*points, strict=True)
            axes.plot(epochs, values, style, label=label, markersize=6, linewidth=1.8)
    epochs_seen = sorted({int(e["epoch"]) for e in history})
    if best_epoch is not None and len(epochs_seen) > 1:  # with one epoch there is nothing to choose
        epoch, monitor = best_epoch
        axes.axvline(epoch, color="grey", linestyle=":", label=f"evaluated: epoch {epoch}, lowest {monitor}")
    if epochs_seen:
        # Half an epoch of margin: a single epoch sits in the middle rather than on the frame.
        axes.set_xlim(epochs_seen[0] - 0.5, epochs_seen[-1] + 0.5)
        axes.legend(loc="best")
    else:
        axes.text(0.5, 0.5, "no epochs trained", transform=axes.transAxes, ha="center", va="center")
    if 0 < len(epochs_seen) <= 20:
        axes.set_xticks(epochs_seen)  # every epoch; a locator would offer 0.5, 0.6, ... for one epoch
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if metric == "accuracy":
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    elif epochs_seen:
        axes.set_ylim(bottom=0)  # a loss from zero: a small step is not drawn as a cliff
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_title(f"Training and validation {metric}")
    axes.grid(alpha=0.3)
    _save(figure, path)


def draw_confusion_matrix(matrix: npt.NDArray[np.int64], names: Sequence[str], path: Path) -> None:
    """Counts, true class down, predicted class across; each cell annotated while they stay readable."""
    classes = len(names)
    side = min(4.0 + 0.55 * classes, 24.0)
    figure, axes = _figure(side + 1.2, side)
    image = axes.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
    figure.colorbar(image, ax=axes, shrink=0.8, label="test images")
    if classes <= MAX_ANNOTATED_CLASSES:
        threshold = matrix.max() / 2
        size = 9 if classes <= 12 else 7
        for true_class in range(classes):
            for predicted in range(classes):
                count = int(matrix[true_class, predicted])
                colour = "white" if count > threshold else ("#b0b0b0" if count == 0 else "black")
                axes.text(
                    predicted, true_class, f"{count}", ha="center", va="center", color=colour, fontsize=size
                )
    _class_ticks(axes.set_xticks, names, rotate=True)
    _class_ticks(axes.set_yticks, names, rotate=False)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"Confusion matrix ({int(matrix.sum()):,} test images)")
    _save(figure, path)


def draw_per_class_accuracy(
    per_class: Mapping[int, float],
    names: Sequence[str],
    path: Path,
    *,
    test_accuracy: float,
    min_per_class_accuracy: float | None,
) -> None:
    """A bar per class with its value; the overall test accuracy and the release limit as lines."""
    figure, axes = _figure(max(7.0, 0.6 * len(names) + 1.5), 4.6)
    classes = sorted(c for c in per_class if c < len(names))
    values = [per_class[c] for c in classes]
    below = [min_per_class_accuracy is not None and v < min_per_class_accuracy for v in values]
    bars = axes.bar(classes, values, color=["tab:red" if b else "tab:blue" for b in below], width=0.7)
    if len(classes) <= MAX_ANNOTATED_CLASSES:
        # On a white patch: a reference line at the same height would otherwise strike the figure out.
        patch = {"facecolor": "white", "edgecolor": "none", "pad": 0.6, "alpha": 0.85}
        axes.bar_label(bars, labels=[f"{v:.1%}" for v in values], padding=2, fontsize=8, bbox=patch)
    # The reference lines run behind the bars (zorder below a patch's 1), visible between them.
    axes.axhline(
        test_accuracy, color="dimgrey", linestyle="--", zorder=0.9, label=f"test accuracy {test_accuracy:.2%}"
    )
    if min_per_class_accuracy is not None:
        axes.axhline(
            min_per_class_accuracy,
            color="tab:red",
            linestyle=":",
            linewidth=1.8,
            zorder=0.9,
            label=f"minPerClassAccuracy {min_per_class_accuracy:.0%}",
        )
    axes.set_xlim(-0.6, len(names) - 0.4)
    axes.set_ylim(0, 1.1)  # room above a 100 % bar for its label
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    _class_ticks(axes.set_xticks, names, rotate=True)
    axes.set_xlabel("true class")
    axes.set_ylabel("accuracy (share predicted right)")
    axes.set_title("Test accuracy per class")
    axes.grid(axis="y", alpha=0.3)
    # Below the axes, not over the bars it would otherwise hide.
    figure.legend(loc="outside lower center", ncols=2, frameon=False)
    _save(figure, path)


def _class_ticks(set_ticks: Callable[..., Any], names: Sequence[str], *, rotate: bool) -> None:
    """A tick per class, labelled with its name; long names slanted so neighbours do not overlap."""
    if rotate and max(len(n) for n in names) > 3:
        set_ticks(range(len(names)), labels=names, rotation=35, ha="right", rotation_mode="anchor")
    else:
        set_ticks(range(len(names)), labels=names)


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    """A figure on its own Agg canvas; constrained layout keeps slanted labels inside the image."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself as figure.canvas
    return figure, figure.add_subplot()


def _save(figure: Figure, path: Path) -> None:
    # No "Software" stamp: the same figures drawn by the same matplotlib give the same bytes.
    _replace_atomically(
        path, lambda temporary: figure.savefig(temporary, format="png", metadata={"Software": None})
    )


def _replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write to a hidden temporary name beside ``path``, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
