"""Drives the measurements: start a server, measure it under one workload, stop it.

Every measurement gets a fresh server process, pinned to one CPU, with wrk (and the
idle-connections helper) pinned to another.  Servers are interleaved: each repetition
runs every workload on every server, the server order rotating from one repetition
to the next, so that drift on a noisy machine falls on all of them alike.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pounce_bench.procs import pin_prefix, stop_group, tree_memory, wait_for_200
from pounce_bench.results import RunRecord
from pounce_bench.servers import ServerSpec, bench_dir, pounce_env
from pounce_bench.workloads import Workload
from pounce_bench.wrk import WrkOutputError, parse_wrk_output, post_script, wrk_command

APP_MODULE = "pounce_bench_app"
APP = f"{APP_MODULE}:app"
SETTLE_S = 0.5  # after the first 200, before reading idle memory
HELPER_TIMEOUT_S = 120.0

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Settings:
    """What to measure and how.  CPUs are None when not pinning."""

    wrk: str
    workloads: tuple[Workload, ...]
    duration_s: int = 5
    warmup_s: int = 1
    connections: int = 64
    reps: int = 3
    idle_connections: int = 1000
    server_cpu: int | None = 0
    client_cpu: int | None = 1
    host: str = "127.0.0.1"
    startup_timeout_s: float = 30.0


def prepare_workdir(workdir: Path, workloads: tuple[Workload, ...]) -> None:
    """Copy the app in as ``pounce_bench_app.py`` and write the POST Lua scripts."""
    shutil.copyfile(Path(__file__).with_name("app.py"), workdir / f"{APP_MODULE}.py")
    for w in workloads:
        if w.body_size:
            (workdir / f"post-{w.body_size}.lua").write_text(post_script(w.body_size))


def raise_fd_limit(need: int) -> None:
    """Let this process and its children (servers, wrk) hold ``need`` descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def interleaved(
    reps: int, workloads: tuple[Workload, ...], servers: list[ServerSpec]
) -> list[tuple[int, Workload, ServerSpec]]:
    """The order of the measurements: rep by rep, workload by workload, every server,
    the server order rotated by one each repetition."""
    order = []
    for rep in range(reps):
        shift = rep % len(servers) if servers else 0
        turn = servers[shift:] + servers[:shift]
        order += [(rep + 1, w, s) for w in workloads for s in turn]
    return order


class Runner:
    """Runs every measurement of a benchmark in a work directory it is given."""

    def __init__(self, settings: Settings, workdir: Path, log: Log) -> None:
        self.settings = settings
        self.workdir = workdir
        self.log = log
        self._count = 0

    def run(self, servers: list[ServerSpec]) -> list[RunRecord]:
        prepare_workdir(self.workdir, self.settings.workloads)
        raise_fd_limit(self.settings.idle_connections + 4096)
        plan = interleaved(self.settings.reps, self.settings.workloads, servers)
        records = []
        for i, (rep, workload, spec) in enumerate(plan, 1):
            record = self.measure(rep, workload, spec)
            records.append(record)
            self.log(f"[{i}/{len(plan)}] " + progress_line(record))
        return records

    def measure(self, rep: int, workload: Workload, spec: ServerSpec) -> RunRecord:
        """Start ``spec``, put ``workload`` on it, stop it; never raises for a failed run."""
        record = RunRecord(rep=rep, workload=workload.name, server=spec.name)
        self._count += 1
        name = f"{spec.name}-{workload.name}-{rep}"
        port = free_port(self.settings.host)
        command = pin_prefix(self.settings.server_cpu) + spec.command(
            app=APP,
            host=self.settings.host,
            port=port,
            control_socket=str(self.workdir / f"ctl-{self._count}.sock"),
        )
        env = pounce_env(self.workdir) if spec.kind == "pounce" else _peer_env(self.workdir)
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log_file:
            started = time.perf_counter()
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
            )
            try:
                self._measure_running(record, workload, proc, port, started)
            finally:
                stop_group(proc)
        if record.error:
            record.error += _log_tail(log_path)
        return record

    def _measure_running(
        self,
        record: RunRecord,
        workload: Workload,
        proc: subprocess.Popen[bytes],
        port: int,
        started: float,
    ) -> None:
        s = self.settings
        waited = wait_for_200(proc, s.host, port, "/hello", timeout=s.startup_timeout_s)
        if waited < 0:
            record.error = "exited before answering" if waited == -1.0 else "no 200 in time"
            return
        record.startup_ms = round((time.perf_counter() - started) * 1000, 1)
        time.sleep(SETTLE_S)
        idle = tree_memory(proc.pid)
        record.rss_idle_kib, record.processes = idle.rss_kib, idle.processes
        record.worker_rss_idle_kib = idle.worker_rss_kib
        helper = self._start_idle(record, port) if workload.idle else None
        try:
            if s.warmup_s:
                self._wrk(workload, port, s.warmup_s)
            out = self._wrk(workload, port, s.duration_s)
            memory = tree_memory(proc.pid)
            record.rss_after_kib, record.rss_peak_kib = memory.rss_kib, memory.hwm_kib
            if helper is not None:
                record.idle_connections_open = _helper_count(helper)
        finally:
            if helper is not None:
                _stop_helper(helper)
        if proc.poll() is not None:
            record.error = f"server exited during the load (status {proc.returncode})"
            return
        _fill_from_wrk(record, out)

    def _wrk(self, workload: Workload, port: int, duration_s: int) -> str:
        s = self.settings
        script = (
            str(self.workdir / f"post-{workload.body_size}.lua") if workload.body_size else None
        )
        url = f"http://{s.host}:{port}{workload.path}"
        command = pin_prefix(s.client_cpu) + wrk_command(
            s.wrk, url, duration_s=duration_s, connections=s.connections, script=script
        )
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=duration_s + 60, check=False
            )
        except subprocess.TimeoutExpired:
            return "wrk timed out"
        return done.stdout + done.stderr

    def _start_idle(self, record: RunRecord, port: int) -> subprocess.Popen[str]:
        s = self.settings
        command = [*pin_prefix(s.client_cpu), sys.executable, "-m", "pounce_bench.idle"]
        command += [s.host, str(port), str(s.idle_connections), "/hello"]
        helper = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=pounce_env(bench_dir()),
        )
        line = _readline(helper, HELPER_TIMEOUT_S).split()
        if line[:1] == ["ready"]:
            opened, failed = int(line[1]), int(line[2])
            record.notes.append(f"idle connections opened: {opened}, failed: {failed}")
        else:
            record.notes.append("idle-connections helper did not report ready")
        return helper


def _fill_from_wrk(record: RunRecord, out: str) -> None:
    try:
        result = parse_wrk_output(out)
    except WrkOutputError as exc:
        record.error = str(exc)
        return
    record.requests = result.requests
    record.requests_per_s = result.requests_per_s
    record.latency_p50_ms = result.p50_ms
    record.latency_p99_ms = result.p99_ms
    record.latency_avg_ms = result.latency_avg_ms
    record.latency_max_ms = result.latency_max_ms
    record.transfer_mib_per_s = round(result.transfer_per_s / 1024**2, 2)
    record.socket_errors = result.errors - result.non_2xx
    record.non_2xx = result.non_2xx
    if result.requests == 0:
        record.error = "no request completed"
    elif result.non_2xx > result.requests // 100:
        record.error = f"{result.non_2xx} of {result.requests} responses were not 2xx/3xx"
    else:
        record.ok = True


def progress_line(r: RunRecord) -> str:
    head = f"rep {r.rep} {r.workload:<12} {r.server:<18}"
    if not r.ok:
        return f"{head} FAILED: {(r.error or '').splitlines()[0]}"
    text = f"{head} {r.requests_per_s or 0:>10,.0f} req/s  p50 {r.latency_p50_ms:.2f} ms"
    text += f"  p99 {r.latency_p99_ms:.2f} ms  start {r.startup_ms:.0f} ms"
    if r.socket_errors or r.non_2xx:
        text += f"  errors {r.socket_errors + r.non_2xx}"
    if r.idle_connections_open is not None:
        text += f"  idle open {r.idle_connections_open}"
    return text


def _peer_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POUNCE_")}
    env["PYTHONPATH"] = str(workdir)
    return env


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    stream: IO[str] | None = proc.stdout
    if stream is None:
        return ""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


def _helper_count(helper: subprocess.Popen[str]) -> int | None:
    if helper.stdin is None:
        return None
    try:
        helper.stdin.write("count\n")
        helper.stdin.flush()
    except OSError:
        return None
    line = _readline(helper, 30.0).split()
    return int(line[1]) if line[:1] == ["open"] else None


def _stop_helper(helper: subprocess.Popen[str]) -> None:
    for stream in (helper.stdin, helper.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    try:
        helper.wait(10)
    except subprocess.TimeoutExpired:
        helper.kill()
        helper.wait()


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    if not text:
        return ""
    return "\n" + "\n".join(text.splitlines()[-lines:])
