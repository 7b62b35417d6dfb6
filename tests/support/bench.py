"""Running the operator benchmark (``python -m bench.operator_scale``) small, as the test that keeps
``make bench`` working does (tests/k8s/test_operator_scale_bench.py).

A benchmark is not a test, and these tests assert no timing: they run the harness at a few resources
and check that every run completed and that the counts it reports (Jobs, Job POSTs, status epochs,
Pushgateway polls) are the ones a working operator produces.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MODULE = "bench.operator_scale"


def run_operator_scale(
    resources: int, results: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> dict[str, Any]:
    """Both operators at one scale point on a real control plane; returns the results document."""
    argv = [sys.executable, "-m", MODULE, "--resources", str(resources)]
    argv += ["--window", "3", "--lag-samples", "2", "--json", str(results)]
    done = subprocess.run(
        argv,
        cwd=REPO,
        env=os.environ | (env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{MODULE} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    document: dict[str, Any] = json.loads(results.read_text())
    assert document["benchmark"] == "operator_scale"
    assert "Operator scale (real control plane" in done.stdout
    return document


def assert_counts(document: dict[str, Any], resources: int) -> None:
    """What any complete run must show, whatever the machine's speed."""
    runs = document["runs"][str(resources)]
    for kind in ("baseline", "ours"):
        (run,) = runs[kind]
        assert run["ok"], run["error"]
        assert run["jobs"] == resources, run
        # One POST per Job: a real API server gives kopf no reason to run a create handler twice.
        assert run["api_requests_create"]["CREATE jobs"] == resources, run["api_requests_create"]
        assert run["latency_p50_ms"] > 0 and run["rss_hwm_mib"] > 0
    ours = runs["ours"][0]
    # Ours writes status (the baseline never does), and every run's pushed epoch reached its status.
    assert ours["api_requests_create"].get("UPDATE mnisttrainings/status", 0) >= resources
    assert ours["push_lag_samples"] == 2 and ours["burst_lag_max_s"] is not None
    # One shared poller: at least one GET in the 3 s window, never more than one per interval.
    assert 1 <= ours["pgw_gets_in_window"] <= ours["pgw_window_s"] / 1.0 + 1
    assert runs["baseline"][0]["pgw_gets_in_window"] == 0
    assert len(document["targets"]) == 1 and "slowest create→Job" in document["targets"][0]
