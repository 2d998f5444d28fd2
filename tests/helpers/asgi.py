"""Test-side helpers for the ASGI / lifespan / shutdown / listener / CLI suites.

Not an app: imported by the test modules only.  Builds on ``helpers.server`` (the shared
harness) and adds servers started with explicit listeners (``--host/--port``,
``--uds``, config files), Unix-socket clients, raw exchanges that tell a clean close
from a timeout, and a little ``/proc`` reading.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from helpers.procs import alive, kill_tree, process_tree
from helpers.server import Server, pounce_cmd, spawn, start_server, wait_for


def decode_tagged(value: Any) -> Any:
    """Undo ``apps.asgi_scope.tag``."""
    if isinstance(value, list):
        return [decode_tagged(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return value["__bytes__"].encode("latin-1")
        if set(value) == {"__tuple__"}:
            return tuple(decode_tagged(v) for v in value["__tuple__"])
        return {k: decode_tagged(v) for k, v in value.items()}
    return value


def output_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


class Launcher:
    """Starts pounce subprocesses and always cleans them up (pipes included)."""

    def __init__(self) -> None:
        self.servers: list[Server] = []

    # -- starting -------------------------------------------------------------------
    def fd(self, app: str, *args: str, host: str = "127.0.0.1", **kw: Any) -> Server:
        """The conftest way: the test binds, pounce inherits the socket with --fd."""
        server = start_server(app, *args, host=host, **kw)
        self.servers.append(server)
        return server

    def spawn(
        self,
        *args: str,
        host: str = "",
        port: int = 0,
        pass_fds: Sequence[int] = (),
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        cmd: list[str] | None = None,
    ) -> Server:
        """Run ``pounce ARGS`` (or ``cmd``) with output captured; no readiness wait."""
        # Every daemon gets a control socket of its own, so parallel tests never meet.
        ctl = {"POUNCE_CONTROL_SOCKET": tempfile.mktemp(prefix="pnc-ctl-", suffix=".sock")}
        server = spawn(
            cmd if cmd is not None else pounce_cmd(*args),
            host=host,
            port=port,
            env={**ctl, **(env or {})},
            cwd=cwd,
            pass_fds=pass_fds,
            stdin=subprocess.DEVNULL,
        )
        self.servers.append(server)
        return server

    # -- cleanup ----------------------------------------------------------------------
    def close(self) -> None:
        for server in self.servers:
            finish(server)


def finish(server: Server, timeout: float = 15.0) -> int:
    """Stop a server (SIGTERM, then SIGKILL) and release its pipe."""
    tree = process_tree(server.proc.pid) if server.proc.poll() is None else []
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_tree(server.proc.pid)
            server.proc.wait(5)
    # Workers must not outlive the supervisor; never leave any behind a test either.
    if not wait_for(lambda: not any(alive(p) for p in tree[1:]), 10):
        for pid in tree[1:]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    if server._reader is not None:
        server._reader.join(5)
    if server.proc.stdout is not None and not server.proc.stdout.closed:
        server.proc.stdout.close()
    return server.proc.returncode


def wait_exit(server: Server, timeout: float) -> int | None:
    """Wait for the process to exit; return its code, or None if it is still running."""
    try:
        code = server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    if server._reader is not None:
        server._reader.join(5)
    return code


@contextlib.contextmanager
def launcher() -> Iterator[Launcher]:
    launch = Launcher()
    try:
        yield launch
    finally:
        launch.close()


@contextlib.contextmanager
def short_tmpdir() -> Iterator[Path]:
    """A short directory path (Unix socket paths are limited to ~107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="pnc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- readiness ----------------------------------------------------------------------------


def _answers(connect: Any) -> bool:
    try:
        with connect() as s:
            s.settimeout(2)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


def tcp_answers(host: str, port: int) -> bool:
    return _answers(lambda: socket.create_connection((host, port), timeout=2))


def uds_connect(path: str | Path, timeout: float = 10.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except OSError:
        s.close()
        raise
    return s


def uds_answers(path: str | Path) -> bool:
    return _answers(lambda: uds_connect(path, 2))


def wait_until_answers(server: Server, probe: Any, timeout: float = 15.0) -> None:
    def ok() -> bool:
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited {server.proc.returncode}:\n{server.output}")
        return bool(probe())

    if not wait_for(ok, timeout, 0.05):
        raise AssertionError(f"server not answering after {timeout}s:\n{server.output}")


def wait_tcp(server: Server, host: str, port: int, timeout: float = 15.0) -> None:
    wait_until_answers(server, lambda: tcp_answers(host, port), timeout)


def wait_uds(server: Server, path: str | Path, timeout: float = 15.0) -> None:
    wait_until_answers(server, lambda: uds_answers(path), timeout)


# -- clients ------------------------------------------------------------------------------


def uds_get(path: str | Path, url: str = "http://localhost/", **kw: Any) -> httpx.Response:
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(url, **kw)


def http_get(url: str, **kw: Any) -> httpx.Response:
    with httpx.Client(timeout=10) as client:
        return client.get(url, **kw)


def read_until_close(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Read until EOF/reset or ``timeout``.  Returns (data, closed_by_peer)."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(data), False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return bytes(data), True
        except TimeoutError:
            return bytes(data), False
        if not chunk:
            return bytes(data), True
        data += chunk


def exchange(server: Server, request: bytes, timeout: float = 10.0) -> tuple[bytes, bool]:
    with server.connect(timeout=timeout) as s:
        s.sendall(request)
        return read_until_close(s, timeout)


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Read one Content-Length delimited response from a keep-alive connection."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    buf = bytearray(rest)
    while len(buf) < length:
        chunk = sock.recv(262144)
        if not chunk:
            raise AssertionError(f"connection closed mid-body after {len(buf)} bytes")
        buf += chunk
    return status, headers, bytes(buf[:length])


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def scope_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    payload = response.json()
    payload["scope"] = decode_tagged(payload["scope"])
    payload["state_before"] = decode_tagged(payload["state_before"])
    return payload


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out
