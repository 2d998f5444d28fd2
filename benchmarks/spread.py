"""How evenly the workers of one daemon share the load: requests per worker under wrk.

Starts ``pounce serve`` with N workers on a socket this script binds (``--fd``), runs
wrk against it (keep-alive, C connections, D seconds), reads each worker's request
count from ``pounce ctl status --json`` and reports, per round, the busiest worker's
share and the ratio of the busiest to the idlest.  One worker serving everything is
the failure this measures (as seen once under wrk with two workers: 1,016,608 requests
against 167,677).

    python benchmarks/spread.py                          # 2 workers, 5 rounds, both loops
    python benchmarks/spread.py --workers 4 --rounds 10 --loops asyncio
    python benchmarks/spread.py --python /other/checkout/.venv/bin/python   # compare

Each round is a fresh wrk run on fresh connections against the same daemon; the
counts are the difference between two status readings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def ctl_status(python: str, sock: Path) -> dict[str, Any]:
    out = subprocess.run(
        [python, "-m", "pounce", "ctl", "--socket", str(sock), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return dict(json.loads(out))


def per_worker(status: dict[str, Any]) -> dict[int, int]:
    return {int(w["id"]): int(w["requests"]) for w in status["workers"]}


def wait_ready(python: str, sock: Path, workers: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"pounce exited with {proc.returncode}")
        if sock.exists():
            try:
                status = ctl_status(python, sock)
            except subprocess.CalledProcessError:
                status = {"workers": []}
            ready = [w for w in status["workers"] if w["state"] == "ready"]
            if len(ready) == workers:
                return
        time.sleep(0.1)
    raise SystemExit("workers not ready within 60 s")


def run_loop(args: argparse.Namespace, loop: str) -> list[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="spread-"))
    (tmp / "spread_app.py").write_text(APP)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    ctl = tmp / "ctl.sock"
    command = [args.python, "-m", "pounce", "serve", "spread_app:app", "--fd", str(sock.fileno())]
    command += ["--workers", str(args.workers), "--control-socket", str(ctl)]
    command += ["--no-access-log", "--loop", loop]
    proc = subprocess.Popen(
        command,
        cwd=tmp,
        pass_fds=(sock.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sock.close()
    rounds = []
    try:
        wait_ready(args.python, ctl, args.workers, proc)
        for _ in range(args.rounds):
            before = per_worker(ctl_status(args.python, ctl))
            wrk = subprocess.Popen(
                [
                    args.wrk,
                    "-t2",
                    f"-c{args.connections}",
                    f"-d{args.duration}s",
                    f"http://127.0.0.1:{port}/",
                ],
                stdout=subprocess.DEVNULL,
            )
            time.sleep(args.duration / 2)
            mid = ctl_status(args.python, ctl)
            conns = sorted(int(w["connections"]) for w in mid["workers"])
            if wrk.wait(args.duration + 30) != 0:
                raise SystemExit("wrk failed")
            after = per_worker(ctl_status(args.python, ctl))
            counts = sorted(after[k] - before.get(k, 0) for k in after)
            total = sum(counts) or 1
            rounds.append(
                {
                    "counts": counts,
                    "connections": conns,
                    "busiest_share": round(counts[-1] / total, 3),
                    "max_over_min": round(counts[-1] / max(counts[0], 1), 2),
                }
            )
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--python", default=sys.executable, help="the interpreter of the pounce to measure"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.wrk = shutil.which("wrk") or sys.exit("wrk is not installed (apt-get install wrk)")
    results = {}
    print(
        "| loop | workers | round | connections per worker | requests per worker "
        "| busiest share of requests | max/min |"
    )
    print("|---|---|---|---|---|---|---|")
    for loop in args.loops.split(","):
        rounds = run_loop(args, loop)
        results[loop] = rounds
        for i, r in enumerate(rounds, 1):
            print(
                f"| {loop} | {args.workers} | {i} | {r['connections']} | {r['counts']} "
                f"| {r['busiest_share']:.0%} | {r['max_over_min']} |"
            )
        shares = [r["busiest_share"] for r in rounds]
        ratio = statistics.median(r["max_over_min"] for r in rounds)
        print(
            f"| {loop} | {args.workers} | median | | | {statistics.median(shares):.0%} | {ratio} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
