"""Reload under load: requests/s, failed requests and connection errors across N reloads.

Starts ``pounce serve`` on a socket this script binds (``--fd``), puts continuous
keep-alive load on it from client threads, reloads it N times in a row (SIGHUP by
default, or ``pounce ctl reload``), and reports, as a markdown table and as JSON:

* requests/s over the reload period, failed requests (any non-200) and connection
  errors (any exception in the client);
* per reload, the time from the signal (or the ctl call) to the new generation
  serving: when ``ctl status`` first shows every worker of the new generation
  ready, and when a response first came from a worker of the new generation.

    python benchmarks/reload_bench.py --workers 2 --reloads 20
    python benchmarks/reload_bench.py --workers 4 --reloads 50 --threads 16 --json out.json

The promise it checks: under >= 1000 requests/s of keep-alive load on loopback,
zero failed requests and zero connection errors.  ``--check`` exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

APP = """
import os

_BODY = None


async def app(scope, receive, send):
    global _BODY
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if _BODY is None:
        _BODY = ('{"pid": %d}' % os.getpid()).encode()
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(_BODY)).encode())]})
    await send({"type": "http.response.body", "body": _BODY})
"""


# -- load --------------------------------------------------------------------------------------


@dataclass
class LoadStats:
    ok: int = 0
    failures: int = 0
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    first_seen: dict[int, float] = field(default_factory=dict)


class Load:
    """Keep-alive GET loops in threads; a response's pid is recorded when first seen."""

    def __init__(self, port: int, threads: int) -> None:
        self.port = port
        self.stats = LoadStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _bad(self, kind: str, text: str) -> None:
        with self._lock:
            if kind == "failure":
                self.stats.failures += 1
            else:
                self.stats.errors += 1
            if len(self.stats.samples) < 20:
                self.stats.samples.append(f"{kind}: {text}")

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        local_ok = 0
        seen: set[int] = set()
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
            except Exception as exc:
                self._bad("error", repr(exc))
                conn.close()
                conn = None
                continue
            if resp.status != 200:
                self._bad("failure", f"{resp.status} {body[:100]!r}")
                continue
            local_ok += 1
            pid = _pid(body)
            if pid is not None and pid not in seen:
                seen.add(pid)
                now = time.monotonic()
                with self._lock:
                    self.stats.first_seen.setdefault(pid, now)
            if local_ok >= 64:
                with self._lock:
                    self.stats.ok += local_ok
                local_ok = 0
        with self._lock:
            self.stats.ok += local_ok
        if conn is not None:
            conn.close()

    def ok(self) -> int:
        with self._lock:
            return self.stats.ok


def _pid(body: bytes) -> int | None:
    try:
        value = json.loads(body).get("pid")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


# -- the daemon --------------------------------------------------------------------------------


class Daemon:
    def __init__(self, workers: int, extra: list[str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pounce-bench-"))
        (self.dir / "bench_reload_app.py").write_text(APP)
        self.ctl_socket = str(self.dir / "ctl.sock")
        self.log = open(self.dir / "daemon.log", "wb")  # noqa: SIM115
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(2048)
        self.port = sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("POUNCE_")}
        env["PYTHONPATH"] = os.pathsep.join([str(self.dir), str(ROOT / "src")])
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        cmd = [
            sys.executable, "-m", "pounce", "serve", "bench_reload_app:app",
            "--fd", str(sock.fileno()), "--workers", str(workers),
            "--control-socket", self.ctl_socket, "--no-access-log", *extra,
        ]  # fmt: skip
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, pass_fds=(sock.fileno(),)
            )
        finally:
            sock.close()
        self._client: Any = None

    def status(self) -> dict[str, Any] | None:
        """The daemon's status, through the in-process control client when importable
        (polls cheaply), else through ``pounce ctl status --json``."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.output()}")
        try:
            from pounce.control.client import ControlClient
        except ImportError:
            result = subprocess.run(
                [sys.executable, "-m", "pounce", "ctl", "--socket", self.ctl_socket,
                 "status", "--json"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            return json.loads(result.stdout) if result.returncode == 0 else None
        try:
            if self._client is None:
                self._client = ControlClient(self.ctl_socket, timeout=10)
            return dict(self._client.call("status"))
        except Exception:
            if self._client is not None:
                self._client.close()
            self._client = None
            return None

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pounce", "ctl", "--socket", self.ctl_socket, *args],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def wait_generation(
        self, generation: int, workers: int, timeout: float = 60.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status is not None and status.get("generation") == generation:
                ready = [
                    w for w in status.get("workers", [])
                    if w.get("generation") == generation and w.get("state") == "ready"
                ]  # fmt: skip
                if len(ready) >= workers:
                    return status
            time.sleep(0.002)
        raise RuntimeError(f"generation {generation} not ready in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        return (self.dir / "daemon.log").read_text(errors="replace")[-5000:]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- the benchmark -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    extra = ["--shutdown-timeout", str(args.shutdown_timeout)]
    daemon = Daemon(args.workers, extra)
    load = Load(daemon.port, args.threads)
    reloads: list[dict[str, Any]] = []
    try:
        status = daemon.wait_generation(1, args.workers)
        load.start()
        deadline = time.monotonic() + 30
        while load.ok() < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(args.warmup)
        ok0, t0 = load.ok(), time.monotonic()
        generation = int(status["generation"])
        for _ in range(args.reloads):
            generation += 1
            started = time.monotonic()
            if args.via == "sighup":
                daemon.proc.send_signal(signal.SIGHUP)
            else:
                result = daemon.ctl("reload")
                if result.returncode != 0:
                    raise RuntimeError(f"ctl reload failed: {result.stdout}{result.stderr}")
            status = daemon.wait_generation(generation, args.workers)
            ready_at = time.monotonic()
            new_pids = {
                w["pid"] for w in status["workers"]
                if w.get("generation") == generation and isinstance(w.get("pid"), int)
            }  # fmt: skip
            first = _first_response(load, new_pids, timeout=30)
            reloads.append(
                {
                    "generation": generation,
                    "to_status_ready_s": round(ready_at - started, 4),
                    "to_first_response_s": None if first is None else round(first - started, 4),
                }
            )
            # Let the load run on the new generation before the next reload.
            target = load.ok() + args.between
            deadline = time.monotonic() + 30
            while load.ok() < target and time.monotonic() < deadline:
                time.sleep(0.005)
        elapsed = time.monotonic() - t0
        served = load.ok() - ok0
    finally:
        load.stop()
        daemon.close()
    stats = load.stats
    durations = [r["to_status_ready_s"] for r in reloads]
    firsts = [r["to_first_response_s"] for r in reloads if r["to_first_response_s"] is not None]
    return {
        "workers": args.workers,
        "threads": args.threads,
        "reloads": args.reloads,
        "via": args.via,
        "seconds": round(elapsed, 3),
        "requests": served,
        "requests_per_second": round(served / elapsed, 1) if elapsed else 0.0,
        "requests_total": stats.ok,
        "failures": stats.failures,
        "errors": stats.errors,
        "error_samples": stats.samples,
        "reload_to_status_ready_s": _summary(durations),
        "reload_to_first_response_s": _summary(firsts),
        "per_reload": reloads,
    }


def _first_response(load: Load, pids: set[int], timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with load._lock:
            seen = [load.stats.first_seen[p] for p in pids if p in load.stats.first_seen]
        if seen:
            return min(seen)
        time.sleep(0.002)
    return None


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "median": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "min": ordered[0],
        "median": round(statistics.median(ordered), 4),
        "p95": p95,
        "max": ordered[-1],
    }


def markdown(report: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f} ms"

    ready = report["reload_to_status_ready_s"]
    first = report["reload_to_first_response_s"]
    lines = [
        f"## Reload under load ({report['reloads']} reloads via {report['via']}, "
        f"{report['workers']} workers, {report['threads']} keep-alive clients)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| requests/s | {report['requests_per_second']:.0f} |",
        f"| requests during the reloads | {report['requests']} |",
        f"| failed requests (non-200) | {report['failures']} |",
        f"| connection errors | {report['errors']} |",
        f"| duration | {report['seconds']:.1f} s |",
        "",
        "| reload to new generation serving | min | median | p95 | max |",
        "|---|---|---|---|---|",
        f"| ctl status shows it ready | {ms(ready['min'])} | {ms(ready['median'])} | "
        f"{ms(ready['p95'])} | {ms(ready['max'])} |",
        f"| first response from it | {ms(first['min'])} | {ms(first['median'])} | "
        f"{ms(first['p95'])} | {ms(first['max'])} |",
        "",
        "| # | generation | status ready | first response |",
        "|---|---|---|---|",
    ]
    for i, r in enumerate(report["per_reload"], 1):
        lines.append(
            f"| {i} | {r['generation']} | {ms(r['to_status_ready_s'])} | "
            f"{ms(r['to_first_response_s'])} |"
        )
    if report["error_samples"]:
        lines += ["", "Errors (first 20):", ""]
        lines += [f"- `{s}`" for s in report["error_samples"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--reloads", type=int, default=20, help="reloads in a row (default 20)")
    parser.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    parser.add_argument(
        "--via", choices=("sighup", "ctl"), default="sighup", help="how to reload (default sighup)"
    )
    parser.add_argument(
        "--between",
        type=int,
        default=500,
        help="requests to serve between two reloads (default 500)",
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of load before the first reload"
    )
    parser.add_argument("--shutdown-timeout", type=float, default=30.0)
    parser.add_argument("--json", metavar="PATH", help="also write the JSON report here")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 on any failed request or connection error"
    )
    args = parser.parse_args(argv)
    report = run(args)
    print(markdown(report))
    print()
    print("```json")
    print(json.dumps(report, indent=2))
    print("```")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.check and (report["failures"] or report["errors"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
