"""Data-parallel training for real: the CPU split into two mirrored devices, and two trainer processes
training one model over loopback with TensorFlow's collectives, through local mode (the same builder
output and TF_CONFIG scheme as an Indexed Job's pods)."""

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.conftest import DataMirror, contract_env, data_mirror_for, run_trainer
from tests.support.mnist_data import synthetic_mnist
from tests.support.servers import trainer_environment

REPO = Path(__file__).resolve().parents[2]


def two_worker_manifest(path: Path, data: DataMirror, *, epochs: int, name: str = "pair") -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "training.mnist-operator.io/v1alpha1",
                "kind": "MnistTraining",
                "metadata": {"name": name},
                "spec": {
                    "workers": 2,
                    "epochs": epochs,
                    "seed": 7,
                    "batchSize": 64,
                    "dataset": {"url": data.idx_url, "sha256": data.sha256},
                    "output": {"formats": ["keras"], "modelCard": False},
                },
            }
        )
    )
    return path


def local_command(manifest: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mnist_operator", "local", "-f", str(manifest), *extra]


def rows(output: str, name: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines() if line.startswith(name + " ")]


def test_two_mirrored_cpu_devices_train_to_the_accuracy_of_one(
    tmp_path: Path, data_mirror: DataMirror
) -> None:
    one = run_trainer(contract_env(tmp_path / "one", data_mirror, MNIST_EPOCHS="3"))
    two = run_trainer(contract_env(tmp_path / "two", data_mirror, MNIST_EPOCHS="3", MNIST_CPU_REPLICAS="2"))
    assert one.returncode == 0, one.stdout + one.stderr
    assert two.returncode == 0, two.stdout + two.stderr
    assert "training mirrored over 2 devices: /device:CPU:0, /device:CPU:1" in two.stdout
    assert "training mirrored" not in one.stdout
    # The same global batch split over two replicas is the same gradient step, up to summation order.
    accuracy_one = float(one.metrics_json()["test"]["accuracy"])  # type: ignore[index]
    accuracy_two = float(two.metrics_json()["test"]["accuracy"])  # type: ignore[index]
    assert accuracy_two > 0.5 and abs(accuracy_two - accuracy_one) <= 0.03, (accuracy_one, accuracy_two)
    assert (two.run_dir() / "model.keras").is_file()


def test_two_workers_train_one_model_and_only_the_chief_writes(
    tmp_path: Path, data_mirror: DataMirror
) -> None:
    manifest = two_worker_manifest(tmp_path / "pair.yaml", data_mirror, epochs=2)
    done = subprocess.run(
        local_command(manifest),
        cwd=tmp_path,
        env=trainer_environment({}),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert rows(done.stdout, "pair")[-1][:3] == ["pair", "Succeeded", "2/2"], done.stdout
    run_dir = tmp_path / "runs" / "default" / "pair"
    chief, worker = (run_dir / "trainer.log").read_text(), (run_dir / "trainer-1.log").read_text()
    assert "worker 0 of 2 (the chief)" in chief and "all 2 workers joined: 2 replicas in sync" in chief
    assert "worker 1 of 2 (not the chief)" in worker and "worker 1 finished training" in worker
    # Both logged the same global figures for every epoch: one model, trained together.
    figures = re.compile(r"epoch (\d)/2  (loss \S+  accuracy \S+  val_loss \S+  val_accuracy \S+)")
    assert figures.findall(chief) == figures.findall(worker) and len(figures.findall(chief)) == 2
    report = json.loads((run_dir / "metrics.json").read_text())
    assert report["epochs"] == 2 and report["test"]["accuracy"] > 0.5
    assert (run_dir / "model.keras").is_file()
    assert "metrics written" in chief and "metrics written" not in worker
    assert "model exported" not in worker and "Pushgateway" not in worker


@pytest.fixture
def bigger_mirror(tmp_path: Path) -> Iterator[DataMirror]:
    """Enough images for an epoch of a few seconds: a kill must land inside one."""
    arrays: dict[str, npt.NDArray[np.uint8]] = synthetic_mnist(n_train=9000, n_test=500, seed=3)
    with data_mirror_for(tmp_path, arrays) as mirror:
        yield mirror


def test_a_worker_killed_mid_epoch_restarts_the_set_which_resumes(
    tmp_path: Path, bigger_mirror: DataMirror
) -> None:
    epochs = 4
    manifest = two_worker_manifest(tmp_path / "pair.yaml", bigger_mirror, epochs=epochs)
    run_dir = tmp_path / "runs" / "default" / "pair"
    started = subprocess.Popen(
        local_command(manifest, "--no-pushgateway"),
        cwd=tmp_path,
        env=trainer_environment({}),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        finished_before_kill = wait_for_epoch_end(run_dir / "trainer-1.log", first=1, last=epochs - 1)
        time.sleep(0.5)  # into the next epoch
        worker = worker_pid(started.pid, index=1)
        killed_at = time.monotonic()
        subprocess.run(["kill", "-KILL", str(worker)], check=True)
        output = started.communicate(timeout=600)[0]
    finally:
        if started.poll() is None:
            started.send_signal(signal.SIGINT)
            started.communicate(timeout=60)
    assert started.returncode == 0, output
    assert "mnist-operator: worker 1 failed (Killed); restarting the 2 workers" in output, output
    assert rows(output, "pair")[-1][:3] == ["pair", "Succeeded", f"{epochs}/{epochs}"], output
    chief_log = (run_dir / "trainer.log").read_text()
    # At most one epoch redone: the set resumed right after the last epoch finished before the kill.
    resumed = [int(n) for n in re.findall(r"resuming at epoch (\d+)/", chief_log)]
    assert resumed == [finished_before_kill + 1], chief_log
    report = json.loads((run_dir / "metrics.json").read_text())
    assert [entry["epoch"] for entry in report["history"]] == list(range(1, epochs + 1))
    print(
        f"killed worker 1 in epoch {finished_before_kill + 1}/{epochs}; resumed there; done "
        f"{time.monotonic() - killed_at:.1f}s after the kill, test accuracy {report['test']['accuracy']:.4f}"
    )


def wait_for_epoch_end(log: Path, *, first: int, last: int, timeout: float = 300) -> int:
    """The epoch number once worker 1 has logged the end of one in [first, last]."""
    deadline = time.monotonic() + timeout
    pattern = re.compile(r"epoch (\d+)/\d+  loss")
    while time.monotonic() < deadline:
        ended = [int(n) for n in pattern.findall(log.read_text())] if log.exists() else []
        if ended and first <= ended[-1] <= last:
            return ended[-1]
        time.sleep(0.1)
    raise AssertionError(f"no epoch end in {log} within {timeout}s")


def worker_pid(parent: int, *, index: int) -> int:
    """The trainer process of worker ``index``, a child of local mode's process."""
    for line in subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True, check=True
    ).stdout.split():
        environ = Path(f"/proc/{line}/environ").read_bytes().split(b"\0")
        if f"JOB_COMPLETION_INDEX={index}".encode() in environ:
            return int(line)
    raise AssertionError(f"no worker {index} under {parent}")
