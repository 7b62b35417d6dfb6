"""Every benchmark runs as a module from the repository root (``python -m bench.<name>``, as ``make bench``
runs them) and explains itself: ``--help`` exits 0 with its usage.

That imports each benchmark whole (the project's packages, ``bench._common`` and ``bench.harness``, the
test suite's servers and harness in ``tests.support``, TensorFlow for the trainer's), with the repository
root on the path only as the working directory of ``python -m``: an import that worked only through a
``sys.path`` edit, or a harness module that moved, fails here rather than late in a long ``make bench``.
The operator benchmark is run end to end, small, in tests/k8s/test_operator_scale_bench.py.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What `make bench` runs: bench/[!_]*.py (bench/_common.py and bench/harness/ are helpers).
BENCHMARKS = sorted(path.stem for path in (REPO / "bench").glob("[!_]*.py"))


def without_the_repository_on_pythonpath() -> dict[str, str]:
    """The environment, minus the repository root in PYTHONPATH if a developer's shell put it there: the
    benchmarks must find ``bench`` and ``tests`` from their working directory, as ``make bench`` runs them."""
    env = dict(os.environ)
    entries = [e for e in env.get("PYTHONPATH", "").split(os.pathsep) if e and Path(e).resolve() != REPO]
    env["PYTHONPATH"] = os.pathsep.join(entries)
    return env


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_runs_as_a_module_and_explains_itself(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--help"],
        cwd=REPO,
        env=without_the_repository_on_pythonpath(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.startswith(f"usage: python -m bench.{name} "), done.stdout[:500]
