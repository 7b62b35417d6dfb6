"""The spec reference (docs/spec-reference.md) is generated from the models; the checked-in copy must not
drift."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_checked_in_spec_reference_matches_the_models() -> None:
    from mnist_api.reference import render_reference

    checked_in = (REPO / "docs" / "spec-reference.md").read_text()
    assert checked_in == render_reference(), "docs/spec-reference.md is stale: run `make docs`"
    assert "| `spec.epochs` | integer | `5` | >= 1; <= 1000 | Training epochs. |" in checked_in
