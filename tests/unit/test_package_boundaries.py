"""Each image ships one package: the operator image never pulls TensorFlow, the trainer never kopf."""

import json
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "kopf", "kubernetes", "aiohttp", "prometheus_client", "numpy")
FORBIDDEN = {
    "mnist_api": HEAVY,
    "mnist_trainer": ("kopf", "kubernetes", "aiohttp"),
    "mnist_trainer.pipeline": ("kopf", "kubernetes", "aiohttp"),
    "mnist_operator": ("tensorflow", "keras", "numpy"),
}


def imported_after(module: str) -> set[str]:
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_module_does_not_pull_the_other_side(module: str) -> None:
    leaked = imported_after(module) & set(FORBIDDEN[module])
    assert not leaked, f"importing {module} loaded {sorted(leaked)}"


def test_the_trainer_really_uses_what_the_check_looks_for() -> None:
    # Guards the test above against checking names that never appear at all.
    assert {"tensorflow", "keras"} <= imported_after("mnist_trainer.pipeline")
