"""Test-side helpers for the supervisor daemon suites (``tests/test_daemon_*.py``).

Not an app: imported by the test modules only.  Starts real ``pounce serve``
daemons (on an inherited ``--fd`` socket via ``helpers.server``, or on the
listeners of a config file), drives them with ``pounce ctl`` run as a real
subprocess, and reads ``/proc`` to follow worker processes.  Every wait is a
bounded poll (``wait_for``); nothing sleeps to wait.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.procs import alive, children_of
from helpers.server import (
    ROOT,
    TESTS,
    Server,
    both,
    child_env,
    pounce_cmd,
    spawn,
    start_server,
    wait_for,
)

HOST = "127.0.0.1"


# -- processes -------------------------------------------------------------------------------


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a new socket can bind and listen on ``host:port`` (TIME_WAIT does not count)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        s.listen(1)
    except OSError:
        return False
    finally:
        s.close()
    return True


# -- HTTP ------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def get(port: int, path: str = "/", *, host: str = HOST, timeout: float = 10.0) -> Reply:
    """One GET on a fresh connection (``Connection: close``)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()


def answers(
    port: int, path: str = "/health/live", *, host: str = HOST, timeout: float = 2.0
) -> bool:
    """Whether a request on a fresh connection gets any HTTP answer within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            return s.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


def status_of(port: int, path: str, **kw: Any) -> int | None:
    try:
        return get(port, path, **kw).status
    except OSError:
        return None


class Load:
    """Client threads sending GETs in a loop, counting every outcome.

    ``keepalive`` reuses one ``http.client`` connection per thread (reconnecting
    after a ``Connection: close``, as any HTTP client does); otherwise every request
    has a fresh connection.  Every non-200 is a failure, every exception an error.
    """

    def __init__(
        self,
        port: int,
        *,
        threads: int = 8,
        keepalive: bool = True,
        path: str = "/",
        host: str = HOST,
        timeout: float = 15.0,
    ) -> None:
        self.port = port
        self.host = host
        self.path = path
        self.keepalive = keepalive
        self.timeout = timeout
        self.n_threads = threads
        self.ok = 0
        self.failures = 0
        self.errors = 0
        self.per_thread_bad = [0] * threads
        self.samples: list[str] = []
        self.pids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    @property
    def total(self) -> int:
        return self.ok + self.failures + self.errors

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> Load:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        return self

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _note(self, index: int, kind: str, text: str) -> None:
        with self._lock:
            if kind == "failure":
                self.failures += 1
            else:
                self.errors += 1
            self.per_thread_bad[index] += 1
            if len(self.samples) < 20:
                self.samples.append(f"{kind}: {text}")

    def _run(self, index: int) -> None:
        conn: http.client.HTTPConnection | None = None
        headers = {} if self.keepalive else {"Connection": "close"}
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.request("GET", self.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except Exception as exc:
                self._note(index, "error", repr(exc))
                conn.close()
                conn = None
                continue
            if resp.status == 200:
                pid = _pid_in(body)
                with self._lock:
                    self.ok += 1
                    if pid is not None:
                        self.pids.add(pid)
            else:
                self._note(index, "failure", f"{resp.status} {body[:200]!r}")
            if not self.keepalive:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def summary(self) -> str:
        return (
            f"ok={self.ok} failures={self.failures} errors={self.errors} "
            f"per_thread={self.per_thread_bad} samples={self.samples}"
        )


def _pid_in(body: bytes) -> int | None:
    if not body.startswith(b"{"):
        return None
    try:
        pid = json.loads(body).get("pid")
    except (ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) else None


# -- ctl -------------------------------------------------------------------------------------


def ctl_cmd(sock: str | Path, *args: str) -> list[str]:
    return pounce_cmd("ctl", "--socket", str(sock), *args)


def run_ctl(
    sock: str | Path, *args: str, timeout: float = 60.0, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """``pounce ctl --socket SOCK ARGS`` run to completion."""
    return subprocess.run(
        ctl_cmd(sock, *args),
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=str(ROOT),
        timeout=timeout,
        **kw,
    )


def popen_ctl(sock: str | Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ctl_cmd(sock, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(),
        cwd=str(ROOT),
    )


# -- daemons ---------------------------------------------------------------------------------


@dataclass
class Daemon:
    """A running ``pounce serve`` daemon with its own control socket."""

    server: Server
    ctl_socket: Path
    port: int
    seen_pids: set[int] = field(default_factory=set)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.server.proc

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    @property
    def output(self) -> str:
        return self.server.output

    def wait_output(self, text: str, timeout: float = 15.0) -> bool:
        return self.server.wait_output(text, timeout)

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return run_ctl(self.ctl_socket, *args, timeout=timeout)

    def status(self) -> dict[str, Any]:
        result = self.ctl("status", "--json", timeout=20)
        assert result.returncode == 0, both(result) + "\n" + self.output
        data = json.loads(result.stdout)
        for worker in data.get("workers", []):
            if isinstance(worker.get("pid"), int):
                self.seen_pids.add(worker["pid"])
        return data

    def try_status(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.output}")
        result = self.ctl("status", "--json", timeout=20)
        if result.returncode != 0:
            return None
        data = json.loads(result.stdout)
        for worker in data.get("workers", []):
            if isinstance(worker.get("pid"), int):
                self.seen_pids.add(worker["pid"])
        return data

    def wait_status(self, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
        """Poll ``ctl status --json`` until ``predicate(status)``; return that status."""
        found: list[dict[str, Any]] = []

        def check() -> bool:
            data = self.try_status()
            if data is not None and predicate(data):
                found.append(data)
                return True
            return False

        if not wait_for(check, timeout, 0.05):
            raise AssertionError(
                f"status condition not met in {timeout}s; last status:\n"
                f"{json.dumps(self.try_status(), indent=1)}\noutput:\n{self.output}"
            )
        return found[0]

    def wait_workers(
        self, n: int, generation: int | None = None, timeout: float = 20.0
    ) -> dict[str, Any]:
        """Wait until exactly ``n`` workers exist, all ready (and of ``generation``)."""

        def ok(data: dict[str, Any]) -> bool:
            workers = data.get("workers", [])
            if len(workers) != n or any(w.get("state") != "ready" for w in workers):
                return False
            if generation is not None:
                if data.get("generation") != generation:
                    return False
                if any(w.get("generation") != generation for w in workers):
                    return False
            return True

        return self.wait_status(ok, timeout)

    def worker_pids(self, data: dict[str, Any] | None = None) -> list[int]:
        data = data if data is not None else self.status()
        return [w["pid"] for w in data["workers"]]

    def wait_exit(self, timeout: float = 20.0) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM (then SIGKILL), kill any worker left behind, release the pipe."""
        if self.proc.poll() is None:
            self.seen_pids.update(children_of(self.pid))
        self.server.stop()
        if not wait_for(lambda: not any(alive(p) for p in self.seen_pids), 10):
            for pid in self.seen_pids:
                if alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()


def short_dir(prefix: str = "pd-") -> Path:
    """A short temp dir (Unix socket paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


class Daemons:
    """Starts daemons for one test and stops them (and any stray worker) at teardown."""

    def __init__(self) -> None:
        self.started: list[Daemon] = []
        self.dirs: list[Path] = []

    def tmpdir(self) -> Path:
        d = short_dir()
        self.dirs.append(d)
        return d

    def fd(
        self,
        app: str,
        *args: str,
        workers: int = 2,
        env: dict[str, str] | None = None,
        wait: bool = True,
        cwd: str | Path | None = None,
    ) -> Daemon:
        """``pounce serve APP --fd N --workers W --control-socket S ARGS``; waits for all
        workers to be ready unless ``wait`` is false."""
        sock = self.tmpdir() / "ctl.sock"
        server = start_server(
            app,
            "--workers",
            str(workers),
            "--control-socket",
            str(sock),
            *args,
            env=env,
            cwd=cwd,
            ready=False,
        )
        daemon = Daemon(server=server, ctl_socket=sock, port=server.port)
        self.started.append(daemon)
        if wait:
            wait_started(daemon, workers)
        return daemon

    def spawn(
        self,
        argv: Sequence[str],
        *,
        port: int,
        ctl_socket: Path,
        env: dict[str, str] | None = None,
        full_env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        pass_fds: Sequence[int] = (),
        user: str | None = None,
    ) -> Daemon:
        """Start any command line (``pounce serve -c cfg``, systemd-socket-activate, ...),
        as ``user`` (with that user's group only) when given."""
        as_user: dict[str, Any] = {}
        if user is not None:
            entry = pwd.getpwnam(user)
            as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        server = spawn(
            argv,
            host=HOST,
            port=port,
            env=env,
            full_env=full_env,
            cwd=cwd,
            pass_fds=pass_fds,
            **as_user,
        )
        daemon = Daemon(server=server, ctl_socket=ctl_socket, port=port)
        self.started.append(daemon)
        return daemon

    def config(
        self,
        toml_text: str,
        *extra: str,
        port: int,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> tuple[Daemon, Path]:
        """``pounce serve -c CFG EXTRA`` where CFG is ``toml_text`` with a ``[control]`` table
        added; returns the daemon and the config path (rewrite it, then reload)."""
        d = self.tmpdir()
        sock = d / "ctl.sock"
        cfg = d / "pounce.toml"
        cfg.write_text(with_control(toml_text, sock))
        daemon = self.spawn(
            pounce_cmd("serve", "-c", str(cfg), *extra),
            port=port,
            ctl_socket=sock,
            env=env,
            cwd=cwd,
        )
        return daemon, cfg

    def close(self) -> None:
        for daemon in self.started:
            daemon.stop()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def with_control(toml_text: str, sock: Path) -> str:
    return f'{toml_text.rstrip()}\n\n[control]\nsocket = "{sock}"\n'


def wait_started(daemon: Daemon, workers: int, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until the control socket answers and ``workers`` workers are ready."""
    if not wait_for(lambda: daemon.ctl_socket.exists() or daemon.proc.poll() is not None, timeout):
        raise AssertionError(f"no control socket in {timeout}s:\n{daemon.output}")
    return daemon.wait_workers(workers, timeout=timeout)


# -- apps in a temp dir ------------------------------------------------------------------------

VERSIONED_APP = """
import asyncio
import os

VERSION = {version!r}
LIFESPAN_FAIL = {lifespan_fail!r}
STARTUP_HANG = {startup_hang!r}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if STARTUP_HANG:
                    await asyncio.sleep(3600)
                if LIFESPAN_FAIL:
                    await send({{"type": "lifespan.startup.failed", "message": LIFESPAN_FAIL}})
                    return
                await send({{"type": "lifespan.startup.complete"}})
            elif message["type"] == "lifespan.shutdown":
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    body = ('{{"version": "%s", "pid": %d}}' % (VERSION, os.getpid())).encode()
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
"""


def write_versioned_app(
    directory: Path,
    module: str,
    version: str,
    *,
    lifespan_fail: str = "",
    import_error: str = "",
    startup_hang: bool = False,
) -> None:
    """Write ``module.py`` answering ``{"version": ..., "pid": ...}``.

    ``import_error`` makes the import raise with that message; ``lifespan_fail``
    makes lifespan startup fail with that message; ``startup_hang`` makes it never finish.
    """
    text = VERSIONED_APP.format(
        version=version, lifespan_fail=lifespan_fail, startup_hang=startup_hang
    )
    if import_error:
        text = f"raise RuntimeError({import_error!r})\n" + text
    path = directory / f"{module}.py"
    tmp = directory / f".{module}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)


def app_env(directory: Path) -> dict[str, str]:
    """PYTHONPATH with ``directory`` first; no bytecode cache, so a rewritten module of the
    same size within the same second is never served from a stale ``.pyc``."""
    return {
        "PYTHONPATH": os.pathsep.join([str(directory), str(TESTS), str(ROOT)]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


# -- metrics ---------------------------------------------------------------------------------


def scrape(
    port: int, path: str = "/metrics"
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` parsed with prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    reply = get(port, path)
    assert reply.status == 200, reply
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def families(port: int, path: str = "/metrics") -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    reply = get(port, path)
    assert reply.status == 200, reply
    return {f.name: f for f in text_string_to_metric_families(reply.text)}


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def sum_samples(samples: dict[Any, float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def labelled(samples: dict[Any, float], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, labels), v in samples.items():
        if n == name:
            out[dict(labels).get(label, "")] = v
    return out


# -- sd_notify -------------------------------------------------------------------------------


class NotifySocket:
    """A datagram socket bound at a temp path, collecting what is sent to NOTIFY_SOCKET."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str], str]] = []
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
            text = data.decode("utf-8", "replace")
            fields: dict[str, str] = {}
            for line in text.split("\n"):
                if "=" in line:
                    key, _, value = line.partition("=")
                    fields[key] = value
            with self._lock:
                self.messages.append((time.monotonic(), fields, text))

    def snapshot(self) -> list[dict[str, str]]:
        with self._lock:
            return [m[1] for m in self.messages]

    def raw(self) -> list[str]:
        with self._lock:
            return [m[2] for m in self.messages]

    def count(self, key: str, value: str | None = None) -> int:
        return sum(1 for m in self.snapshot() if key in m and (value is None or m[key] == value))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def run_as_nobody_python() -> tuple[list[str], dict[str, str]]:
    """An interpreter user ``nobody`` may execute, and the environment to import pounce with.

    The venv's interpreter may live under a directory only root can enter; then the
    same-version system interpreter runs with the venv's site-packages on PYTHONPATH.
    """
    env = child_env()
    probe = (
        subprocess.run(
            [sys.executable, "-c", "import pounce"],
            capture_output=True,
            user="nobody",
            env=env,
            cwd="/",
            check=False,
        )
        if _can_exec_as_nobody(sys.executable)
        else None
    )
    if probe is not None and probe.returncode == 0:
        return [sys.executable], env
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    assert system is not None, f"no {version} that user nobody can run"
    import site

    site_dirs = [p for p in site.getsitepackages() if os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *site_dirs, env["PYTHONPATH"]])
    return [system], env


def other_user(name: str = "pounce-intruder") -> pwd.struct_passwd:
    """A second local user (neither root nor ``nobody``), created on first use."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        # Another test process may create it at the same moment: check=False, then look.
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            check=False,
        )
        return pwd.getpwnam(name)


def _can_exec_as_nobody(path: str) -> bool:
    try:
        result = subprocess.run(
            [path, "-c", "pass"], capture_output=True, user="nobody", cwd="/", check=False
        )
    except PermissionError:
        return False
    return result.returncode == 0
