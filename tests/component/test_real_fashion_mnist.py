"""Genuine Fashion-MNIST (Debian's dataset-fashion-mnist), served over loopback, through the trainer."""

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from mnist_api.spec import MnistTrainingSpec
from tests.conftest import contract_env, run_trainer
from tests.support.servers import Pushgateway, serve_directory

FASHION = Path("/usr/share/datasets/fashion-mnist")


# The real-data gate (issue 14 item 9): the seeds' convnet with the spec's defaults (adam peaking at lr
# 0.004 under the cosine schedule, batch 128, 5 epochs) passes 0.90 test accuracy on genuine
# Fashion-MNIST (0.906-0.913 over three seeds in docs/benchmarks.md section 2; 0.90 sits near this small
# model's plateau). A smaller validation split keeps more images for training, as a user tuning for
# accuracy would.
DEFAULTS = MnistTrainingSpec()
EPOCHS = DEFAULTS.epochs


@pytest.mark.slow
def test_convnet_reaches_90_percent_on_real_fashion_mnist(tmp_path: Path, pushgateway: Pushgateway) -> None:
    if not FASHION.is_dir():
        if os.environ.get("CI"):
            pytest.fail("dataset-fashion-mnist is not installed: .ci/run must apt-get install it")
        pytest.skip("apt-get install dataset-fashion-mnist")
    # Debian recompressed the files: same images, other gzip bytes, so the canonical sums do not apply.
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in FASHION.glob("*.gz")}
    with serve_directory(FASHION) as mirror:
        env = contract_env(
            tmp_path,
            None,
            MNIST_DATASET="fashion-mnist",
            MNIST_DATASET_URL=mirror.url,
            MNIST_DATASET_SHA256=json.dumps(sums),
            MNIST_EPOCHS=str(EPOCHS),
            MNIST_BATCH_SIZE=str(DEFAULTS.batch_size),
            MNIST_LEARNING_RATE=str(DEFAULTS.learning_rate),
            MNIST_OPTIMIZER=DEFAULTS.optimizer.value,
            MNIST_LEARNING_RATE_SCHEDULE=json.dumps(
                DEFAULTS.learning_rate_schedule.model_dump(by_alias=True)
            ),
            MNIST_VALIDATION_SPLIT="0.05",
            MNIST_PUSHGATEWAY_URL=pushgateway.url,
        )
        run = run_trainer(env, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = run.metrics_json()
    print(
        "\n"
        + "\n".join(
            line
            for line in run.stdout.splitlines()
            if re.search(rf"epoch \d/{EPOCHS}  loss|test:|data:", line)
        )
    )
    assert report["test"]["accuracy"] >= 0.90
    assert [e["epoch"] for e in report["history"]] == list(range(1, EPOCHS + 1))
    assert report["model"]["parameters"] == 104_202
    # The model card, with Fashion-MNIST's class names rather than bare labels.
    card = Path(report["modelCard"]["file"]).read_text(encoding="utf-8")
    assert "6 `Shirt`" in card
    assert all(Path(plot).is_file() for plot in report["modelCard"]["plots"])
