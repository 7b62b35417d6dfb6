"""Child processes that never outlive the test session.

Every child runs in its own session (so its whole process group can be signalled), is registered in a
module-level set that an ``atexit`` hook kills, and, where util-linux's ``setpriv`` exists, gets a
parent-death signal so even a SIGKILLed pytest leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()
_SETPRIV = shutil.which("setpriv")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    append: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session with stdout and stderr both going to ``log_path``.

    The parent-death signal is delivered when the *thread* that spawned the child exits, so callers
    spawn from a thread that outlives the child (the main thread, or a pod worker that waits on it).
    """
    full = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv] if _SETPRIV else list(argv)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab" if append else "wb") as log:
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    with _live_lock:
        _live.add(proc)
    return proc


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the child's whole process group (its own children too); gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int:
    """SIGTERM the group, SIGKILL it after ``grace`` seconds; returns the exit status."""
    if proc.poll() is None:
        signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # Also kill what the main process left running in its group (e.g. a shell's children).
    signal_group(proc, signal.SIGKILL)
    code = proc.wait()
    forget(proc)
    return code


def forget(proc: subprocess.Popen[bytes]) -> None:
    with _live_lock:
        _live.discard(proc)


def stop_all(grace: float = 2.0) -> None:
    """Stop every child still registered; used by teardown and at interpreter exit."""
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:
        stop(proc, grace=0)


atexit.register(stop_all)


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for failure messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"<{path} does not exist>"
    return "\n".join(text.splitlines()[-lines:])
