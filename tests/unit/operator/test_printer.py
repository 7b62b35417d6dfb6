import datetime

import pytest

from mnist_operator.printer import cells, header, human_age

NOW = datetime.datetime(2026, 11, 23, 10, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (192, "3m12s"),
        (600, "10m"),
        (7500, "125m"),
        (11100, "3h5m"),
        (20 * 3600 + 60, "20h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (30 * 86400, "30d"),
    ],
)
def test_ages_read_like_kubectls(seconds: int, expected: str) -> None:
    start = (NOW - datetime.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    assert human_age(start, NOW) == expected


def test_rows_follow_the_crds_printer_columns() -> None:
    document = {
        "metadata": {"name": "digits", "creationTimestamp": "2026-11-23T09:59:50Z"},
        "status": {
            "phase": "Running",
            "progress": "2/5",
            "accuracy": 0.9712,
            "valAccuracy": 0.98,
            "loss": 0.09,
        },
    }
    assert header() == ["NAME", "PHASE", "EPOCH", "ACCURACY", "VAL-ACC", "LOSS", "AGE"]
    assert cells(document, NOW) == ["digits", "Running", "2/5", "0.9712", "0.98", "0.09", "10s"]
    assert header(wide=True)[-6:] == ["TEST-ACC", "PREDICTED", "WORKERS", "POD", "MODEL", "AGE"]
    assert header(wide=True)[:3] == ["NAME", "TASK", "PHASE"]
    assert cells({"metadata": {"name": "x"}}, NOW) == ["x", "", "", "", "", "", ""]


def test_a_multi_worker_training_shows_its_ready_workers_in_the_wide_columns() -> None:
    document = {"metadata": {"name": "digits"}, "status": {"phase": "Running", "workerReadiness": "1/2"}}
    wide = dict(zip(header(wide=True), cells(document, NOW, wide=True), strict=True))
    assert wide["WORKERS"] == "1/2"
    assert "WORKERS" not in header()
