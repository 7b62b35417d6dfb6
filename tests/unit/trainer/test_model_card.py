"""The model card (mnist_trainer.model_card) and its pipeline stage, from a report dict of a plausible run:
no training, a few hundred milliseconds per card."""

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mnist_api.env import TrainerConfig
from mnist_api.layout import MODEL_CARD_FILE, PLOT_FILES, PLOTS_DIR, RunPaths
from mnist_api.spec import LearningRateScheduleSpec, ReleaseCriteriaSpec
from mnist_trainer.datasets import FASHION_CLASSES
from mnist_trainer.evaluation import Evaluation
from mnist_trainer.model_card import ModelCardFiles, write_card
from mnist_trainer.release import ModelFigures, release_failures

RUN = ("default", "card-test", "uid-card-test")
# Class 5 is the weak one, mostly mistaken for 3; rows are true classes and sum to 1,000 test images each.
MATRIX = np.full((10, 10), 2, dtype=np.int64)
np.fill_diagonal(MATRIX, 982)
MATRIX[5] = [3, 1, 2, 95, 4, 870, 12, 2, 9, 2]
PER_CLASS = {c: float(MATRIX[c, c] / MATRIX[c].sum()) for c in range(10)}
TEST_ACCURACY = float(np.trace(MATRIX) / MATRIX.sum())


def make_config(tmp_path: Path, **overrides: Any) -> TrainerConfig:
    fields: dict[str, Any] = {
        "namespace": RUN[0],
        "name": RUN[1],
        "uid": RUN[2],
        "dataset": "mnist",
        "data_dir": str(tmp_path / "data"),
        "output_dir": str(tmp_path / "output"),
        "model": "convnet",
        "epochs": 5,
        "batch_size": 128,
        "learning_rate": 0.001,
        "optimizer": "adam",
        "validation_split": 0.1,
        "seed": 7,
        "export_formats": ["keras", "savedmodel"],
        # Two set and met, one set and missed, one not set.
        "release_criteria": ReleaseCriteriaSpec(
            min_test_accuracy=0.99, min_per_class_accuracy=0.8, max_inference_time_ms=50.0
        ),
    }
    return TrainerConfig(**(fields | overrides))


def make_report(config: TrainerConfig, epochs: int = 5, *, validation: bool = True) -> dict[str, Any]:
    """What pipeline.write_report puts into metrics.json, with the release verdict release.py gives."""
    paths = RunPaths(PurePosixPath(config.output_dir), config.namespace, config.name, config.uid)
    history = []
    for epoch in range(1, epochs + 1):
        entry = {
            "epoch": epoch,
            "seconds": 11.5 + epoch / 10,
            "loss": 0.5 / epoch,
            "accuracy": 1 - 0.1 / epoch,
        }
        if validation:
            entry |= {"val_loss": 0.45 / epoch + 0.02, "val_accuracy": 0.98 - 0.08 / epoch}
        history.append(entry)
    failures = release_failures(config.release_criteria, ModelFigures(TEST_ACCURACY, PER_CLASS, 1.25, 1.8))
    return {
        "schemaVersion": 1,
        "run": {"namespace": config.namespace, "name": config.name, "uid": config.uid},
        "config": config.model_dump(mode="json"),
        "history": history,
        "epochs": len(history),
        "test": {
            "loss": 0.0712,
            "accuracy": TEST_ACCURACY,
            "elapsedSeconds": 1.4,
            "perClassAccuracy": {str(k): v for k, v in PER_CLASS.items()},
        },
        "model": {
            "name": "convnet",
            "parameters": 104_202,
            "sizeMb": 1.25,
            "inferenceTimeMs": 1.8,
            "exports": {"keras": str(paths.model_keras), "savedmodel": str(paths.saved_model)},
        },
        "weights": None,
        "imagesPerSecond": [4100.0, 4300.0],
        "metricsPushFailures": None,
        "release": {"passed": not failures, "failures": failures},
        "timings": {
            "fetch_seconds": 0.8,
            "train_seconds": 60.2,
            "evaluate_seconds": 2.1,
            "export_seconds": 1.9,
            "total_seconds": 66.0,
        },
        "trainingSeconds": 60.1,
    }


def run_dir(config: TrainerConfig) -> Path:
    return Path(RunPaths(PurePosixPath(config.output_dir), *RUN).run_dir)


def evaluation() -> Evaluation:
    return Evaluation(
        loss=0.0712,
        accuracy=TEST_ACCURACY,
        seconds=1.4,
        per_class_accuracy=PER_CLASS,
        inference_time_ms=1.8,
        confusion_matrix=tuple(tuple(int(n) for n in row) for row in MATRIX),
    )


def assert_real_png(path: Path) -> Image.Image:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        width, height = image.size
        assert 400 <= width <= 2500, (path.name, image.size)
        assert 300 <= height <= 2500, (path.name, image.size)
        return image.convert("RGB")


def share_of_pixels(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 30) -> float:
    pixels = np.asarray(image, dtype=np.int32)
    close = (np.abs(pixels - np.array(colour)) <= tolerance).all(axis=2)
    return float(close.mean())


def table_row(markdown: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is ``first_cell``."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r}")


@pytest.fixture(scope="module")
def five_epochs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelCardFiles]:
    """The card of a five-epoch run, drawn once for the tests that only read it."""
    config = make_config(tmp_path_factory.mktemp("five-epochs"))
    return run_dir(config), write_card(make_report(config), MATRIX, run_dir(config))


def test_a_constant_learning_rate_is_given_as_it_is(tmp_path: Path) -> None:
    config = make_config(tmp_path, learning_rate_schedule=LearningRateScheduleSpec(name="constant"))
    files = write_card(make_report(config), MATRIX, run_dir(config))
    card = files.card.read_text(encoding="utf-8")
    assert table_row(card, "learning rate") == ["learning rate", "0.001"]


def test_card_holds_the_run_figures_and_each_release_verdict(
    five_epochs: tuple[Path, ModelCardFiles],
) -> None:
    directory, files = five_epochs
    assert files.card == directory / MODEL_CARD_FILE
    card = files.card.read_text(encoding="utf-8")

    assert card.startswith("# Model card: convnet on mnist\n")
    assert f"test accuracy **{TEST_ACCURACY:.2%}**" in card
    assert "Test loss **0.0712**" in card
    assert table_row(card, "parameters") == ["parameters", "104,202"]
    assert table_row(card, "optimizer") == ["optimizer", "adam"]
    assert table_row(card, "learning rate") == [
        "learning rate",
        "0.001 at its peak: linear warm-up over 0.3 epochs, then cosine decay to 0 at the last epoch",
    ]
    assert table_row(card, "batch size") == ["batch size", "128"]
    assert table_row(card, "epochs")[1].startswith("5 trained of 5 requested")
    assert table_row(card, "seed") == ["seed", "7"]
    assert table_row(card, "validation split") == ["validation split", "0.1"]
    # Per-class rows: accuracy, test images and the most frequent confusion, straight from the matrix.
    for c in range(10):
        row = table_row(card, f"`{c}`")
        assert row[1] == f"{PER_CLASS[c]:.2%}"
        assert row[2] == "1,000"
    assert table_row(card, "`5`") == ["`5`", "87.00%", "1,000", "`3` (95)"]
    # The epoch table: one row per epoch.
    assert table_row(card, "3")[:3] == ["3", f"{0.5 / 3:.4f}", f"{1 - 0.1 / 3:.4f}"]
    # Release criteria: read off release.py's own failures.
    assert table_row(card, "`minTestAccuracy`")[1:] == ["0.99", f"{TEST_ACCURACY:.4f}", "**not met**"]
    assert table_row(card, "`minPerClassAccuracy`")[1:] == ["0.8", "0.8700 (`5`)", "met"]
    assert table_row(card, "`maxModelSizeMb`")[1:] == ["-", "1.25", "not set"]
    assert table_row(card, "`maxInferenceTimeMs`")[1:] == ["50", "1.80", "met"]
    assert "**Not released**" in card
    assert f"- test accuracy {TEST_ACCURACY:.4f} < minTestAccuracy 0.99" in card
    # The plots, linked relative to the card so they show wherever the folder is copied.
    for name in PLOT_FILES:
        assert f"](plots/{name})" in card
    # Exported files by their paths in the run's directory.
    assert table_row(card, "Keras model") == ["Keras model", "`model.keras`"]
    assert table_row(card, "SavedModel (TF Serving, KServe)")[1] == "`saved_model`"
    assert "## Intended use" in card
    assert "## Limitations" in card
    assert "weakest is `5` at 87.00%" in card


def test_a_released_run_says_so(tmp_path: Path) -> None:
    config = make_config(tmp_path, release_criteria=ReleaseCriteriaSpec(min_test_accuracy=0.9))
    card = write_card(make_report(config), MATRIX, tmp_path).card.read_text(encoding="utf-8")
    assert table_row(card, "`minTestAccuracy`")[-1] == "met"
    assert "Released: every criterion set is met." in card


def test_plots_are_real_pngs_with_something_drawn(five_epochs: tuple[Path, ModelCardFiles]) -> None:
    directory, files = five_epochs
    assert files.plots == [directory / PLOTS_DIR / name for name in PLOT_FILES]
    images = {path.name: assert_real_png(path) for path in files.plots}
    # The confusion matrix is not blank: its diagonal is drawn dark blue (Blues' top end), the rest pale,
    # and the counts are written on it.
    matrix = images["confusion_matrix.png"]
    assert share_of_pixels(matrix, (8, 48, 107)) > 0.02
    rgb = np.asarray(matrix, dtype=np.int64)
    assert len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])) > 50
    # Both curves have their colours (matplotlib's first two: tab:blue, tab:orange).
    for name in ("training_loss.png", "training_accuracy.png"):
        assert share_of_pixels(images[name], (31, 119, 180)) > 0.001, name
        assert share_of_pixels(images[name], (255, 127, 14)) > 0.001, name
    # No class is below minPerClassAccuracy 0.8: every bar is blue, none red.
    bars = images["per_class_accuracy.png"]
    assert share_of_pixels(bars, (31, 119, 180)) > 0.05
    assert share_of_pixels(bars, (214, 39, 40), tolerance=10) < 0.001
    assert not list(files.card.parent.rglob("*.tmp")), "a temporary file was left behind"


def test_a_class_below_the_limit_is_drawn_red(tmp_path: Path) -> None:
    config = make_config(tmp_path, release_criteria=ReleaseCriteriaSpec(min_per_class_accuracy=0.9))
    files = write_card(make_report(config), MATRIX, tmp_path)
    bars = assert_real_png(tmp_path / PLOTS_DIR / "per_class_accuracy.png")
    assert share_of_pixels(bars, (214, 39, 40), tolerance=10) > 0.003
    assert table_row(files.card.read_text(encoding="utf-8"), "`minPerClassAccuracy`")[-1] == "**not met**"


def test_one_epoch_without_validation_still_draws_its_point(tmp_path: Path) -> None:
    config = make_config(tmp_path, epochs=1, validation_split=0.0, seed=None)
    files = write_card(make_report(config, epochs=1, validation=False), MATRIX, tmp_path)
    card = files.card.read_text(encoding="utf-8")
    assert table_row(card, "epochs")[1] == "1 trained of 1 requested"
    assert table_row(card, "seed")[1].startswith("not set: derived from the run's uid")
    assert table_row(card, "1")[:3] == ["1", "0.5000", "0.9000"]
    for name in ("training_loss.png", "training_accuracy.png"):
        image = assert_real_png(tmp_path / PLOTS_DIR / name)
        # One training point: its marker, and no validation curve at all.
        assert share_of_pixels(image, (31, 119, 180)) > 0.0003, name
        assert share_of_pixels(image, (255, 127, 14)) == 0, name


def test_class_names_label_the_rows(tmp_path: Path) -> None:
    config = make_config(tmp_path, dataset="fashion-mnist")
    card = write_card(make_report(config), MATRIX, tmp_path, class_names=FASHION_CLASSES)
    text = card.card.read_text(encoding="utf-8")
    assert table_row(text, "5 `Sandal`")[3] == "3 `Dress` (95)"
    assert "weakest is 5 `Sandal`" in text
    with pytest.raises(ValueError, match="3 class names for a confusion matrix of 10 classes"):
        write_card(make_report(config), MATRIX, tmp_path / "other", class_names=["a", "b", "c"])


# -- the pipeline stage ------------------------------------------------------------------------------
def test_stage_writes_nothing_when_the_model_card_is_off(tmp_path: Path) -> None:
    from mnist_trainer.pipeline import write_model_card

    config = make_config(tmp_path, model_card=False)
    paths = RunPaths(PurePosixPath(config.output_dir), *RUN)
    report = make_report(config)
    assert write_model_card(config, paths, report, evaluation()) == report
    assert "modelCard" not in report
    assert list(tmp_path.iterdir()) == []


def test_stage_writes_the_card_and_records_it_in_metrics_json(tmp_path: Path) -> None:
    from mnist_trainer.pipeline import write_model_card

    config = make_config(tmp_path, dataset="fashion-mnist")
    paths = RunPaths(PurePosixPath(config.output_dir), *RUN)
    report = write_model_card(config, paths, make_report(config), evaluation())
    assert report["modelCard"] == {
        "file": str(paths.model_card),
        "plots": [str(paths.plots_dir / name) for name in PLOT_FILES],
    }
    assert json.loads(Path(paths.metrics_json).read_text())["modelCard"] == report["modelCard"]
    # The dataset's own class names, without being passed.
    assert "5 `Sandal`" in Path(paths.model_card).read_text(encoding="utf-8")
    for plot in report["modelCard"]["plots"]:
        assert_real_png(Path(plot))


def test_stage_only_warns_when_drawing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from mnist_trainer import model_card, pipeline

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model_card, "write_card", broken)
    config = make_config(tmp_path)
    paths = RunPaths(PurePosixPath(config.output_dir), *RUN)
    report = pipeline.write_model_card(config, paths, make_report(config), evaluation())
    assert report["modelCard"] == {"error": "OSError: [Errno 28] No space left on device"}
    assert json.loads(Path(paths.metrics_json).read_text())["modelCard"] == report["modelCard"]
    assert re.search(r"model card not written: OSError", caplog.text)
