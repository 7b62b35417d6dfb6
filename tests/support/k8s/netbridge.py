"""Byte pipes between the host's loopback and a test node's network namespace, over UNIX sockets.

The real node (:mod:`.realnode`) lives in network namespaces the run creates, joined to nothing on the
host: no veth, no route, no address outside the namespaces. A UNIX socket is a file, so it crosses
network namespaces; these pipes use that to connect the two worlds while every TCP connection stays on
a loopback or inside the run's own namespaces:

- ``tcp-to-unix LISTEN_HOST:PORT PATH``: accept TCP where this process runs (inside a node's namespace:
  the kubelet, kube-proxy and pods reach the API server at the node's address) and pipe each connection
  to the UNIX socket ``PATH``;
- ``unix-to-tcp PATH HOST:PORT``: accept on ``PATH`` and connect to ``HOST:PORT`` where this process runs
  (on the host: the API server on 127.0.0.1);
- ``connect-proxy PATH``: an HTTP CONNECT proxy on ``PATH`` that dials from where this process runs. The
  API server reaches kubelets (``kubectl logs``), pods and Services through it, configured as its
  ``cluster`` egress selection -- the way Konnectivity serves clusters whose nodes sit in networks the
  control plane cannot route to.

One process serves any number of rules: ``python -m tests.support.k8s.netbridge RULE ARGS [; RULE ARGS]...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

BUFFER = 64 * 1024
CONNECT_HEADER_LIMIT = 8192

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(BUFFER):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        # Half-close where the transport allows it, so a peer's EOF reaches the other side.
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()


async def _splice(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    try:
        await asyncio.gather(_pump(a_reader, b_writer), _pump(b_reader, a_writer))
    finally:
        for writer in (a_writer, b_writer):
            writer.close()


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def _to_unix(path: str) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_unix_connection(path)
        except OSError:
            writer.close()
            return
        await _splice(reader, writer, *upstream)

    return handle


def _to_tcp(target: str) -> Handler:
    host, port = _host_port(target)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await _splice(reader, writer, *upstream)

    return handle


async def _connect_proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``CONNECT host:port HTTP/1.1`` then headers; answer 200 and splice, or 502 with the reason."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
    if len(request_line) < 2 or request_line[0] != "CONNECT":
        writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
        writer.close()
        return
    host, port = _host_port(request_line[1])
    try:
        upstream = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=10)
    except (OSError, TimeoutError) as exc:
        reason = f"dial {host}:{port}: {exc}".encode()
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\n\r\n%s" % (len(reason), reason))
        writer.close()
        return
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await writer.drain()
    await _splice(reader, writer, *upstream)


async def _serve(rules: Sequence[Sequence[str]]) -> None:
    servers: list[asyncio.Server] = []
    for rule in rules:
        kind, *args = rule
        if kind == "tcp-to-unix":
            host, port = _host_port(args[0])
            servers.append(await asyncio.start_server(_to_unix(args[1]), host, port, reuse_address=True))
        elif kind in ("unix-to-tcp", "connect-proxy"):
            path = Path(args[0])
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            handler = _to_tcp(args[1]) if kind == "unix-to-tcp" else _connect_proxy
            servers.append(await asyncio.start_unix_server(handler, str(path), limit=CONNECT_HEADER_LIMIT))
            os.chmod(path, 0o600)
        else:
            raise SystemExit(f"netbridge: unknown rule {kind!r}")
    # The fixture waits for this line: every listener is bound once it is printed.
    print("netbridge: ready", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def parse_rules(argv: Sequence[str]) -> list[list[str]]:
    rules: list[list[str]] = [[]]
    for arg in argv:
        if arg == ";":
            rules.append([])
        else:
            rules[-1].append(arg)
    return [rule for rule in rules if rule]


def main(argv: Sequence[str] | None = None) -> None:
    rules = parse_rules(sys.argv[1:] if argv is None else argv)
    if not rules:
        raise SystemExit(__doc__)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(rules))


if __name__ == "__main__":
    main()
