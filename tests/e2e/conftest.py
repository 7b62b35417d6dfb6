"""Prerequisites of the kind end-to-end tier.

The test skips only when the machine lacks something it needs, and the reason names exactly what: a Docker
engine that answers ``docker info`` (the CLI alone is not enough), docker buildx, ``kind``, ``helm``,
``kubectl``, ``curl``. hack/kind-e2e.sh decides that (``hack/kind-e2e.sh preflight``), so running the script by
hand and running the test agree. Where the tier must run (a CI job with Docker), set ``MNIST_E2E_REQUIRED=1``:
then a missing prerequisite is a failure, not a skip, and the tier cannot vanish from a run unnoticed.
``CI`` alone does not make it required: the project's CI machines have no Docker engine.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "kind-e2e.sh"
REQUIRED_ENV = "MNIST_E2E_REQUIRED"
MISSING_PREFIX = "missing: "


def required(environ: Mapping[str, str]) -> bool:
    return environ.get(REQUIRED_ENV, "").strip().lower() not in ("", "0", "false", "no")


def missing_prerequisites(environ: Mapping[str, str]) -> list[str]:
    """What ``hack/kind-e2e.sh preflight`` reports missing; an unexpected answer is an error, never a skip."""
    result = subprocess.run(
        ["bash", str(SCRIPT), "preflight"],
        env=dict(environ),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    missing = [
        line.removeprefix(MISSING_PREFIX)
        for line in result.stdout.splitlines()
        if line.startswith(MISSING_PREFIX)
    ]
    if result.returncode not in (0, 3) or (result.returncode == 3) != bool(missing):
        raise RuntimeError(
            f"hack/kind-e2e.sh preflight exited {result.returncode} with {result.stdout!r} {result.stderr!r}"
        )
    return missing


def skip_or_fail(missing: list[str], environ: Mapping[str, str]) -> None:
    if not missing:
        return
    reason = "kind e2e prerequisites missing: " + "; ".join(missing)
    if required(environ):
        pytest.fail(f"{reason} ({REQUIRED_ENV} is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(f"{reason} (set {REQUIRED_ENV}=1 to make this a failure)")


@pytest.fixture(scope="session")
def kind_prerequisites() -> None:
    skip_or_fail(missing_prerequisites(os.environ), os.environ)
