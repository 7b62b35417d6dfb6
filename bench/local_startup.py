"""Local mode start-up: seconds from ``mnist-operator local ... --logs`` to the first epoch line, and how
much of that is importing TensorFlow.

The command is the one a user types (the console script next to this Python), on the sample manifest
with one epoch (and no release bar) and the data from a loopback HTTP mirror of generated MNIST-format
files (the test suite's generator, ``--train-images`` of them): no internet, but the real download,
checksum and parse path. Every run gets a fresh ``--runs-dir`` (otherwise the second run would resume
the first one's finished epoch and train nothing) and so a fresh data cache. Timestamps are taken as
the output lines arrive:

* ``pushgateway``: the CLI printed the local Pushgateway's address (CLI start-up + Pushgateway ready);
* ``trainer logging``: the trainer's first log line (``training ns/name ...``), which comes right after
  ``mnist_trainer.pipeline`` (and with it TensorFlow and Keras) is imported;
* ``data``, ``model``: the trainer's "data:" and "model:" lines (download + parse, model built);
* ``first epoch``: the epoch line (``epoch 1/1 ...``) - the figure the issue asks for;
* ``done``: the command exits (evaluation, SavedModel and .keras export, metrics.json included).

The baseline for "how much is TensorFlow": ``python -c "import tensorflow"`` and ``python -c "import
keras"`` (and ``import mnist_trainer.pipeline``, everything the trainer imports) in fresh interpreters,
timed inside the child around the import (so neither interpreter start nor TensorFlow's slow teardown
at exit is counted), in the same run, interleaved with the local runs (round by round); the share is
import seconds / command-to-first-epoch seconds, medians. The same shares are given in CPU seconds
(the import's own, measured in the child; the command's whole process tree up to the epoch line, from
/proc), which other work on a shared machine disturbs much less than wall time.

    python -m bench.local_startup [--rounds 3] [--train-images 2000]
"""

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import _common as common
from tests.support.mnist_data import synthetic_mnist, write_idx_quartet
from tests.support.servers import serve_directory

MANIFEST = common.REPO_ROOT / "manifests" / "samples" / "mnist-training.yaml"
# (milestone, text that marks it in the combined output), in the order they appear
MILESTONES = (
    ("pushgateway", "mnist-operator: Pushgateway at"),
    ("trainer logging", " INFO    training "),
    ("data", " INFO    data: "),
    ("model", " INFO    model: "),
    ("first epoch", " INFO    epoch 1/1  "),
)
IMPORTS = {
    "import tensorflow": "import tensorflow",
    "import keras": "import keras",
    "import mnist_trainer.pipeline": "import mnist_trainer.pipeline",
}


def operator_command() -> list[str]:
    """``mnist-operator`` as installed next to this interpreter, or ``python -m mnist_operator``."""
    script = Path(sys.executable).parent / "mnist-operator"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mnist_operator"]


def child_environment() -> dict[str, str]:
    """What the user's shell passes: not the TensorFlow variables _common sets for this process, and no
    MNIST_* leftovers, so the CLI and the trainer configure everything as they always do."""
    return {k: v for k, v in common.ORIGINAL_ENVIRON.items() if not k.startswith("MNIST_")}


def local_run(mirror_url: str, sha256: dict[str, str], runs_dir: Path, timeout: float) -> dict[str, Any]:
    command = [
        *operator_command(),
        "local",
        "-f",
        str(MANIFEST),
        "--set",
        "spec.epochs=1",
        # The sample's release bar (test accuracy 0.97) is not for one epoch on generated data, and the
        # command's exit code would say "failed" for a run whose start-up is all we measure.
        "--set",
        "spec.releaseCriteria.minTestAccuracy=0",
        "--set",
        f"spec.dataset.url={mirror_url}",
        "--set",
        f"spec.dataset.sha256={json.dumps(sha256)}",
        "--runs-dir",
        str(runs_dir),
        "--logs",
    ]
    marks: dict[str, float] = {}
    cpu_marks: dict[str, float] = {}
    lines: list[str] = []
    reaped_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=child_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=runs_dir.parent,
    )
    # A watchdog instead of a blocking read with no end: a hung run is stopped, not waited for forever.
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            now = time.perf_counter() - started
            lines.append(line.rstrip("\n"))
            for name, text in MILESTONES:
                if name not in marks and text in line:
                    marks[name] = now
                    cpu_marks[name] = tree_cpu_seconds(process.pid)  # so far, while the tree still runs
        code = process.wait()
    finally:
        timer.cancel()
    marks["done"] = time.perf_counter() - started
    # Once the command is reaped, its whole tree's CPU (it reaped the trainer and the Pushgateway) is ours.
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_marks["done"] = (reaped.ru_utime - reaped_before.ru_utime) + (
        reaped.ru_stime - reaped_before.ru_stime
    )
    return {
        "exit_code": code,
        "seconds": marks,
        "cpu_seconds": cpu_marks,
        "command": command,
        "output_tail": lines[-8:],
    }


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of a process and all its live descendants (the CLI, the Pushgateway,
    the trainer), plus what they reaped: /proc/<pid>/stat fields 14-17."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = sum(int(f) for f in fields[11:15]) / CLOCK_TICKS
    family, grew = {root}, True
    while grew:
        grown = family | {pid for pid, parent in parents.items() if parent in family}
        grew, family = len(grown) > len(family), grown
    return sum(cpu.get(pid, 0.0) for pid in family)


# Timed inside the child: a fresh interpreter's import is what the trainer pays before its first log
# line, but the child's exit (TensorFlow's teardown takes about a second of CPU) is not, so timing the
# whole subprocess from outside would overstate it.
IMPORT_PROBE = """
import time
wall, cpu = time.perf_counter(), time.process_time()
{statement}
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def import_seconds(statement: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one import in a fresh interpreter, as the trainer's process does at start.
    CPU time is the robust one here: other work on the machine stretches wall time a lot."""
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE.format(statement=statement)],
        env=child_environment(),
        check=True,
        capture_output=True,
        text=True,
    )
    wall, cpu = (float(x) for x in completed.stdout.split()[-2:])
    return wall, cpu


def interpreter_seconds() -> float:
    """Wall seconds of ``python -c pass``, start to exit: the interpreter's own start-up, for scale."""
    return common.timed(
        lambda: subprocess.run([sys.executable, "-c", "pass"], env=child_environment(), check=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.local_startup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="local runs (each round also times every import)"
    )
    parser.add_argument(
        "--train-images", type=int, default=2000, help="generated training images in the mirror"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds before a local run is killed")
    parser.add_argument("--json", type=Path, help="results file (default bench/results/local_startup.json)")
    args = parser.parse_args()
    started = time.monotonic()
    if shutil.which("prometheus-pushgateway") is None and shutil.which("pushgateway") is None:
        sys.exit("local mode needs a Pushgateway binary: apt-get install prometheus-pushgateway")

    runs: list[dict[str, Any]] = []
    imports: dict[str, list[float]] = {name: [] for name in IMPORTS}
    interpreters: list[float] = []
    import_cpu: dict[str, list[float]] = {name: [] for name in IMPORTS}
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        root = Path(tmp)
        files = write_idx_quartet(root / "mirror", synthetic_mnist(n_train=args.train_images, n_test=500))
        sha256 = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
        with serve_directory(root / "mirror") as mirror:
            common.section(
                f"local mode start-up: {' '.join(operator_command()[-1:])} local -f {MANIFEST.name} ..."
            )
            for round_index in range(args.rounds):
                # One local run, then each import, in an order that rotates per round.
                steps: list[tuple[str, Any]] = [
                    ("local", None),
                    ("interpreter", None),
                    *((name, s) for name, s in IMPORTS.items()),
                ]
                for name, statement in common.rotated(steps, round_index):
                    if name == "local":
                        run = local_run(mirror.url, sha256, root / f"runs-{round_index}", args.timeout)
                        runs.append(run)
                        shown = ", ".join(f"{k} {v:.1f}s" for k, v in run["seconds"].items())
                        print(f"  round {round_index + 1}: exit {run['exit_code']}; {shown}", flush=True)
                        if run["exit_code"] != 0:
                            print("    " + "\n    ".join(run["output_tail"]))
                    elif name == "interpreter":
                        interpreters.append(interpreter_seconds())
                    else:
                        wall, cpu = import_seconds(statement)
                        imports[name].append(wall)
                        import_cpu[name].append(cpu)

    ok = [r for r in runs if "first epoch" in r["seconds"]]
    if not ok:
        sys.exit("no local run reached its first epoch; see the output above")
    milestones = [name for name, _ in MILESTONES] + ["done"]
    medians = {m: common.median([r["seconds"][m] for r in ok if m in r["seconds"]]) for m in milestones}
    first_epoch = medians["first epoch"]
    interpreter = common.median(interpreters)

    first_epoch_cpu = common.median([r["cpu_seconds"]["first epoch"] for r in ok])
    cpu_medians = {
        m: common.median([r["cpu_seconds"][m] for r in ok if m in r["cpu_seconds"]]) for m in milestones
    }
    rows = [
        [m, medians[m], medians[m] / first_epoch, cpu_medians[m], cpu_medians[m] / first_epoch_cpu]
        for m in milestones
    ]
    headers = [
        "milestone (from the command)",
        "wall s (median)",
        "share of wall to 1st epoch",
        "tree CPU s (median)",
        "share of CPU to 1st epoch",
    ]
    print(common.table(headers, rows))
    import_rows: list[list[object]] = [
        ["python -c pass (start to exit)", interpreter, interpreter / first_epoch, "", ""]
    ]
    import_results: dict[str, Any] = {"python -c pass": {"seconds": interpreters, "median": interpreter}}
    for name, times in imports.items():
        wall, cpu = common.median(times), common.median(import_cpu[name])
        import_results[name] = {
            "seconds": times,
            "cpu_seconds": import_cpu[name],
            "median": wall,
            "cpu_median": cpu,
            "share_of_first_epoch_wall": wall / first_epoch,
            "share_of_first_epoch_cpu": cpu / first_epoch_cpu,
        }
        import_rows.append([name, wall, wall / first_epoch, cpu, cpu / first_epoch_cpu])
    import_headers = [
        "fresh interpreter",
        "wall s (median)",
        "share of wall to 1st epoch",
        "CPU s (median)",
        "share of CPU to 1st epoch",
    ]
    print(common.table(import_headers, import_rows))
    tf = import_results["import tensorflow"]
    everything = import_results["import mnist_trainer.pipeline"]
    print(
        f"  command to first epoch line: {first_epoch:.1f}s (median of {len(ok)}); importing TensorFlow is "
        f"{tf['share_of_first_epoch_wall']:.0%} of it by wall time, {tf['share_of_first_epoch_cpu']:.0%} by CPU "
        f"time; everything the trainer imports {everything['share_of_first_epoch_wall']:.0%} / "
        f"{everything['share_of_first_epoch_cpu']:.0%}"
    )
    tf_share = tf["share_of_first_epoch_wall"]
    payload = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "runs": runs,
        "milestone_medians_seconds": medians,
        "milestone_cpu_medians_seconds": cpu_medians,
        "first_epoch_cpu_seconds_median": first_epoch_cpu,
        "imports": import_results,
        "tensorflow_import_share_of_first_epoch": tf_share,
        "tensorflow_import_cpu_share_of_first_epoch": tf["share_of_first_epoch_cpu"],
        "tables": {
            "milestones": {"headers": headers, "rows": rows},
            "imports": {"headers": import_headers, "rows": import_rows},
        },
        "wall_seconds": time.monotonic() - started,
    }
    path = common.write_results("local_startup", payload, args.json)
    print(f"\n{payload['wall_seconds']:.0f}s; results in {path}")


if __name__ == "__main__":
    main()
