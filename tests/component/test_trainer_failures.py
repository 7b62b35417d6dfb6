"""Failure paths: Pushgateway down, bad or unreachable data, and a trainer killed mid-run."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import DataMirror, contract_env, run_trainer
from tests.support.servers import Pushgateway, free_port, trainer_environment


def test_pushgateway_down_with_ignore_exceptions_trains_on_and_warns(
    tmp_path: Path, data_mirror: DataMirror
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    run = run_trainer(contract_env(tmp_path, data_mirror, MNIST_MODEL="mlp", MNIST_PUSHGATEWAY_URL=dead))
    assert run.returncode == 0, run.stdout + run.stderr
    warnings = [line for line in run.stdout.splitlines() if "WARNING" in line and "metrics push to" in line]
    assert len(warnings) >= 3, run.stdout  # two epochs, the train histogram, the test push, ...
    assert "Connection refused" in warnings[0] and "training goes on" in warnings[0]
    assert "Traceback" not in run.stdout + run.stderr
    assert run.metrics_json()["metricsPushFailures"] == len(warnings)
    assert (run.run_dir() / "model.keras").is_file()


def test_pushgateway_down_without_ignore_exceptions_aborts_cleanly(
    tmp_path: Path, data_mirror: DataMirror
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = contract_env(
        tmp_path, data_mirror, MNIST_MODEL="mlp", MNIST_PUSHGATEWAY_URL=dead, MNIST_IGNORE_EXCEPTIONS="false"
    )
    run = run_trainer(env)
    assert run.returncode == 69, run.stdout + run.stderr
    assert "ERROR" in run.stdout and "ignoreExceptions is false" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert not (run.run_dir() / "model.keras").exists()


def test_checksum_mismatch_is_a_data_error_and_writes_nothing(
    tmp_path: Path, data_mirror: DataMirror
) -> None:
    wrong = dict(data_mirror.sha256, **{"train-labels-idx1-ubyte.gz": "0" * 64})
    run = run_trainer(contract_env(tmp_path, data_mirror, MNIST_DATASET_SHA256=json.dumps(wrong)))
    assert run.returncode == 65, run.stdout + run.stderr
    assert (
        f"sha256 mismatch: expected {'0' * 64}, got {data_mirror.sha256['train-labels-idx1-ubyte.gz']}"
        in run.stdout
    )
    assert "spec.dataset.sha256.train-labels-idx1-ubyte.gz" in run.stdout
    cache = tmp_path / "data" / "mnist"
    assert not (cache / "train-labels-idx1-ubyte.gz").exists()
    assert not list(cache.glob("*.part"))
    assert not (tmp_path / "output").exists()


def test_the_builtin_checksum_guards_the_canonical_file_names(
    tmp_path: Path, data_mirror: DataMirror
) -> None:
    # Our mirror serves files under canonical names that are not the canonical bytes.
    env = contract_env(tmp_path, data_mirror)
    del env["MNIST_DATASET_SHA256"]
    run = run_trainer(env)
    assert run.returncode == 65
    assert "expected 440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609" in run.stdout


def test_unreachable_data_says_how_to_use_a_mirror(tmp_path: Path) -> None:
    env = contract_env(tmp_path, None, MNIST_DATASET_URL=f"http://127.0.0.1:{free_port()}/mnist/")
    run = run_trainer(env)
    assert run.returncode == 66, run.stdout + run.stderr
    assert "download failed after 2 attempts" in run.stdout
    assert "set spec.dataset.url to a mirror" in run.stdout


def wait_for_line(process: subprocess.Popen[str], fragment: str) -> list[str]:
    seen = []
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        if fragment in line:
            return seen
    raise AssertionError(f"{fragment!r} never appeared:\n{''.join(seen)}")


def start_trainer(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_trainer"],
        env=trainer_environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_killed_after_its_first_epoch_a_rerun_resumes_and_trains_only_what_is_left(
    tmp_path: Path, pushgateway: Pushgateway, data_mirror: DataMirror
) -> None:
    env = contract_env(tmp_path, data_mirror, MNIST_EPOCHS="6", MNIST_PUSHGATEWAY_URL=pushgateway.url)
    first = start_trainer(env)
    wait_for_line(first, "epoch 1/6  loss")
    first.send_signal(signal.SIGKILL)  # what a node failure or OOM kill does: no chance to clean up
    first.wait(30)

    second = run_trainer(env)
    assert second.returncode == 0, second.stdout + second.stderr
    resumed = [line for line in second.stdout.splitlines() if "resuming at epoch" in line]
    assert resumed, second.stdout
    trained_again = [line for line in second.stdout.splitlines() if "/6  loss" in line]
    assert 1 <= len(trained_again) <= 5, "the rerun must train only the epochs that were left"
    report = second.metrics_json()
    assert [entry["epoch"] for entry in report["history"]] == [1, 2, 3, 4, 5, 6]
    (group,) = [g for g in pushgateway.groups() if g["labels"].get("uid") == "uid-1"]
    assert float(group["gangplank_train_epochs_count"]["metrics"][0]["value"]) == 6


def test_sigterm_stops_with_the_interrupted_code_and_resumes(tmp_path: Path, data_mirror: DataMirror) -> None:
    env = contract_env(tmp_path, data_mirror, MNIST_EPOCHS="6")
    first = start_trainer(env)
    wait_for_line(first, "epoch 1/6  loss")
    first.send_signal(signal.SIGTERM)
    remaining = first.communicate(timeout=60)[0]
    assert first.returncode == 143, remaining
    assert "stopped by SIGTERM" in remaining
    second = run_trainer(env)
    assert second.returncode == 0
    assert "resuming at epoch" in second.stdout
    assert [e["epoch"] for e in second.metrics_json()["history"]] == [1, 2, 3, 4, 5, 6]
    assert os.path.isfile(second.run_dir() / "model.keras")
