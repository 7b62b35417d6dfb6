"""The checks of a kind run's evidence: the files hack/kind-e2e.sh leaves in its artifacts folder.

``test_kind.py`` applies them to a real run, so the tier fails on the product, not only when the script
exits non-zero. ``test_kind_script.py`` applies them to the files the script writes against stand-in tools,
so this checker and the script agree on names and formats wherever the tests run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# What README.md and docs/operator.md promise `kubectl get mnisttrainings` shows (the CRD's printer columns).
COLUMNS = ["NAME", "PHASE", "EPOCH", "ACCURACY", "VAL-ACC", "LOSS", "AGE"]
COLUMNS_WIDE = ["NAME", "PHASE", "EPOCH", "ACCURACY", "VAL-ACC", "LOSS", "TEST-ACC", "POD", "MODEL", "AGE"]
# The seeds' `curl … | grep gangplank_train`, and the test figure, for this run's group.
SERIES = ("gangplank_train_accuracy", "gangplank_train_epochs_count", "gangplank_test_accuracy")


def read_settings(artifacts: Path) -> dict[str, str]:
    pairs = (line.partition("=") for line in (artifacts / "settings.env").read_text().splitlines() if line)
    return {key: value for key, _, value in pairs}


def fraction(text: str, what: str) -> float:
    value = float(text)
    assert 0 < value <= 1, f"{what} is {text}, not an accuracy"
    return value


def row_of(path: Path, columns: list[str], name: str) -> list[str]:
    header, *rows = path.read_text().splitlines()
    assert header.split() == columns, f"{path.name}: columns {header.split()}, expected {columns}"
    matching = [r.split() for r in rows if r.split() and r.split()[0] == name]
    assert len(matching) == 1, f"{path.name} has {len(matching)} rows for {name}:\n{path.read_text()}"
    (row,) = matching
    assert len(row) == len(columns), f"{path.name}: a column is empty in {row}"
    return row


def metric_values(metrics: list[str], metric: str, name: str) -> list[float]:
    """The values of ``metric`` for training ``name`` in a Prometheus text exposition."""
    lines = [m for m in metrics if m.startswith(metric + "{") and f'training="{name}"' in m]
    return [float(line.rsplit("} ", 1)[1].split()[0]) for line in lines]


def check_evidence(artifacts: Path) -> None:
    """What the script's own checks saw, checked again from the files it left."""
    settings = read_settings(artifacts)
    name, epochs = settings["TRAINING"], int(settings["EPOCHS"])
    minimum = float(settings["MIN_TEST_ACCURACY"])
    assert (artifacts / "passed").exists(), "the script exited 0 without reaching its end"

    # The resource as the operator left it.
    training: dict[str, Any] = json.loads((artifacts / "training.json").read_text())
    status = training["status"]
    assert status["phase"] == "Succeeded", status
    assert status["epoch"] == status["epochs"] == epochs, status
    assert status["progress"] == f"{epochs}/{epochs}", status
    assert fraction(str(status["testAccuracy"]), "status.testAccuracy") >= minimum, status
    model_path = f"pvc://{settings['OUTPUT_CLAIM']}/{settings['NAMESPACE']}/{name}/model.keras"
    assert status["modelPath"] == model_path, status
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Succeeded"] == "True" and conditions["MetricsAvailable"] == "True", conditions

    # The printer columns, as `kubectl get mnisttrainings` and `-o wide` showed them.
    row = row_of(artifacts / "get.txt", COLUMNS, name)
    assert row[1:3] == ["Succeeded", f"{epochs}/{epochs}"], row
    fraction(row[3], "ACCURACY")
    fraction(row[4], "VAL-ACC")
    assert float(row[5]) >= 0, row
    wide = row_of(artifacts / "get-wide.txt", COLUMNS_WIDE, name)
    assert wide[1:6] == row[1:6], (wide, row)
    assert fraction(wide[6], "TEST-ACC") >= minimum, wide
    assert wide[7].startswith(f"{status['jobName']}-"), f"POD is {wide[7]}, not a pod of {status['jobName']}"
    assert wide[8] == model_path, wide

    # The trainer pod's `kubectl logs`: one closing line per epoch, the final line, no progress bars.
    log_text = (artifacts / "trainer.log").read_text()
    for epoch in range(1, epochs + 1):
        assert re.search(rf"\bepoch {epoch}/{epochs}  loss \d", log_text), f"no epoch {epoch}/{epochs} line"
    assert re.search(rf"\bdone: test accuracy 0\.\d+ after {epochs} epochs\b", log_text), "no closing line"
    assert "\r" not in log_text, "kubectl logs shows carriage-return progress bars"

    # The gangplank_ series the trainer pushed, then their removal with the resource.
    metrics = (artifacts / "pushgateway-metrics.txt").read_text().splitlines()
    found = {metric: metric_values(metrics, metric, name) for metric in SERIES}
    assert all(len(values) == 1 for values in found.values()), found
    fraction(str(found["gangplank_train_accuracy"][0]), "gangplank_train_accuracy")
    assert found["gangplank_train_epochs_count"] == [epochs], found
    assert fraction(str(found["gangplank_test_accuracy"][0]), "gangplank_test_accuracy") >= minimum, found
    after = (artifacts / "pushgateway-after-delete.txt").read_text()
    assert f'training="{name}"' not in after, "the run's metrics outlived the resource"
    assert (artifacts / "children-after-delete.txt").read_text() == "", "Job or pods outlived the resource"

    # The images as built.
    images: list[dict[str, Any]] = json.loads((artifacts / "images.json").read_text())
    assert len(images) == 2, "images.json should describe the operator and trainer images"
    for image in images:
        assert image["Config"]["User"] == "1000:1000"
        assert image["Config"]["Labels"]["org.opencontainers.image.revision"] not in ("", "unknown")
