"""Tier 4: one real training on a kind cluster, with the real images and the Helm chart.

``test_a_training_on_kind`` runs hack/kind-e2e.sh (the steps are listed at its top) and then checks again, in
Python, the evidence the script left in its artifacts folder (evidence.py): the training's phase and
conditions, the printer columns, the trainer pod's ``kubectl logs`` and the gangplank_ metrics it pushed. So
it fails on the product, and a script that stopped early without failing cannot pass. It skips only where a
prerequisite is missing (conftest.py; ``MNIST_E2E_REQUIRED=1`` turns that into a failure).

The checks of the script itself, which run everywhere, are in test_kind_script.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import SCRIPT
from .evidence import check_evidence

SCRIPT_TIMEOUT = 3300  # seconds; below the test's own timeout, so the script can still clean up


def tail(path: Path, lines: int = 150) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.mark.e2e
@pytest.mark.timeout(SCRIPT_TIMEOUT + 300)
def test_a_training_on_kind(kind_prerequisites: None, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    log = tmp_path / "kind-e2e.log"
    env = {**os.environ, "E2E_ARTIFACTS": str(artifacts)}
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", str(SCRIPT), "run"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            code = process.wait(timeout=SCRIPT_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.terminate()  # the script's trap collects diagnostics and deletes the cluster
            process.wait(timeout=240)
            pytest.fail(f"hack/kind-e2e.sh ran past {SCRIPT_TIMEOUT}s (log {log}):\n{tail(log)}")
    assert code == 0, f"hack/kind-e2e.sh failed with {code} (log {log}, evidence {artifacts}):\n{tail(log)}"

    check_evidence(artifacts)
