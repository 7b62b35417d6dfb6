"""``python -m bench.operator_scale`` on its kmock tier still runs end to end (no timing is asserted)."""

from pathlib import Path

from tests.support.bench import assert_counts, run_operator_scale


def test_the_operator_scale_benchmark_completes_on_kmock(tmp_path: Path) -> None:
    document = run_operator_scale("kmock", 5, tmp_path / "operator_scale.json")
    assert document["settings"]["resource_versions"] is True
    assert_counts(document, 5)
