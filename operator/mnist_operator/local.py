"""Local mode: train the manifest's resources with no cluster.

The manifest goes through the same loader and schema as on the API server; the trainer runs as a child
process with exactly the environment its pod would get (the run's files land in ``runs/<namespace>/<name>/``);
a Pushgateway is started on a free loopback port when none is given. Running the same command again
resumes from the last finished epoch: the local uid is stable, so the run's backup is found again.
"""

import contextlib
import importlib.util
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from mnist_api import MnistTraining
from mnist_api.env import trainer_config

LOCAL_UID = "local"
PUSHGATEWAY_INSTALL_HINT = "apt-get install prometheus-pushgateway (or pass --pushgateway URL)"


class LocalRunError(RuntimeError):
    """Local mode cannot start; the message says what to install or change."""


def local_environment(resource: MnistTraining, runs_dir: Path, pushgateway_url: str | None) -> dict[str, str]:
    """The trainer's ``MNIST_*`` variables, as ``pod_env`` would give them, with local volume paths."""
    # runs/ plays the output volume (so a run's files land in runs/<namespace>/<name>/) and runs/.data
    # the data volume, shared by every local run as a cache PVC would be.
    config = trainer_config(
        resource,
        default_pushgateway_url=pushgateway_url,
        data_dir=str((runs_dir / ".data").resolve()),
        output_dir=str(runs_dir.resolve()),
        uid=resource.metadata.uid or LOCAL_UID,
    )
    return config.to_env()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


def run_trainer(env: Mapping[str, str], base_environ: Mapping[str, str]) -> int:
    """Run ``python -m mnist_trainer`` in the foreground; Ctrl-C stops it cleanly (SIGTERM)."""
    if importlib.util.find_spec("mnist_trainer") is None:
        raise LocalRunError("the trainer is not installed here: pip install 'mnist-operator[trainer]'")
    child_env = {k: v for k, v in base_environ.items() if not k.startswith("MNIST_")} | dict(env)
    process = subprocess.Popen([sys.executable, "-m", "mnist_trainer"], env=child_env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # The trainer turns SIGTERM into a clean stop that keeps its last finished epoch.
        process.send_signal(signal.SIGTERM)
        return process.wait()
