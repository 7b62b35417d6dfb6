"""What the trainer prints is its own: TensorFlow's start-up lines stay out of ``kubectl logs`` and local
mode's log, and errors still come through.

``TF_ENABLE_ONEDNN_OPTS=1`` switches oneDNN on as it is by default on Intel CPUs, so the oneDNN line is
logged on any machine that runs these tests (the first test proves it is, without the trainer).
"""

import subprocess
import sys
from pathlib import Path

from tests.conftest import DataMirror, contract_env, run_trainer
from tests.support.servers import free_port, trainer_environment

ONEDNN_ON = {"TF_ENABLE_ONEDNN_OPTS": "1"}
# The records TensorFlow's libraries log while loading, before they honour TF_CPP_MIN_LOG_LEVEL (and the
# line absl puts before them); the cpu_feature_guard one is logged only where the CPU has instructions
# the build does not use.
START_UP_LINES = (
    "oneDNN custom operations are on",
    "cpu_feature_guard",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "absl::InitializeLog",
)


def start_up_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if any(fragment in line for fragment in START_UP_LINES)]


def test_tensorflow_does_log_the_start_up_lines_here_whatever_the_level() -> None:
    # The control: without the trainer's filter, TF_CPP_MIN_LOG_LEVEL=2 (what the trainer sets) does not
    # stop them. If this fails, TensorFlow no longer logs them and mnist_trainer/startup_log.py may go.
    env = trainer_environment({**ONEDNN_ON, "TF_CPP_MIN_LOG_LEVEL": "2"})
    done = subprocess.run(
        [sys.executable, "-c", "import tensorflow"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "oneDNN custom operations are on" in done.stderr, done.stderr


def test_a_trainer_run_prints_none_of_tensorflows_start_up_lines(
    tmp_path: Path, data_mirror: DataMirror
) -> None:
    run = run_trainer(contract_env(tmp_path, data_mirror, MNIST_MODEL="mlp", MNIST_EPOCHS="1", **ONEDNN_ON))
    assert run.returncode == 0, run.stdout + run.stderr
    assert not start_up_lines(run.stdout + run.stderr), run.stdout + run.stderr
    assert run.stderr == ""
    assert "epoch 1/1  loss" in run.stdout and "done: test accuracy" in run.stdout


def test_a_deliberate_error_still_shows(tmp_path: Path) -> None:
    # The data step runs after TensorFlow has loaded, as every failure of a run does.
    env = contract_env(
        tmp_path, None, MNIST_DATASET_URL=f"http://127.0.0.1:{free_port()}/mnist/", **ONEDNN_ON
    )
    run = run_trainer(env)
    assert run.returncode == 66, run.stdout + run.stderr
    assert "ERROR" in run.stdout and "download failed after 2 attempts" in run.stdout
    assert not start_up_lines(run.stdout + run.stderr), run.stdout + run.stderr
