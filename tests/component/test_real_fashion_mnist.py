"""Genuine Fashion-MNIST (Debian's dataset-fashion-mnist), served over loopback, through the trainer."""

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import contract_env, run_trainer
from tests.support.servers import Pushgateway, serve_directory

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
def test_convnet_reaches_85_percent_on_real_fashion_mnist_in_two_epochs(
    tmp_path: Path, pushgateway: Pushgateway
) -> None:
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
            MNIST_EPOCHS="2",
            MNIST_BATCH_SIZE="128",
            MNIST_PUSHGATEWAY_URL=pushgateway.url,
        )
        run = run_trainer(env, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = run.metrics_json()
    print(
        "\n"
        + "\n".join(
            line for line in run.stdout.splitlines() if re.search(r"epoch \d/2  loss|test:|data:", line)
        )
    )
    assert report["test"]["accuracy"] >= 0.85
    assert [e["epoch"] for e in report["history"]] == [1, 2]
    assert report["model"]["parameters"] == 104_202
    # The model card, with Fashion-MNIST's class names rather than bare labels.
    card = Path(report["modelCard"]["file"]).read_text(encoding="utf-8")
    assert "6 `Shirt`" in card
    assert all(Path(plot).is_file() for plot in report["modelCard"]["plots"])
