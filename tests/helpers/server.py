"""The shared harness: run the real ``pounce`` command as a subprocess on real sockets.

``start_server`` binds the listening socket itself and hands it over with ``--fd``, so
there is no race on the port and clients may connect before the server is up (the
kernel queues them).  ``spawn`` is the one way a test starts a process whose output it
collects (every other helper builds on it).  Every wait is bounded in time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
TESTS = ROOT / "tests"


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@dataclass
class Server:
    """A running ``pounce serve`` subprocess."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    _err: list[bytes] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def output(self) -> str:
        """Everything the server wrote to stderr and stdout so far."""
        return b"".join(self._err).decode("utf-8", "replace")

    def wait_output(self, text: str, timeout: float = 10.0) -> bool:
        return wait_for(lambda: text in self.output, timeout)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        return sock

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until a request gets any HTTP answer."""

        def answered() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output}")
            try:
                with self.connect(timeout=2) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    return s.recv(16).startswith(b"HTTP/1.1")
            except OSError:
                return False

        if not wait_for(answered, timeout, 0.05):
            raise RuntimeError(f"server not ready in {timeout}s:\n{self.output}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def _pump(stream: object, sink: list[bytes]) -> None:
    read = stream.read1 if hasattr(stream, "read1") else stream.read  # type: ignore[attr-defined]
    while True:
        chunk = read(65536)
        if not chunk:
            return
        sink.append(chunk)


def daemon_env() -> dict[str, str]:
    """Every daemon a test starts gets a control socket of its own."""
    return {"POUNCE_CONTROL_SOCKET": tempfile.mktemp(prefix="pounce-ctl-", suffix=".sock")}


def pounce_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pounce", *args]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POUNCE_")}
    env.pop("PORT", None)  # platform conventions Pounce reads when nothing else is set
    env.pop("WEB_CONCURRENCY", None)
    # POUNCE_TEST_HTTP_PARSER=h11 runs the same suites on the reference engine.
    engine = os.environ.get("POUNCE_TEST_HTTP_PARSER")
    if engine:
        env["POUNCE_HTTP_PARSER"] = engine
    loop = os.environ.get("POUNCE_TEST_LOOP")  # likewise: asyncio | uvloop
    if loop:
        env["POUNCE_SERVER_LOOP"] = loop
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "120"  # the banner wraps the same whatever terminal runs the tests
    if extra:
        env.update(extra)
    return env


def spawn(
    argv: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    env: dict[str, str] | None = None,
    full_env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    pass_fds: Sequence[int] = (),
    **popen: Any,
) -> Server:
    """Start ``argv`` with stdout and stderr collected (``Server.output``); no readiness wait.

    The child gets ``child_env(env)`` (or exactly ``full_env``) and runs in ``cwd`` (the
    repository by default); ``host``/``port`` are what the test will connect to."""
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        pass_fds=tuple(pass_fds),
        env=full_env if full_env is not None else child_env(env),
        cwd=str(cwd or ROOT),
        **popen,
    )
    server = Server(proc=proc, host=host, port=port)
    server._reader = threading.Thread(target=_pump, args=(proc.stdout, server._err), daemon=True)
    server._reader.start()
    return server


def start_server(
    app: str,
    *args: str,
    host: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    ready: bool = True,
) -> Server:
    """Bind a socket on ``host``, start ``pounce serve APP --fd N ARGS``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    try:
        server = spawn(
            pounce_cmd("serve", app, "--fd", str(fd), *args),
            host=host,
            port=port,
            env={**daemon_env(), **(env or {})},
            cwd=cwd,
            pass_fds=(fd,),
        )
    finally:
        sock.close()
    if ready:
        server.wait_ready()
    return server


def both(result: subprocess.CompletedProcess[str]) -> str:
    """A finished command's exit code and output, for assertion messages."""
    return f"rc={result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def run_pounce(
    *args: str,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """Run ``pounce ARGS`` to completion and capture its output."""
    return subprocess.run(
        pounce_cmd(*args),
        capture_output=True,
        text=True,
        env=child_env(env),
        cwd=str(cwd or ROOT),
        timeout=timeout,
    )


def http_exchange(
    server: Server,
    data: bytes | Sequence[bytes],
    *,
    timeout: float = 10.0,
    read_until_close: bool = True,
) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it."""
    with server.connect(timeout=timeout) as s:
        for chunk in [data] if isinstance(data, bytes) else data:
            s.sendall(chunk)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
            if not read_until_close:
                break
        return out
