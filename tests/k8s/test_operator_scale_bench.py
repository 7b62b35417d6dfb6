"""The operator benchmark (``python -m bench.operator_scale``) still runs end to end on the real control
plane (no timing is asserted).

The benchmark starts control planes of its own from the same pinned binaries (MNIST_K8S_BIN)."""

from pathlib import Path

from tests.support.bench import assert_counts, run_operator_scale
from tests.support.k8s.binaries import Binaries


def test_the_operator_scale_benchmark_completes_on_a_real_control_plane(
    k8s_binaries: Binaries, tmp_path: Path
) -> None:
    env = {"MNIST_K8S_BIN": str(k8s_binaries.dir)}
    document = run_operator_scale(5, tmp_path / "operator_scale.json", env=env)
    assert document["machine"]["kubernetes"].startswith("v1.")
    assert_counts(document, 5)
