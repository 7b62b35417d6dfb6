"""Fixtures shared by every tier: real servers on loopback and generated MNIST-format data; and, through
the plugin tests/support/k8s/fixtures.py, the pinned Kubernetes binaries and helm that tests/k8s and
tests/chart share."""

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.support.mnist_data import synthetic_mnist, write_idx_quartet, write_npz
from tests.support.servers import Mirror, Pushgateway, serve_directory, start_pushgateway, trainer_environment

# Session fixtures that more than one test folder uses (a conftest.py serves only the folder it is in).
pytest_plugins = ("tests.support.k8s.fixtures",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With two workers (hack/run-tests.sh runs ``pytest -n 2 --dist loadgroup``), every test on the real
    cluster goes to one worker, in file order: they share its nodes (a session fixture), and most of their
    time is spent waiting on Kubernetes (pod starts, a Job's back-off between attempts), which the other
    worker fills with the CPU-bound tiers."""
    for item in items:
        if item.get_closest_marker("k8s") or item.nodeid.startswith("tests/k8s/"):
            item.add_marker(pytest.mark.xdist_group("cluster"))


@pytest.fixture(scope="session")
def synthetic_arrays() -> dict[str, npt.NDArray[np.uint8]]:
    return synthetic_mnist()


@pytest.fixture
def pushgateway() -> Iterator[Pushgateway]:
    gateway = start_pushgateway()
    try:
        yield gateway
    finally:
        gateway.stop()


@dataclass
class DataMirror:
    mirror: Mirror
    sha256: dict[str, str]

    @property
    def idx_url(self) -> str:
        return self.mirror.url + "idx/"

    @property
    def npz_url(self) -> str:
        return self.mirror.url + "npz/mnist.npz"


@contextmanager
def data_mirror_for(tmp_path: Path, arrays: dict[str, npt.NDArray[np.uint8]]) -> Iterator[DataMirror]:
    """Generated MNIST in both formats, served over loopback HTTP so the real download path runs."""
    root = tmp_path / "mirror"
    files = write_idx_quartet(root / "idx", arrays)
    files["mnist.npz"] = write_npz(root / "npz" / "mnist.npz", arrays)
    sums = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    with serve_directory(root) as mirror:
        yield DataMirror(mirror, sums)


@pytest.fixture
def data_mirror(tmp_path: Path, synthetic_arrays: dict[str, npt.NDArray[np.uint8]]) -> Iterator[DataMirror]:
    with data_mirror_for(tmp_path, synthetic_arrays) as mirror:
        yield mirror


@dataclass
class TrainerRun:
    returncode: int
    stdout: str
    stderr: str
    output_dir: Path

    def run_dir(self, namespace: str = "default", name: str = "test") -> Path:
        return self.output_dir / namespace / name

    def metrics_json(self, namespace: str = "default", name: str = "test") -> dict[str, object]:
        loaded: dict[str, object] = json.loads((self.run_dir(namespace, name) / "metrics.json").read_text())
        return loaded


def contract_env(tmp_path: Path, data: DataMirror | None, **overrides: str) -> dict[str, str]:
    """A trainer environment as the operator would build it, for a small fast run."""
    env = {
        "MNIST_NAMESPACE": "default",
        "MNIST_NAME": "test",
        "MNIST_UID": "uid-1",
        "MNIST_DATASET": "mnist",
        "MNIST_DATA_DIR": str(tmp_path / "data"),
        "MNIST_OUTPUT_DIR": str(tmp_path / "output"),
        "MNIST_MODEL": "convnet",
        "MNIST_EPOCHS": "2",
        "MNIST_BATCH_SIZE": "64",
        "MNIST_LEARNING_RATE": "0.001",
        "MNIST_OPTIMIZER": "adam",
        "MNIST_VALIDATION_SPLIT": "0.1",
        "MNIST_SEED": "7",
        "MNIST_EXPORT_FORMATS": '["keras", "savedmodel"]',
        "MNIST_HISTOGRAM_BUCKETS": json.dumps(
            [-0.3, -0.25, -0.2, -0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
        ),
        "MNIST_DOWNLOAD_ATTEMPTS": "2",
        "MNIST_DOWNLOAD_BACKOFF_SECONDS": "0.05",
    }
    if data is not None:
        env["MNIST_DATASET_URL"] = data.idx_url
        env["MNIST_DATASET_SHA256"] = json.dumps(data.sha256)
    env.update(overrides)
    return env


def run_trainer(env: dict[str, str], timeout: float = 300) -> TrainerRun:
    """Run the trainer exactly as a pod does: ``python -m mnist_trainer`` with only the contract env."""
    completed = subprocess.run(
        [sys.executable, "-m", "mnist_trainer"],
        env=trainer_environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=os.environ.get("TMPDIR", "/tmp"),
    )
    return TrainerRun(completed.returncode, completed.stdout, completed.stderr, Path(env["MNIST_OUTPUT_DIR"]))
