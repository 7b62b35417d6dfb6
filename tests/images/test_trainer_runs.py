"""The trainer image really trains: its root filesystem run by Debian's runc, as a pod would run it (read-only
root, uid 1000, a tmpfs /tmp, the image's entrypoint and env plus the operator's MNIST_* contract), on
generated idx files bind-mounted read-only and read through a file:// URL, with no network and no
Pushgateway (the contract makes pushing optional). The run's files land on a bind-mounted output folder.

How the container is run, within this machine's rules (nested cgroup, no rlimits): tests/images/runc.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mnist_api.layout import (
    METRICS_FILE,
    MODEL_CARD_FILE,
    OUTPUT_MOUNT_PATH,
    PLOT_FILES,
    PLOTS_DIR,
    TMP_MOUNT_PATH,
)
from tests.support.mnist_data import synthetic_mnist, write_idx_quartet

from . import runc
from .conftest import BuiltImage

pytestmark = [pytest.mark.images, pytest.mark.slow]

SOURCE_MOUNT = "/var/lib/mnist/source"  # the generated idx files, read-only
UID = GID = 1000


@dataclass
class Run:
    returncode: int
    log: str
    output: Path


@pytest.fixture(scope="module")
def trainer_run(
    built_images: dict[str, BuiltImage],
    rootfs: Callable[[str], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Run:
    if os.geteuid() != 0:
        pytest.skip("runc needs root here")
    work = tmp_path_factory.mktemp("runc")
    source, output = work / "source", work / "output"
    files = write_idx_quartet(source, synthetic_mnist(n_train=600, n_test=200, seed=3))
    output.mkdir()
    os.chown(output, UID, GID)
    for path in (work, source, *files.values()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    env = {
        "MNIST_NAMESPACE": "default",
        "MNIST_NAME": "image-test",
        "MNIST_UID": "uid-image-test",
        "MNIST_DATASET": "mnist",
        "MNIST_DATASET_URL": f"file://{SOURCE_MOUNT}/",
        # Generated files: their own checksums replace the real MNIST ones, as a mirror's would.
        "MNIST_DATASET_SHA256": json.dumps(
            {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
        ),
        # Where the trainer caches the dataset: no data volume here, so the writable /tmp.
        "MNIST_DATA_DIR": f"{TMP_MOUNT_PATH}/data",
        "MNIST_OUTPUT_DIR": OUTPUT_MOUNT_PATH,
        "MNIST_MODEL": "mlp",
        "MNIST_EPOCHS": "1",
        "MNIST_BATCH_SIZE": "64",
        "MNIST_LEARNING_RATE": "0.001",
        "MNIST_OPTIMIZER": "adam",
        "MNIST_VALIDATION_SPLIT": "0.1",
        "MNIST_SEED": "7",
        "MNIST_EXPORT_FORMATS": '["keras"]',
        "MNIST_DOWNLOAD_ATTEMPTS": "1",
    }
    completed = runc.run(
        built_images["trainer"].archive,
        rootfs("trainer"),
        work / "containers",
        user=(UID, GID),
        env=env,
        binds=[runc.Bind(source, SOURCE_MOUNT), runc.Bind(output, OUTPUT_MOUNT_PATH, writable=True)],
    )
    return Run(completed.returncode, completed.stdout + completed.stderr, output)


def test_the_trainer_image_trains_one_epoch(trainer_run: Run) -> None:
    assert trainer_run.returncode == 0, trainer_run.log[-6000:]
    # The end-of-epoch line (mnist_trainer.progress), not just a step line or the start-up summary.
    assert re.search(r"INFO +epoch 1/1 .* img/s", trainer_run.log), trainer_run.log[-6000:]
    assert "done: test accuracy" in trainer_run.log, trainer_run.log[-6000:]


def test_the_trainer_image_writes_the_run_files(trainer_run: Run) -> None:
    assert trainer_run.returncode == 0, trainer_run.log[-6000:]
    run_dir = trainer_run.output / "default" / "image-test"
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    assert [entry["epoch"] for entry in metrics["history"]] == [1], metrics
    # No Pushgateway configured: nothing was pushed, so nothing failed.
    assert metrics["metricsPushFailures"] is None
    assert (run_dir / "model.keras").is_file()
    # The model card drew under the read-only root: matplotlib's cache went to MPLCONFIGDIR on /tmp.
    assert "error" not in metrics["modelCard"], metrics["modelCard"]
    assert (run_dir / MODEL_CARD_FILE).is_file()
    for name in PLOT_FILES:
        assert (run_dir / PLOTS_DIR / name).read_bytes()[:4] == b"\x89PNG", name
    assert "Matplotlib created a temporary" not in trainer_run.log, trainer_run.log[-6000:]
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in run_dir.rglob("*")}
    assert owners == {(UID, GID)}, owners
