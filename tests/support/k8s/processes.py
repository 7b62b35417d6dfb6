"""Child processes that never outlive the test session.

Every child runs in its own session (so its whole process group can be signalled), is registered in a
module-level set that an ``atexit`` hook kills, and, where util-linux's ``setpriv`` exists, gets a
parent-death signal so even a SIGKILLed pytest leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
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


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the kernel's ephemeral range.

    A port the kernel picks for a bind to port 0 comes from the ephemeral range, where every outgoing
    connection also takes its source port: between this check and the component's own bind, a client
    connection could take it (seen in CI: a kube-controller-manager that could not listen, and with it a
    whole worker's control plane). Below that range only listeners take ports."""
    low = _ephemeral_low()
    if low > 10_001:
        for _ in range(500):
            port = random.randint(10_000, low - 1)
            if port in _HANDED_OUT:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _HANDED_OUT.add(port)
            return port
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
