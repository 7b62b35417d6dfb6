"""Real servers on loopback for tests: a file mirror over HTTP and a Prometheus Pushgateway."""

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class MirrorBehaviour:
    """Faults a test can switch on; every request is recorded."""

    fail_next: int = 0
    """Answer the next N requests with 503."""
    cut_after_bytes: int | None = None
    """Close the connection after this many body bytes of the next full (non-range) response."""
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(path, Range header) of every request."""


class _MirrorHandler(BaseHTTPRequestHandler):
    root: Path
    behaviour: MirrorBehaviour

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        behaviour = self.behaviour
        range_header = self.headers.get("Range")
        behaviour.requests.append((self.path, range_header))
        if behaviour.fail_next > 0:
            behaviour.fail_next -= 1
            self.send_error(503, "injected failure")
            return
        path = self.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        start = 0
        if range_header and range_header.startswith("bytes="):
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        payload = body[start:]
        if behaviour.cut_after_bytes is not None and not range_header:
            cut, behaviour.cut_after_bytes = behaviour.cut_after_bytes, None
            self.wfile.write(payload[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)


@dataclass
class Mirror:
    root: Path
    url: str
    behaviour: MirrorBehaviour


@contextmanager
def serve_directory(root: Path) -> Iterator[Mirror]:
    behaviour = MirrorBehaviour()
    handler = type("Handler", (_MirrorHandler,), {"root": root, "behaviour": behaviour})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Mirror(root, f"http://127.0.0.1:{server.server_address[1]}/", behaviour)
    finally:
        server.shutdown()
        server.server_close()


def pushgateway_binary() -> str:
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        raise RuntimeError("prometheus-pushgateway is not installed: apt-get install prometheus-pushgateway")
    return binary


def basic_auth_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def write_basic_auth_web_config(path: Path, username: str, password: str) -> Path:
    """A Prometheus ``--web.config.file`` that requires basic auth for every request (bcrypt, as the
    exporter toolkit demands)."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()  # 4: fast, test only
    path.write_text(json.dumps({"basic_auth_users": {username: hashed}}))  # JSON is YAML
    return path


@dataclass
class Pushgateway:
    url: str
    process: subprocess.Popen[bytes]
    auth: tuple[str, str] | None = None
    """Credentials the test itself reads with, when the Pushgateway requires basic auth."""

    def open_path(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path)
        if self.auth:
            request.add_header("Authorization", basic_auth_header(*self.auth))
        return urllib.request.urlopen(request, timeout=10)

    def groups(self) -> list[dict[str, Any]]:
        """The Pushgateway's own view of every group (GET /api/v1/metrics)."""
        with self.open_path("/api/v1/metrics") as response:
            data: list[dict[str, Any]] = json.load(response)["data"]
            return data

    def exposition(self) -> str:
        with self.open_path("/metrics") as response:
            text: str = response.read().decode()
            return text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_pushgateway(
    port: int | None = None, *, web_config: Path | None = None, auth: tuple[str, str] | None = None
) -> Pushgateway:
    """A Pushgateway on loopback; with ``web_config`` (see ``write_basic_auth_web_config``) it requires
    basic auth, and ``auth`` is what the returned handle reads with."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            pushgateway_binary(),
            f"--web.listen-address=127.0.0.1:{port}",
            "--persistence.file=",
            "--web.enable-admin-api",
            "--log.level=warn",
            *([f"--web.config.file={web_config}"] if web_config else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = Pushgateway(f"http://127.0.0.1:{port}", process, auth)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with gateway.open_path("/-/ready"):
                return gateway
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"pushgateway exited with {process.returncode}") from None
            time.sleep(0.05)
    gateway.stop()
    raise RuntimeError("pushgateway did not become ready in 15s")


def trainer_environment(extra: dict[str, str]) -> dict[str, str]:
    """The test process's environment minus any MNIST_* leftovers, plus the given contract variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_")}
    env.update(extra)
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    return env
