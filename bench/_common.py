"""Helpers shared by the benchmarks (``trainer_overhead``, ``time_to_accuracy``, ``exporter``,
``local_startup``, ``operator_scale``): machine facts, Fashion-MNIST loading, interleaved repetitions,
statistics, tables and results files.

House rule of every benchmark here: the figure that counts is a RATIO against a baseline measured in the
same process and run, with baseline and candidate repetitions interleaved, so that whatever else the
(shared, 2-core) machine is doing slows both alike and cancels out. Absolute figures are printed too, for
orientation only. Benchmarks never assert on timings.

The leading underscore marks this file as a helper, not a benchmark: ``make bench`` runs only
``bench/[!_]*.py``, and running this file anyway does nothing (see the ``__main__`` guard at the end).
A benchmark that imports TensorFlow imports this module first (``# isort: split`` keeps it there): it sets
TensorFlow's logging and device variables for the process before TensorFlow reads them.
"""

import contextlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

# The environment as the user gave it, before the two defaults below: for child processes that must see
# what a user's shell passes (local_startup.py).
ORIGINAL_ENVIRON = dict(os.environ)
# TensorFlow's C++ start-up chatter would bury the tables; errors still come through. Set before any
# benchmark imports TensorFlow (those that do import this module first).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

T = TypeVar("T")
# Other work shares this machine; the load when a benchmark started goes into its results file.
LOAD_AT_START = [round(x, 2) for x in os.getloadavg()]


# -- the machine -------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """What the figures were measured on; every results file carries it."""
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_gib": mem_gib,
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


TRAINER_LIBRARIES = ("tensorflow-cpu", "tensorflow", "keras", "numpy", "prometheus-client", "matplotlib")


def library_versions(names: Sequence[str] = TRAINER_LIBRARIES) -> dict[str, str]:
    """Installed versions of what decides the speed (from package metadata: no import needed); the ones
    not installed are left out."""
    versions = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


# -- data --------------------------------------------------------------------------------------------
def load_fashion_mnist(data_dir: Path = FASHION_MNIST_DIR) -> dict[str, Any]:
    """The genuine Fashion-MNIST quartet, parsed with the trainer's own idx reader."""
    from mnist_trainer.datasets import IDX_FILES
    from mnist_trainer.idx import parse_idx

    missing = [name for name in IDX_FILES if not (data_dir / name).is_file()]
    if missing:
        sys.exit(
            f"Fashion-MNIST not found in {data_dir} (missing {', '.join(missing)}): apt-get install "
            "fashion-mnist, or pass --data-dir to a folder with the four idx .gz files"
        )
    x_train, y_train, x_test, y_test = (parse_idx((data_dir / name).read_bytes()) for name in IDX_FILES)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


# -- statistics --------------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], share: float, *, interpolate: bool = False) -> float:
    """Percentile (``share`` in 0..1). Nearest rank by default: with 50 samples p95 is the 48th smallest.
    ``interpolate``: linear between the two nearest ranks (numpy's default), as the operator benchmark's
    latency percentiles have always been computed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if interpolate:
        rank = (len(ordered) - 1) * share
        low, high = math.floor(rank), math.ceil(rank)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def rotated(items: Sequence[T], round_index: int) -> list[T]:
    """The variants in a different order each round, so no variant always runs first (or right after
    the most expensive one): position effects (caches, thermal, a neighbour's burst) spread evenly."""
    shift = round_index % len(items) if items else 0
    return [*items[shift:], *items[:shift]]


def paired_ratios(candidate: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """candidate[i] / baseline[i] per round: each pair ran back to back, so a ratio is robust to the
    machine's load changing between rounds; the median of the pairs is the figure we report."""
    return [c / b for c, b in zip(candidate, baseline, strict=True) if b]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


# -- output ------------------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (numbers right-aligned) for the terminal; the docs get a Markdown copy."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if _numeric(c) and i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "| " + " | ".join(headers) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace(".", "").replace("x", "").replace("%", "").lstrip("-+")
    return stripped.isdigit()


def command() -> str:
    """The command line this benchmark was started with, as the user typed it (``python -m bench.x ...``)."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None else Path(sys.argv[0]).as_posix()
    return " ".join([program, *sys.argv[1:]])


def write_results(
    name: str, payload: dict[str, Any], path: Path | None = None, versions: Sequence[str] = TRAINER_LIBRARIES
) -> Path:
    """``bench/results/<name>.json`` (or ``path``), with the command, the machine and the versions of
    ``versions`` added (``payload`` may add to ``machine`` by giving its own). NaN, "not measured", is
    written as null: json.dumps would write NaN, which is not JSON."""
    target = path or RESULTS_DIR / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "command": command(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),  # load_average: at the end of the run, the 1/5/15-minute averages
        "load_average_at_start": LOAD_AT_START,
        "versions": library_versions(versions),
        **payload,
    }
    target.write_text(json.dumps(_finite(document), indent=2, default=str) + "\n", encoding="utf-8")
    return target


def _finite(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def section(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


if __name__ == "__main__":
    # A helper module, not a benchmark: `make bench` skips it, and running it by hand does nothing.
    pass
