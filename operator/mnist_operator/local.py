"""Local mode: train the manifest's resources with no cluster.

The manifest goes through the same loader and schema as on the API server; the trainer runs as a child
process with exactly the environment its pod would get (the run's files land in ``runs/<namespace>/<name>/``);
a Pushgateway is started on a free loopback port when none is given; the status comes from the same
reducer as the operator's, fed with the Job and pod the cluster would report for the child process, and
is printed with the CRD's own printer columns.

A local run's uid is a hash of its spec: running the same manifest again resumes from the last finished
epoch (the run's backup is keyed by the uid), while a changed spec is a new run, as a re-created resource
is on a cluster -- the previous run's files are moved aside, never resumed into a different model.
Without a Pushgateway the figures come from the trainer's own record of finished epochs (``history.json``
in the run's backup) and, at the end, ``metrics.json``.
"""

import contextlib
import datetime
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from mnist_api import ExitCode, MnistTraining, RunPaths, describe_exit_code
from mnist_api.distribution import COMPLETION_INDEX_ANNOTATION, COMPLETION_INDEX_ENV, local_worker_hosts
from mnist_api.env import trainer_config
from mnist_api.layout import BASE_MODEL_MOUNT_PATH, DATASET_MOUNT_PATH, PREDICT_INPUT_MOUNT_PATH
from mnist_api.metrics import TEST_STAGE, TRAIN_STAGE, metric_name
from mnist_api.spec import Task

from . import printer
from .clock import utc_now
from .naming import TRAINER_CONTAINER
from .pushgateway import parse_groups
from .reducer import MetricsView, reduce_status

LOCAL_UID = "local"
RUN_RECORD_FILE = ".local-run.json"
STOPPED = "Stopped"  # local only: a stopped run is not failed, the same command resumes it
CLAIMS_DIR = "claims"  # runs/claims/<claim>: a claim the spec reads from, unless --claim maps it
PUSHGATEWAY_INSTALL_HINT = "apt-get install prometheus-pushgateway (or pass --pushgateway URL)"


class LocalRunError(RuntimeError):
    """Local mode cannot start; the message says what to install or change."""


def local_environment(
    resource: MnistTraining,
    runs_dir: Path,
    pushgateway_url: str | None,
    claim_dirs: Mapping[str, Path] | None = None,
) -> dict[str, str]:
    """The trainer's ``MNIST_*`` variables, as ``pod_env`` would give them, with local volume paths. The
    workers of a multi-worker training listen on free loopback ports, in place of the Service's names."""
    # runs/ plays the output volume (so a run's files land in runs/<namespace>/<name>/) and runs/.data
    # the data volume, shared by every local run as a cache PVC would be.
    config = trainer_config(
        resource,
        default_pushgateway_url=pushgateway_url,
        data_dir=str((runs_dir / ".data").resolve()),
        output_dir=str(runs_dir.resolve()),
        uid=resource.metadata.uid or LOCAL_UID,
        mount_paths=local_mount_paths(resource, runs_dir, claim_dirs or {}),
        worker_hosts=local_worker_hosts(_free_ports(resource.spec.workers))
        if resource.spec.workers > 1
        else (),
    )
    return config.to_env()


def local_claim_dir(claim: str, runs_dir: Path, claim_dirs: Mapping[str, Path]) -> Path:
    """Where local mode finds a claim the spec reads from: ``--claim NAME=DIR``, else ``runs/claims/NAME``."""
    return claim_dirs.get(claim) or runs_dir / CLAIMS_DIR / claim


def local_mount_paths(
    resource: MnistTraining, runs_dir: Path, claim_dirs: Mapping[str, Path]
) -> dict[str, str]:
    """The local folders that stand for the pod's read-only claim mounts. A base model named by training
    is in runs/ itself, which plays every training's output volume."""
    spec = resource.spec
    mounts: dict[str, str] = {}

    def claim(mount_path: str, name: str | None) -> None:
        if name is not None:
            mounts[mount_path] = str(local_claim_dir(name, runs_dir, claim_dirs).resolve())

    if spec.base_model is not None:
        if spec.base_model.training is not None:
            mounts[BASE_MODEL_MOUNT_PATH] = str(runs_dir.resolve())
        claim(BASE_MODEL_MOUNT_PATH, spec.base_model.claim_name)
    claim(DATASET_MOUNT_PATH, spec.dataset.claim_name)
    claim(PREDICT_INPUT_MOUNT_PATH, spec.predict.claim_name if spec.predict else None)
    return mounts


def local_run_uid(training: MnistTraining) -> str:
    """The uid of a local run: the same spec is the same run; any change is a new one."""
    spec = training.spec.model_dump(mode="json", by_alias=True)
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return f"{LOCAL_UID}-{digest[:12]}"


def as_local_run(training: MnistTraining, runs_dir: Path, out: TextIO) -> MnistTraining:
    """The training with its local uid; a previous run of another spec is moved aside first.

    Files of a run live in ``runs/<namespace>/<name>/`` whatever the uid (docs and users look there), so
    the previous run's model, metrics.json and backup move to ``<name>.<its uid>/`` and stay inspectable;
    going back to a spec whose run was moved aside moves it back, so that run resumes and nothing is lost.
    """
    meta = training.metadata
    uid = meta.uid or local_run_uid(training)
    run_dir = runs_dir / meta.namespace / meta.name
    record = run_dir / RUN_RECORD_FILE
    if run_dir.is_dir() and any(run_dir.iterdir()):
        # No record: a run of an older version, whose uid was LOCAL_UID.
        previous = str(_read_json(record).get("uid") or LOCAL_UID)
        if previous != uid:
            kept = _unused_path(run_dir.with_name(f"{meta.name}.{previous}"))
            run_dir.rename(kept)
            earlier = run_dir.with_name(f"{meta.name}.{uid}")
            if earlier.is_dir():
                earlier.rename(run_dir)
                what = f"resuming this spec's earlier run from {earlier}"
            else:
                what = "starting a new run"
            out.write(
                f"mnist-operator: {meta.name}: the spec differs from the last run's; {what} "
                f"(the last run's files are kept in {kept})\n"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"uid": uid}) + "\n", encoding="utf-8")
    return training.model_copy(update={"metadata": meta.model_copy(update={"uid": uid})})


def _unused_path(path: Path) -> Path:
    """``path``, or ``path.2``, ``path.3``...: a kept run is never overwritten."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}.{number}")
    return candidate


def read_run_files(training: MnistTraining, runs_dir: Path) -> MetricsView:
    """The figures a Pushgateway would hold, from the files the trainer writes as it goes."""
    meta = training.metadata
    uid = meta.uid or LOCAL_UID
    paths = RunPaths(PurePosixPath(runs_dir), meta.namespace, meta.name, uid)
    prefix = training.spec.metrics.prefix
    values: dict[str, float] = {}
    history = _read_json(Path(str(paths.history))).get("epochs") or []
    if history:
        last = history[-1]
        values[metric_name(prefix, TRAIN_STAGE, "epochs_count")] = float(last["epoch"])
        values[metric_name(prefix, TRAIN_STAGE, "elapsed_time_seconds")] = sum(
            float(entry.get("seconds", 0.0)) for entry in history
        )
        for key in ("accuracy", "loss", "val_accuracy", "val_loss"):
            if key in last:
                values[metric_name(prefix, TRAIN_STAGE, key)] = float(last[key])
    report = _read_json(Path(str(paths.metrics_json)))
    if (report.get("run") or {}).get("uid") == uid:  # metrics.json of this run, not of an earlier one
        test = report.get("test") or {}
        for key in ("accuracy", "loss"):
            if key in test:
                values[metric_name(prefix, TEST_STAGE, key)] = float(test[key])
        if (parameters := (report.get("model") or {}).get("parameters")) is not None:
            values[metric_name(prefix, TRAIN_STAGE, "model_parameters_count")] = float(parameters)
    return MetricsView(values)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # not written yet, or being replaced (the trainer writes then renames)
    return loaded if isinstance(loaded, dict) else {}


def _free_port() -> int:
    return _free_ports(1)[0]


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free a moment ago (all held at once, so none repeats)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


@contextlib.contextmanager
def local_pushgateway() -> Iterator[str]:
    """A throw-away Pushgateway on loopback, stopped on exit."""
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        raise LocalRunError(f"no Pushgateway binary found: {PUSHGATEWAY_INSTALL_HINT}")
    port = _free_port()
    process = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file=", "--log.level=warn"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise LocalRunError(f"the Pushgateway at {url} did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@dataclass(frozen=True)
class TrainerProcess:
    """What local mode knows of one trainer process, in the terms the cluster would use."""

    pod_name: str
    started: str
    exit_code: int | None = None
    finished: str | None = None
    index: int = 0
    """The worker's completion index, as an Indexed Job's pod carries it."""


def local_children(
    processes: Sequence[TrainerProcess], *, workers: int = 1, gave_up: bool = False
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The Job and pods the Job controller and the kubelet would report for these processes: every
    attempt's, the current set last.

    A single worker is not retried, so its failure fails the "Job" at once, as the podFailurePolicy does
    for the codes that no retry can fix; running the command again is the retry (it resumes). A
    multi-worker set restarts after a failure as the Indexed Job's pods would, up to the spec's
    backoffLimit; ``gave_up`` says it will not restart again.
    """
    if not processes:
        return None, []
    current = processes[-workers:]
    running = sum(1 for p in current if p.exit_code is None)
    succeeded = sum(1 for p in current if p.exit_code == 0)
    failed = sum(1 for p in processes if p.exit_code not in (None, 0))
    job_status: dict[str, Any] = {"startTime": processes[0].started}
    if running:
        job_status["active"] = running
        if workers > 1:
            job_status["ready"] = running
    if succeeded:
        job_status["succeeded"] = succeeded
    if failed:
        job_status["failed"] = failed
    finished = max((p.finished for p in current if p.finished), default=None)
    if succeeded == workers:
        job_status.update(completionTime=finished)
        job_status["conditions"] = [{"type": "Complete", "status": "True", "lastTransitionTime": finished}]
    elif failed and (gave_up or workers == 1):
        reason = "PodFailurePolicy" if workers == 1 else "BackoffLimitExceeded"
        job_status["conditions"] = [
            {"type": "Failed", "status": "True", "reason": reason, "lastTransitionTime": finished}
        ]
    job = {"metadata": {"name": processes[0].pod_name}, "spec": {"suspend": False}, "status": job_status}
    return job, [_local_pod(p, workers) for p in processes]


def _local_pod(process: TrainerProcess, workers: int) -> dict[str, Any]:
    state: dict[str, Any]
    if process.exit_code is None:
        phase, state = "Running", {"running": {"startedAt": process.started}}
    else:
        phase = "Succeeded" if process.exit_code == 0 else "Failed"
        state = {"terminated": {"exitCode": process.exit_code, "finishedAt": process.finished}}
    metadata: dict[str, Any] = {"name": process.pod_name, "creationTimestamp": process.started}
    if workers > 1:
        metadata["annotations"] = {COMPLETION_INDEX_ANNOTATION: str(process.index)}
    return {
        "metadata": metadata,
        "status": {"phase": phase, "containerStatuses": [{"name": TRAINER_CONTAINER, "state": state}]},
    }


def read_metrics(pushgateway_url: str | None, training: MnistTraining) -> MetricsView | None:
    """One GET of every group, as the operator's poller does."""
    if not pushgateway_url:
        return None
    try:
        with urllib.request.urlopen(pushgateway_url + "/api/v1/metrics", timeout=5) as reply:
            groups = json.load(reply).get("data") or []
    except (OSError, ValueError) as error:
        return MetricsView({}, reachable=False, error=f"cannot read {pushgateway_url}: {error}")
    meta = training.metadata
    return MetricsView(parse_groups(groups).get((meta.namespace, meta.name, meta.uid or LOCAL_UID), {}))


class LiveTable:
    """Prints the header once and a row whenever the status changes, like ``kubectl get -w``."""

    def __init__(self, out: TextIO, wide: bool = False) -> None:
        self.out, self.wide = out, wide
        self._last: list[str] | None = None
        self._widths: list[int] | None = None

    def show(self, document: Mapping[str, Any]) -> None:
        row = printer.cells(document, datetime.datetime.now(datetime.UTC), self.wide)
        if self._last is not None and row[:-1] == self._last[:-1]:
            return  # only the age moved
        head = printer.header(self.wide)
        if self._widths is None:
            # Fixed widths, roomy enough for the figures to come, so later rows line up with the header.
            self._widths = [max(len(h), len(c), 10) for h, c in zip(head, row, strict=True)]
            self._widths[0] = max(len(head[0]), len(row[0]))
            self._print(head)
        self._print(row)
        self._last = row

    def _print(self, cells: list[str]) -> None:
        assert self._widths is not None
        line = "   ".join(c.ljust(w) for c, w in zip(cells, self._widths, strict=True)).rstrip()
        self.out.write(line + "\n")
        self.out.flush()


def train_locally(
    training: MnistTraining,
    env: Mapping[str, str],
    *,
    base_environ: Mapping[str, str],
    pushgateway_url: str | None,
    log_path: Path,
    out: TextIO,
    show_logs: bool = False,
    quiet: bool = False,
    poll_seconds: float = 0.5,
) -> int:
    """Run the trainer with the pod's environment, rendering its status live; returns its exit code.

    ``spec.workers`` processes train together, each with its completion index, as an Indexed Job's pods
    would; when one fails the others are stopped and the set restarts, up to ``runPolicy.backoffLimit``
    times, and resumes from the last finished epoch. Worker 0 logs to ``log_path``, worker i to
    ``trainer-<i>.log`` beside it.

    ``quiet`` (``-q``): only the final row, under the header, and the result lines, for scripts and CI logs
    that want the outcome rather than the progress.
    """
    if importlib.util.find_spec("mnist_trainer") is None:
        raise LocalRunError("the trainer is not installed here: pip install 'mnist-operator[trainer]'")
    created = utc_now()
    meta = training.metadata
    resource = training.model_copy(
        update={"metadata": meta.model_copy(update={"uid": meta.uid or LOCAL_UID})}
    )
    table = LiveTable(out)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {k: v for k, v in base_environ.items() if not k.startswith("MNIST_")} | dict(env)
    child_env = shared_cpu_threads(child_env, training.spec.workers)
    workers = WorkerSet(
        f"{meta.name}-local",
        training.spec.workers,
        child_env,
        log_path,
        echo=out if show_logs else None,
        notices=None if quiet else out,
        restarts=training.spec.run_policy.backoff_limit if training.spec.workers > 1 else 0,
    )
    workers.start()
    if not show_logs and not quiet:
        out.write(f"mnist-operator: trainer log: {log_path}\n")
    status: dict[str, Any] = {}
    document: dict[str, Any] = {}
    interrupted = False
    # Ctrl-C, and `kill` alike, stop the trainer cleanly. Set here rather than trusted: a shell without
    # job control starts background commands with SIGINT ignored, and the default SIGTERM would leave
    # the trainer (in a session of its own) running without us.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                code = workers.poll(restart=not interrupted)
                job, pods = local_children(workers.history, workers=workers.size, gave_up=code is not None)
                if pushgateway_url:
                    metrics = read_metrics(pushgateway_url, resource)
                else:
                    metrics = read_run_files(resource, Path(env["MNIST_OUTPUT_DIR"]))
                status = reduce_status(resource, job, pods, metrics, status, utc_now())
                if interrupted and code == ExitCode.INTERRUPTED:
                    status = {**status, "phase": STOPPED}
                document = {"metadata": {"name": meta.name, "creationTimestamp": created}, "status": status}
                if not quiet:
                    table.show(document)
                if code is not None:
                    break
                time.sleep(poll_seconds)
            except KeyboardInterrupt:
                if not interrupted:
                    interrupted = True
                    if not quiet:
                        out.write(
                            "mnist-operator: stopping the trainer; run the same command again to resume\n"
                        )
                    workers.signal(signal.SIGTERM)
    finally:
        workers.kill()  # only ever reached with live workers when this process itself is failing
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if quiet:
        table.show(document)  # the header and the last row: the outcome, in the table's own terms
    for line in result_lines(
        resource, env, code, interrupted=interrupted, errors=workers.errors, log_path=log_path
    ):
        out.write(line + "\n")
    return code


def shared_cpu_threads(env: Mapping[str, str], workers: int) -> dict[str, str]:
    """Workers on one machine share its cores: each gets its share as TensorFlow's thread pools (a
    variable the user set wins). Each would otherwise size its pools to every core, and the workers'
    threads would preempt each other in the middle of their collectives."""
    if workers <= 1:
        return dict(env)
    share = str(max(1, (os.cpu_count() or 1) // workers))
    return {"TF_NUM_INTRAOP_THREADS": share, "TF_NUM_INTEROP_THREADS": share} | dict(env)


class WorkerSet:
    """The trainer processes of one local run: one per worker, restarted together after a failure."""

    STOP_GRACE_SECONDS = 10.0  # a survivor of a lost peer may be stuck in a collective: then SIGKILL

    def __init__(
        self,
        pod_prefix: str,
        size: int,
        env: Mapping[str, str],
        log_path: Path,
        *,
        echo: TextIO | None,
        notices: TextIO | None,
        restarts: int,
    ) -> None:
        self.pod_prefix, self.size, self.env, self.log_path = pod_prefix, size, dict(env), log_path
        self.echo, self.notices, self.restarts_left = echo, notices, restarts
        self.history: list[TrainerProcess] = []
        """Every process started, as ``local_children`` reports them; the current set is the last ``size``."""
        self.errors: list[str] = []
        self._children: list[subprocess.Popen[str]] = []
        self._copiers: list[threading.Thread] = []
        self._attempt = 0
        self._cause: TrainerProcess | None = None  # the current set's first failed worker

    def start(self) -> None:
        self._attempt += 1
        self._cause = None
        self._children, self._copiers = [], []
        for index in range(self.size):
            env = self.env | ({COMPLETION_INDEX_ENV: str(index)} if self.size > 1 else {})
            child = subprocess.Popen(
                [sys.executable, "-m", "mnist_trainer"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the trainer with SIGTERM, cleanly
            )
            prefix = f"[worker {index}] " if self.size > 1 else ""
            copier = threading.Thread(
                target=_copy_log, args=(child, self._log_of(index), self.echo, self.errors, prefix)
            )
            copier.start()
            self._children.append(child)
            self._copiers.append(copier)
            name = self.pod_prefix if self.size == 1 else f"{self.pod_prefix}-{index}-{self._attempt}"
            self.history.append(TrainerProcess(name, utc_now(), index=index))

    def _log_of(self, index: int) -> Path:
        return self.log_path if index == 0 else self.log_path.with_name(f"{self.log_path.stem}-{index}.log")

    def poll(self, *, restart: bool) -> int | None:
        """Record exits; returns the run's exit code once it is over, None while it goes on. A failed
        worker stops the set, which starts again while restarts are left (and ``restart`` allows)."""
        current = self.history[-self.size :]
        for offset, (child, process) in enumerate(zip(self._children, current, strict=True)):
            code = child.poll()
            if code is not None and process.exit_code is None:
                self._copiers[offset].join()
                code = 128 - code if code < 0 else code  # killed by signal N: 128+N, as a container's
                ended = TrainerProcess(process.pod_name, process.started, code, utc_now(), process.index)
                self.history[len(self.history) - self.size + offset] = ended
                if code != 0 and self._cause is None:
                    self._cause = ended
        current = self.history[-self.size :]
        cause = self._cause
        if cause is None:
            return 0 if all(p.exit_code == 0 for p in current) else None
        if any(p.exit_code is None for p in current):
            self._stop_survivors()
            return None  # the next poll records their exits
        code = cause.exit_code or ExitCode.UNEXPECTED
        if restart and self.restarts_left > 0 and describe_exit_code(code).retryable:
            self.restarts_left -= 1
            if self.notices is not None:
                self.notices.write(
                    f"mnist-operator: worker {cause.index} failed ({describe_exit_code(code).reason}); "
                    f"restarting the {self.size} workers ({self.restarts_left} restarts left)\n"
                )
            self.start()
            return None
        return code

    def _stop_survivors(self) -> None:
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.STOP_GRACE_SECONDS
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        self.kill()

    def signal(self, signum: int) -> None:
        for child in self._children:
            if child.poll() is None:
                child.send_signal(signum)

    def kill(self) -> None:
        for child in self._children:
            if child.poll() is None:
                child.kill()
                child.wait()


def result_lines(
    training: MnistTraining,
    env: Mapping[str, str],
    exit_code: int,
    *,
    interrupted: bool,
    errors: list[str],
    log_path: Path,
) -> list[str]:
    """What the run's last lines say: where its files are, why it failed, or how to resume it."""
    if interrupted and exit_code == ExitCode.INTERRUPTED:
        return ["mnist-operator: stopped; run the same command again to resume from the last finished epoch"]
    if exit_code != 0:
        reason = describe_exit_code(exit_code)
        # The trainer's own traceback stays in its log; the terminal gets one readable line and where to look.
        detail = errors[-1] if errors else reason.description
        return [f"mnist-operator: {reason.reason}: {detail} (trainer log: {log_path})"]
    meta = training.metadata
    paths = RunPaths(PurePosixPath(env["MNIST_OUTPUT_DIR"]), meta.namespace, meta.name, meta.uid or LOCAL_UID)
    task = training.spec.task
    if task == Task.EVALUATE:
        test = _read_json(Path(str(paths.metrics_json))).get("test") or {}
        return [
            f"mnist-operator: test accuracy {test.get('accuracy', float('nan')):.4f}, loss "
            f"{test.get('loss', float('nan')):.4f} of {env.get('MNIST_BASE_MODEL_PATH')}; metrics.json in "
            f"{paths.run_dir}"
        ]
    if task == Task.PREDICT:
        predictions = _read_json(Path(str(paths.metrics_json))).get("predictions") or {}
        return [
            f"mnist-operator: {predictions.get('images', 0)} images predicted: {paths.predictions_hdf5} "
            f"and {paths.predictions_csv}"
        ]
    lines = [f"mnist-operator: model and metrics.json in {paths.run_dir}"]
    # Only when the trainer wrote one: spec.output.modelCard may be false (and older trainers write none).
    if Path(str(paths.model_card)).is_file():
        lines.append(f"mnist-operator: model card: {paths.model_card}")
    return lines


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _copy_log(
    child: subprocess.Popen[str], log_path: Path, echo: TextIO | None, errors: list[str], prefix: str = ""
) -> None:
    assert child.stdout is not None
    with log_path.open("a", encoding="utf-8") as log:
        for line in child.stdout:
            log.write(line)
            log.flush()
            if " ERROR " in line:
                errors.append(prefix + line.split(" ERROR ", 1)[1].strip())
            if echo is not None:
                echo.write(prefix + line)
                echo.flush()
