"""The trainer as a pod runs it (``python -m mnist_trainer``, env only) against a real Pushgateway and
generated MNIST served over loopback HTTP. Everything is asserted through the Pushgateway's API, the
files on the output volume, and the exit code."""

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from mnist_api.metrics import HISTOGRAM_WEIGHT_BUCKETS_0_3, TEST_GAUGES, TRAIN_GAUGES
from tests.conftest import DataMirror, contract_env, data_mirror_for, run_trainer
from tests.support.exports import exported_accuracy
from tests.support.servers import Pushgateway, start_pushgateway

# The only promtool findings we accept: the seeds' own gauge names end in `_count`; kept for
# compatibility (docs/metrics.md).
ALLOWED_LINT = re.compile(
    r"^gangplank_(train|test)_(epochs_count|model_parameters_count) "
    r'non-histogram and non-summary metrics should not have "_count" suffix$'
)
EXPORT_FORMATS = ["keras", "savedmodel", "onnx", "tflite"]


def group_of(gateway: Pushgateway, **labels: str) -> dict[str, Any]:
    matches = [g for g in gateway.groups() if all(g["labels"].get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (
        f"expected one group with {labels}, found {[g['labels'] for g in gateway.groups()]}"
    )
    return matches[0]


def gauge(group: dict[str, Any], name: str, **labels: str) -> float:
    for sample in group[name]["metrics"]:
        if all(sample["labels"].get(k) == v for k, v in labels.items()):
            return float(sample["value"])
    raise AssertionError(f"{name}{labels} not in group")


@pytest.fixture(scope="module")
def module_gateway() -> Iterator[Pushgateway]:
    gateway = start_pushgateway()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def finished_run(
    tmp_path_factory: pytest.TempPathFactory,
    module_gateway: Pushgateway,
    synthetic_arrays: dict[str, npt.NDArray[np.uint8]],
) -> tuple[Any, Any]:
    """One full convnet run shared by the tests that inspect its results (training is the slow part), in
    every export format: the convnet's own conversions, through the trainer's process."""
    tmp_path = tmp_path_factory.mktemp("seeds-run")
    with data_mirror_for(tmp_path, synthetic_arrays) as data:
        env = contract_env(
            tmp_path,
            data,
            MNIST_PUSHGATEWAY_URL=module_gateway.url,
            MNIST_HEARTBEAT_SECONDS="0.5",
            MNIST_EXPORT_FORMATS=json.dumps(EXPORT_FORMATS),
        )
        run = run_trainer(env)
    assert run.returncode == 0, run.stdout + run.stderr
    return run, group_of(module_gateway, job="mnist", namespace="default", training="test", uid="uid-1")


def test_every_seeds_metric_is_pushed_with_sane_values(finished_run: tuple[Any, Any]) -> None:
    run, group = finished_run
    for name in TRAIN_GAUGES:
        assert f"gangplank_train_{name}" in group, name
    for name in TEST_GAUGES:
        assert f"gangplank_test_{name}" in group, name
    assert gauge(group, "gangplank_train_epochs_count") == 2
    assert gauge(group, "gangplank_train_model_parameters_count") == 104_202
    assert gauge(group, "gangplank_test_model_parameters_count") == 104_202
    for stage in ("train", "test"):
        assert 0.5 < gauge(group, f"gangplank_{stage}_accuracy") <= 1.0, "the model learned nothing"
        assert 0 < gauge(group, f"gangplank_{stage}_loss") < 2.3
        assert gauge(group, f"gangplank_{stage}_elapsed_time_seconds") > 0
    assert 0.5 < gauge(group, "gangplank_train_val_accuracy") <= 1.0
    report = run.metrics_json()
    assert gauge(group, "gangplank_test_accuracy") == pytest.approx(report["test"]["accuracy"])
    assert report["classNames"] == [str(digit) for digit in range(10)]
    for digit in range(10):
        # class is the label index; class_name the dataset's name for it, the digit itself for MNIST.
        labels = {"class": str(digit), "class_name": str(digit)}
        assert gauge(group, "gangplank_test_class_accuracy", **labels) == pytest.approx(
            report["test"]["perClassAccuracy"][str(digit)]
        )


def test_weights_histogram_matches_the_seeds_shape(finished_run: tuple[Any, Any]) -> None:
    run, group = finished_run
    (histogram,) = group["gangplank_test_model_weights"]["metrics"]
    buckets = {float(le): int(count) for le, count in histogram["buckets"].items()}
    assert sorted(b for b in buckets if b != float("inf")) == list(HISTOGRAM_WEIGHT_BUCKETS_0_3)
    counts = [buckets[b] for b in sorted(buckets)]
    assert counts == sorted(counts), "cumulative counts must not decrease"
    assert int(histogram["count"]) == buckets[float("inf")] == 104_202
    assert float(histogram["sum"]) == 0  # as in the seeds; the true figures are in metrics.json
    weights = run.metrics_json()["weights"]
    assert weights["count"] == 104_202 and weights["min"] < 0 < weights["max"] and weights["sum"] != 0


def test_promtool_finds_only_the_documented_count_suffix_notes(
    finished_run: tuple[Any, Any], module_gateway: Pushgateway
) -> None:
    ours = "\n".join(
        line
        for line in module_gateway.exposition().splitlines()
        if re.match(r"^(# (HELP|TYPE) )?gangplank_", line)
    )
    assert "gangplank_train_accuracy{" in ours
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=ours + "\n", capture_output=True, text=True, check=False
    )
    findings = [line for line in (checked.stdout + checked.stderr).splitlines() if line.strip()]
    assert findings, "promtool should note the seeds' _count gauges"
    unexpected = [line for line in findings if not ALLOWED_LINT.match(line)]
    assert not unexpected, unexpected


def test_the_log_reads_well_without_a_tty(finished_run: tuple[Any, Any]) -> None:
    run, _ = finished_run
    assert "\r" not in run.stdout and "\x1b[" not in run.stdout
    epoch_lines = re.findall(
        r"epoch (\d)/2  loss \S+  accuracy \S+  val_loss \S+  val_accuracy \S+  \S+s  [\d,]+ img/s",
        run.stdout,
    )
    assert epoch_lines == ["1", "2"], run.stdout
    assert re.search(r"epoch 1/2  step \d+/29 \(\d+%\)", run.stdout), "no heartbeat inside the epoch"
    assert "done: test accuracy" in run.stdout.splitlines()[-1]


def test_exports_follow_the_volume_layout_and_reproduce_the_test_accuracy(
    finished_run: tuple[Any, Any], synthetic_arrays: dict[str, npt.NDArray[np.uint8]]
) -> None:
    run, _ = finished_run
    run_dir = run.run_dir()
    report = run.metrics_json()
    assert report["model"]["exports"] == {
        "keras": str(run_dir / "model.keras"),
        "savedmodel": str(run_dir / "saved_model" / "1"),
        "onnx": str(run_dir / "model.onnx"),
        "tflite": str(run_dir / "model.tflite"),
    }
    assert (run_dir / "checkpoints" / "best.keras").is_file()
    assert [e["epoch"] for e in report["history"]] == [1, 2]
    assert report["release"] == {"passed": True, "failures": []}
    assert report["model"]["parameters"] == 104_202

    images, labels = synthetic_arrays["x_test"].astype("float32"), synthetic_arrays["y_test"]
    for export_format, path in report["model"]["exports"].items():
        found = exported_accuracy(export_format, path, images, labels)
        assert found == pytest.approx(report["test"]["accuracy"], abs=0.001), export_format


def test_the_keras_npz_format_and_the_mlp(
    tmp_path: Path, pushgateway: Pushgateway, data_mirror: DataMirror
) -> None:
    env = contract_env(
        tmp_path,
        data_mirror,
        MNIST_DATASET_URL=data_mirror.npz_url,
        MNIST_MODEL="mlp",
        MNIST_EPOCHS="1",
        MNIST_EXPORT_FORMATS='["keras"]',
        MNIST_PUSHGATEWAY_URL=pushgateway.url,
    )
    run = run_trainer(env)
    assert run.returncode == 0, run.stdout + run.stderr
    group = group_of(pushgateway, training="test")
    assert gauge(group, "gangplank_train_model_parameters_count") == 50_890
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == ["mnist.npz", "mnist.npz.lock"]
    assert not (run.run_dir() / "saved_model").exists()


def test_two_concurrent_runs_with_one_job_name_keep_their_own_metrics(
    tmp_path: Path, pushgateway: Pushgateway, data_mirror: DataMirror
) -> None:
    runs: dict[str, Any] = {}

    def train(name: str, epochs: str) -> None:
        env = contract_env(
            tmp_path,
            data_mirror,
            MNIST_NAME=name,
            MNIST_UID=f"uid-{name}",
            MNIST_MODEL="mlp",
            MNIST_EPOCHS=epochs,
            MNIST_PUSHGATEWAY_URL=pushgateway.url,
        )
        runs[name] = run_trainer(env)

    threads = [threading.Thread(target=train, args=a) for a in (("first", "1"), ("second", "3"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(run.returncode == 0 for run in runs.values()), {n: r.stdout[-2000:] for n, r in runs.items()}
    first = group_of(pushgateway, job="mnist", training="first", uid="uid-first")
    second = group_of(pushgateway, job="mnist", training="second", uid="uid-second")
    assert gauge(first, "gangplank_train_epochs_count") == 1
    assert gauge(second, "gangplank_train_epochs_count") == 3
    # Both downloaded through one shared cache directory without corrupting it.
    assert json.loads((tmp_path / "output/default/first/metrics.json").read_text())["test"]["accuracy"] > 0.5


def test_release_criteria_failure_keeps_the_model_and_says_why(
    tmp_path: Path, data_mirror: DataMirror
) -> None:
    env = contract_env(
        tmp_path,
        data_mirror,
        MNIST_MODEL="mlp",
        MNIST_EPOCHS="1",
        MNIST_RELEASE_CRITERIA='{"minTestAccuracy": 0.999}',
    )
    run = run_trainer(env)
    assert run.returncode == 79, run.stdout
    assert re.search(r"release criteria not met: test accuracy 0\.\d+ < minTestAccuracy 0\.999", run.stdout)
    report = run.metrics_json()
    assert report["release"]["passed"] is False
    assert (run.run_dir() / "model.keras").is_file()


def test_a_missing_environment_is_a_config_error(tmp_path: Path) -> None:
    env = contract_env(tmp_path, None)
    del env["MNIST_EPOCHS"]
    run = run_trainer(env)
    assert run.returncode == 78
    assert "MNIST_EPOCHS: Field required" in run.stdout


def test_without_a_pushgateway_metrics_still_reach_metrics_json(
    tmp_path: Path, data_mirror: DataMirror
) -> None:
    run = run_trainer(contract_env(tmp_path, data_mirror, MNIST_MODEL="mlp", MNIST_EPOCHS="1"))
    assert run.returncode == 0
    assert "no Pushgateway configured" in run.stdout
    assert run.metrics_json()["metricsPushFailures"] is None


def test_cached_data_is_not_downloaded_again(tmp_path: Path, data_mirror: DataMirror) -> None:
    env = contract_env(
        tmp_path, data_mirror, MNIST_MODEL="mlp", MNIST_EPOCHS="1", MNIST_EXPORT_FORMATS='["keras"]'
    )
    assert run_trainer(env).returncode == 0
    downloads = len(data_mirror.mirror.behaviour.requests)
    shutil.rmtree(tmp_path / "output")
    again = run_trainer(env)
    assert again.returncode == 0
    assert len(data_mirror.mirror.behaviour.requests) == downloads == 4
    assert again.stdout.count(": cached at ") == 4
