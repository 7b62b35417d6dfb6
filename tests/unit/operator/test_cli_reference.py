"""The command-line reference (docs/cli.md) is generated from the parser; the checked-in copy must not
drift."""

from pathlib import Path

import pytest

from mnist_operator.cli_reference import render_cli_reference

REPO = Path(__file__).resolve().parents[3]


def test_checked_in_cli_reference_matches_the_parser() -> None:
    checked_in = (REPO / "docs" / "cli.md").read_text()
    assert checked_in == render_cli_reference(), "docs/cli.md is stale: run `make docs`"
    assert "| `-q`, `--quiet` |  | print only the final status row" in checked_in
    assert "| `--runs-dir RUNS_DIR` | `runs` |" in checked_in


def test_the_reference_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = render_cli_reference()
    monkeypatch.setenv("COLUMNS", "40")  # argparse wraps help to $COLUMNS; the page must not follow it
    assert render_cli_reference() == wide
