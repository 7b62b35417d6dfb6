"""An operator under test as a child process: started in its own process group, watched for memory and
CPU through /proc, and always stopped (SIGTERM to the group, then SIGKILL) however the benchmark ends."""

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_LIVE: set[int] = set()  # process groups still to stop if the interpreter exits on an unexpected path


@atexit.register
def _kill_leftovers() -> None:
    for group in list(_LIVE):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        _LIVE.discard(group)


def read_status_kib(pid: int, field_name: str) -> int | None:
    """A ``Vm*`` line of /proc/<pid>/status in KiB (VmRSS now, VmHWM the peak since start)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of the process so far (fields 14 and 15 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces; skip past it
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class OperatorProcess:
    """``with OperatorProcess(argv, env, log) as proc:`` runs the operator until the block ends."""

    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    cwd: Path | None = None
    sample_every: float = 0.1
    process: subprocess.Popen[bytes] | None = None
    peak_rss_kib: int = 0
    _stop_sampling: threading.Event = field(default_factory=threading.Event)
    _sampler: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def __enter__(self) -> "OperatorProcess":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> "OperatorProcess":
        with self.log_path.open("wb") as log:
            # A session of its own: Ctrl-C in the terminal reaches only the benchmark, which then stops
            # the operator in order, and killpg() reaches anything the operator might have spawned.
            self.process = subprocess.Popen(
                list(self.argv),
                env=dict(self.env),
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.add(self.process.pid)
        # /proc polling in a thread: the event loop may be saturated (following the audit log, POSTing)
        # exactly when memory peaks.
        self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop_sampling.wait(self.sample_every):
            rss = read_status_kib(self.pid, "VmRSS")
            if rss is None:
                return
            self.peak_rss_kib = max(self.peak_rss_kib, rss)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rss_kib(self) -> int | None:
        return read_status_kib(self.pid, "VmRSS")

    def hwm_kib(self) -> int | None:
        return read_status_kib(self.pid, "VmHWM")

    def cpu(self) -> float | None:
        return cpu_seconds(self.pid)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the whole group (kopf stops gracefully), SIGKILL what is left after ``grace``.

        Idempotent. It blocks, so async callers run it in a thread and keep their event loop serving
        meanwhile."""
        self._stop_sampling.set()
        if self.process is None or self.process.pid not in _LIVE:
            return None if self.process is None else self.process.returncode
        group = self.process.pid
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # stragglers in the group, or the operator itself
        code = self.process.wait()
        _LIVE.discard(group)
        if self._sampler is not None:
            self._sampler.join(timeout=2)
        return code

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""
