"""pounce bench: the pure parts (wrk parsing, medians and ratios, markdown), the app,
and one end-to-end smoke run of Pounce alone.  No timing thresholds anywhere."""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers.tools import require_tool
from pounce.cli.bench import NOT_HERE, bench_dir

# The benchmark tool is not in the wheel: it lives in the checkout's benchmarks/.
BENCHMARKS = bench_dir()
assert BENCHMARKS is not None, "no benchmarks/pounce_bench next to src/pounce"
if str(BENCHMARKS) not in sys.path:
    sys.path.append(str(BENCHMARKS))

from pounce.errors import UsageError
from pounce_bench import add_bench_parser
from pounce_bench.app import CHUNK, CHUNKS, DOWNLOAD, HELLO, app
from pounce_bench.machine import cpu_model
from pounce_bench.procs import parse_stat_ppid, parse_status_kib, process_tree, tree_memory
from pounce_bench.report import (
    build_report,
    fmt_ms,
    fmt_number,
    render_markdown,
    spread,
    table,
)
from pounce_bench.results import RunRecord, median, ratio, ratios, summarise, summarise_cell
from pounce_bench.runner import interleaved
from pounce_bench.servers import ServerSpec, parse_peer_list
from pounce_bench.session import settings_from
from pounce_bench.workloads import WORKLOADS, select_workloads
from pounce_bench.wrk import (
    WrkOutputError,
    parse_bytes,
    parse_metric,
    parse_time_ms,
    parse_wrk_output,
    post_script,
    wrk_command,
)

ROOT = Path(__file__).resolve().parent.parent
BENCH = BENCHMARKS / "pounce_bench"

WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:8000/hello
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.25ms  812.00us  41.20ms   91.50%
    Req/Sec    19.58k     1.20k   21.00k    80.00%
  Latency Distribution
     50%    3.10ms
     75%    3.40ms
     90%    3.90ms
     99%    7.81ms
  97900 requests in 5.00s, 13.72MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 12
Requests/sec:  19580.12
Transfer/sec:      2.74MB
"""

WRK_SLOW = """\
Running 1s test @ http://127.0.0.1:8000/download
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02s   300.00ms   2.50m    70.00%
    Req/Sec     1.2M      0.00      1.2M   100.00%
  Latency Distribution
     50%  950.00us
     75%    1.10s
     90%    1.50s
     99%    1.00h
  120 requests in 1.00s, 1.20GB read
Requests/sec:    120.00
Transfer/sec:      1.20GB
"""


# -- wrk output --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [("812.00us", 0.812), ("3.25ms", 3.25), ("1.50s", 1500.0), ("2.50m", 150_000.0), ("1h", 3.6e6)],
)
def test_time_units(text: str, ms: float) -> None:
    assert parse_time_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize(
    ("text", "value"), [("987", 987.0), ("19.58k", 19_580.0), ("1.2M", 1_200_000.0), ("2G", 2e9)]
)
def test_metric_suffixes(text: str, value: float) -> None:
    assert parse_metric(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "value"),
    [("512B", 512.0), ("1.00KB", 1024.0), ("2.74MB", 2.74 * 1024**2), ("1.20GB", 1.2 * 1024**3)],
)
def test_byte_units(text: str, value: float) -> None:
    assert parse_bytes(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["", "fast", "12", "3.2xs", "1.0 ms"])
def test_bad_times_are_refused(bad: str) -> None:
    with pytest.raises(WrkOutputError):
        parse_time_ms(bad)


def test_parse_wrk_output() -> None:
    r = parse_wrk_output(WRK_OUTPUT)
    assert r.requests == 97900
    assert r.duration_s == pytest.approx(5.0)
    assert r.requests_per_s == pytest.approx(19580.12)
    assert r.transfer_per_s == pytest.approx(2.74 * 1024**2)
    assert r.latency_avg_ms == pytest.approx(3.25)
    assert r.latency_max_ms == pytest.approx(41.2)
    assert r.percentiles_ms == pytest.approx({50: 3.10, 75: 3.40, 90: 3.90, 99: 7.81})
    assert (r.p50_ms, r.p99_ms) == (pytest.approx(3.10), pytest.approx(7.81))
    assert (r.connect_errors, r.read_errors, r.write_errors, r.timeouts) == (0, 3, 1, 2)
    assert r.non_2xx == 12
    assert r.errors == 18


def test_parse_wrk_output_mixed_units_and_no_errors() -> None:
    r = parse_wrk_output(WRK_SLOW)
    assert r.latency_avg_ms == pytest.approx(1020.0)
    assert r.latency_max_ms == pytest.approx(150_000.0)
    assert r.p50_ms == pytest.approx(0.95)
    assert r.p99_ms == pytest.approx(3.6e6)
    assert r.transfer_per_s == pytest.approx(1.2 * 1024**3)
    assert r.errors == 0


def test_wrk_output_without_latency_distribution_is_an_error() -> None:
    text = "\n".join(line for line in WRK_OUTPUT.splitlines() if "%" not in line[:8])
    with pytest.raises(WrkOutputError, match="--latency"):
        parse_wrk_output(text)


def test_wrk_failure_output_is_an_error_that_quotes_it() -> None:
    with pytest.raises(WrkOutputError) as info:
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")
    assert "Connection refused" in str(info.value)


def test_wrk_command_and_post_script() -> None:
    command = wrk_command("wrk", "http://h/echo", duration_s=3, connections=64, script="p.lua")
    assert command == [
        "wrk", "-t1", "-c64", "-d3s", "--latency", "--timeout=10s", "-s", "p.lua", "http://h/echo"
    ]  # fmt: skip
    script = post_script(1024)
    assert 'wrk.method = "POST"' in script
    assert 'string.rep("x", 1024)' in script


# -- medians and ratios ------------------------------------------------------------------------


def _run(
    server: str, rps: float | None, *, rep: int = 1, workload: str = "hello", **kw: Any
) -> RunRecord:
    ok = kw.pop("ok", rps is not None)
    return RunRecord(
        rep=rep,
        workload=workload,
        server=server,
        ok=ok,
        requests_per_s=rps,
        latency_p50_ms=kw.pop("p50", 1.0),
        latency_p99_ms=kw.pop("p99", 2.0),
        startup_ms=kw.pop("startup", 200.0),
        rss_idle_kib=kw.pop("idle", 50_000),
        worker_rss_idle_kib=kw.pop("worker_idle", 30_000),
        rss_peak_kib=kw.pop("peak", 60_000),
        rss_after_kib=kw.pop("after", 55_000),
        **kw,
    )


def test_median_skips_missing_values() -> None:
    assert median([3.0, None, 1.0, 2.0]) == 2.0
    assert median([4, 1, 3, 2]) == 2.5
    assert median([None, None]) is None
    assert median([]) is None


def test_ratio() -> None:
    assert ratio(30.0, 10.0) == 3.0
    assert ratio(5.0, 10.0) == 0.5
    assert ratio(None, 10.0) is None
    assert ratio(5.0, None) is None
    assert ratio(5.0, 0.0) is None


def test_summarise_cell_medians_and_peak() -> None:
    runs = [
        _run("p", 100.0, p99=9.0, peak=70_000),
        _run("p", 300.0, p99=3.0, peak=65_000),
        _run("p", 200.0, p99=5.0, peak=90_000),
    ]
    cell = summarise_cell(runs)
    assert cell["requests_per_s"] == 200.0
    assert cell["latency_p99_ms"] == 5.0
    assert cell["rss_peak_kib"] == 90_000
    assert (cell["runs"], cell["failed"]) == (3, 0)


def test_failed_runs_stay_out_of_the_medians() -> None:
    runs = [_run("p", 100.0), _run("p", 120.0), _run("p", 5.0, ok=False, error="boom")]
    cell = summarise_cell(runs)
    assert cell["requests_per_s"] == 110.0
    assert cell["failed"] == 1
    assert cell["errors_text"] == ["boom"]


def test_ratios_are_of_medians() -> None:
    runs = [_run("pounce", v, rep=i) for i, v in enumerate([200.0, 240.0, 220.0])]
    runs += [_run("peer", v, rep=i, p99=4.0) for i, v in enumerate([100.0, 110.0, 90.0])]
    summary = summarise(runs, ["hello"], ["pounce", "peer"])
    out = ratios(summary, ["pounce"], ["peer"])
    assert out["hello"]["pounce"]["peer"]["requests_per_s"] == pytest.approx(2.2)
    assert out["hello"]["pounce"]["peer"]["latency_p99_ms"] == pytest.approx(0.5)


def test_interleaving_rotates_servers_each_repetition() -> None:
    specs = [ServerSpec(n, "peer", "py", ()) for n in "abc"]
    plan = interleaved(3, tuple(WORKLOADS[:2]), specs)
    names = [(rep, w.name, s.name) for rep, w, s in plan]
    assert names[:6] == [
        (1, "hello", "a"), (1, "hello", "b"), (1, "hello", "c"),
        (1, "json", "a"), (1, "json", "b"), (1, "json", "c"),
    ]  # fmt: skip
    assert [s for rep, w, s in names if rep == 2 and w == "hello"] == ["b", "c", "a"]
    assert [s for rep, w, s in names if rep == 3 and w == "hello"] == ["c", "a", "b"]
    assert len(plan) == 3 * 2 * 3


# -- markdown ----------------------------------------------------------------------------------


def _report(runs: list[RunRecord], workloads: list[str]) -> dict[str, Any]:
    servers = {
        "pounce": {"kind": "pounce", "version": "pounce 0.1.0"},
        "uvicorn-h11": {"kind": "peer", "version": "uvicorn 0.30 (h11 0.16)"},
    }
    machine = {
        "cpu_model": "Test CPU",
        "cpu_count": 2,
        "os": "Debian",
        "kernel": "6.1",
        "python": "3.11.7",
        "wrk": "4.1.0",
        "load_average_start": [1.0, 1.0, 1.0],
        "load_average_end": [2.0, 1.5, 1.0],
    }
    settings = {
        "reps": 3, "duration_s": 5, "warmup_s": 1, "connections": 64,
        "server_cpu": 0, "client_cpu": 1, "idle_connections": 1000,
    }  # fmt: skip
    return build_report(
        machine=machine,
        settings=settings,
        servers=servers,
        skipped={"granian": "not installed"},
        runs=runs,
        workloads=workloads,
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:10:00+00:00",
    )


def test_table_rendering() -> None:
    assert table(["a", "b"], [["x", "1"]]) == "| a | b |\n| --- | ---: |\n| x | 1 |"


def test_number_formatting() -> None:
    assert fmt_number(12345.6) == "12,346"
    assert fmt_number(None) == "—"
    assert (fmt_ms(0.8123), fmt_ms(12.34), fmt_ms(1234.5)) == ("0.81", "12.3", "1,234")


def test_spread_is_half_the_range_over_the_median() -> None:
    assert spread([90.0, 100.0, 110.0]) == pytest.approx(0.1)
    assert spread([100.0, 300.0]) == pytest.approx(0.5)
    assert spread([100.0]) is None
    assert spread([]) is None


def test_markdown_report() -> None:
    runs = [
        _run("pounce", 20_000.0, p50=3.0, p99=8.0),
        _run("pounce", 19_000.0, rep=2, p50=3.0, p99=8.0),
        _run("pounce", 21_000.0, rep=3, p50=3.0, p99=8.0),
        _run("uvicorn-h11", 10_000.0, p50=7.0, p99=10.0),
        _run("pounce", 2_000.0, workload="idle-1k", idle_connections_open=1000),
        _run("uvicorn-h11", None, workload="idle-1k", error="exited before answering"),
    ]
    text = render_markdown(_report(runs, ["hello", "idle-1k"]))
    assert "Test CPU, 2 cores" in text
    assert "3 repetitions of 5 s" in text
    assert "| workload | pounce | uvicorn-h11 |" in text
    assert "| hello | 20,000 ±5% | 10,000 |" in text
    assert "| idle-1k | 2,000 | failed |" in text
    assert "| hello | 2.00× |" in text  # noqa: RUF001 (pounce over uvicorn-h11)
    assert "| hello | 3.00 / 8.00 | 7.00 / 10.0 |" in text
    assert "| idle-1k | 1,000 | — |" in text
    assert "Not run: granian: not installed." in text
    assert "idle-1k / uvicorn-h11: exited before answering" in text
    assert "| pounce | — | 200 | 48.8 | 29.3 | 53.7 | 58.6 (hello) |" in text


def test_report_is_json_serialisable() -> None:
    report = _report([_run("pounce", 1.0), _run("uvicorn-h11", 2.0)], ["hello"])
    data = json.loads(json.dumps(report))
    assert data["ratios"]["hello"]["pounce"]["uvicorn-h11"]["requests_per_s"] == 0.5
    assert set(data) >= {"machine", "settings", "servers", "summary", "ratios", "runs"}


# -- options, workloads, /proc -----------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_bench_parser(sub)
    return parser.parse_args(["bench", *argv])


def test_quick_changes_only_what_was_not_given() -> None:
    quick = settings_from(_parse("--quick", "--no-pin"), "wrk")
    assert (quick.duration_s, quick.reps, quick.warmup_s) == (1, 1, 0)
    full = settings_from(_parse("--no-pin"), "wrk")
    assert (full.duration_s, full.reps, full.warmup_s) == (5, 3, 1)
    mixed = settings_from(_parse("--quick", "--reps", "2", "--no-pin"), "wrk")
    assert (mixed.duration_s, mixed.reps) == (1, 2)
    assert [w.name for w in full.workloads] == [w.name for w in WORKLOADS]


def test_compare_options() -> None:
    assert _parse("--compare").compare == "all"
    assert _parse().compare is None
    assert parse_peer_list(None) == []
    assert parse_peer_list("all") == ["uvicorn-h11", "uvicorn-httptools", "hypercorn", "granian"]
    assert parse_peer_list("granian, hypercorn") == ["granian", "hypercorn"]
    with pytest.raises(UsageError):
        parse_peer_list("gunicorn")


def test_select_workloads() -> None:
    assert [w.name for w in select_workloads(["json", "hello"])] == ["json", "hello"]
    with pytest.raises(UsageError, match="nope"):
        select_workloads(["nope"])


def test_proc_parsing() -> None:
    assert parse_stat_ppid("123 (my (odd) name) S 45 123 123 0 -1") == 45
    status = "Name:\tpython\nVmHWM:\t  61234 kB\nVmRSS:\t  51234 kB\n"
    assert parse_status_kib(status, "VmRSS") == 51234
    assert parse_status_kib(status, "VmSwap") == 0
    assert cpu_model("processor\t: 0\nmodel name\t: Some CPU @ 2GHz\n") == "Some CPU @ 2GHz"


def test_process_tree_memory_of_a_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in process_tree(os.getpid())
        memory = tree_memory(os.getpid())
        assert memory.processes >= 2
        assert memory.hwm_kib >= memory.rss_kib > 0
    finally:
        child.kill()
        child.wait()


def test_one_workers_rss_is_a_leaf_of_the_tree() -> None:
    # A "supervisor" holding 64 MiB and a small "worker" child: the worker's figure is the
    # child's alone, not the tree's sum nor the bigger parent's.
    code = (
        "import subprocess, sys, time; ballast = bytearray(64 * 1024 * 1024); "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
        "print(p.pid, flush=True); time.sleep(30)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        memory = tree_memory(parent.pid)
        assert memory.processes == 2
        # (the child may still be starting: its RSS grows, but stays far below the parent's)
        assert 0 < memory.worker_rss_kib < 32 * 1024
        assert memory.rss_kib > memory.worker_rss_kib + 60 * 1024
    finally:
        with contextlib.suppress(ProcessLookupError, UnboundLocalError):
            os.kill(child_pid, signal.SIGKILL)
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


# -- the app -----------------------------------------------------------------------------------


def _call(
    method: str, path: str, body_parts: list[bytes] | None = None
) -> tuple[int, bytes, list[dict[str, Any]]]:
    parts = body_parts or [b""]
    incoming = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], body, sent


def test_app_routes() -> None:
    assert _call("GET", "/hello")[:2] == (200, HELLO)
    status, body, _ = _call("GET", "/json")
    assert status == 200 and json.loads(body)["message"] == "Hello, world!"
    assert _call("POST", "/echo", [b"a" * 10, b"b" * 20])[:2] == (200, b"a" * 10 + b"b" * 20)
    status, body, sent = _call("GET", "/stream")
    assert body == CHUNK * CHUNKS and len(sent) == 1 + CHUNKS
    assert not any(k == b"content-length" for k, _ in sent[0]["headers"])
    assert _call("GET", "/download")[1] == DOWNLOAD
    assert _call("GET", "/nope")[0] == 404


# -- the package's shape -----------------------------------------------------------------------


def test_bench_imports_only_the_standard_library_and_errors() -> None:
    allowed = set(sys.stdlib_module_names) | {"pounce.errors"}
    problems = []
    for path in BENCH.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.startswith("pounce_bench") or name.split(".")[0] in allowed:
                    continue
                if name not in allowed:
                    problems.append(f"{path.name}: {name}")
    assert problems == []


def test_the_tool_is_found_in_this_checkout_only() -> None:
    assert BENCHMARKS == ROOT / "benchmarks"
    assert not (ROOT / "src" / "pounce" / "bench").exists()  # not in the wheel
    assert bench_dir(ROOT / "src") is None


def test_pounce_bench_outside_a_checkout_says_it_is_a_development_command(
    tmp_path: Path,
) -> None:
    # An installed pounce (a copy of the package, no benchmarks/ three levels up).
    site = tmp_path / "prefix" / "site"
    shutil.copytree(ROOT / "src" / "pounce", site / "pounce")
    code = (
        f"import sys; sys.path.insert(0, {str(site)!r}); import pounce; "
        f"assert pounce.__file__.startswith({str(site)!r}), pounce.__file__; "
        "from pounce.cli.main import main; main(['bench', '--quick'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"pounce: error: {NOT_HERE}\n"


# -- end to end --------------------------------------------------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.slow
def test_quick_bench_of_pounce_alone(tmp_path: Path) -> None:
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    require_tool("wrk", "wrk")
    # `pounce bench` from this checkout (the tool lives in benchmarks/, not in the wheel)
    command = [sys.executable, "-m", "pounce", "bench", "--quick"]
    command += ["--pounce-variants", "pounce"]
    command += ["--json", str(out_json), "--markdown", str(out_md)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out_json.read_text())
    assert set(report) >= {"schema", "machine", "settings", "servers", "summary", "ratios", "runs"}
    assert set(report["machine"]) >= {"python", "cpu_model", "cpu_count", "kernel", "wrk"}
    assert list(report["servers"]) == ["pounce"]
    assert report["servers"]["pounce"]["version"].startswith("pounce ")
    assert report["settings"]["reps"] == 1 and report["settings"]["duration_s"] == 1
    names = [w.name for w in WORKLOADS]
    assert report["workloads"] == names
    assert len(report["runs"]) == len(names)
    for name in names:
        cell = report["summary"][name]["pounce"]
        assert cell["requests_per_s"] > 0, name
        assert cell["latency_p99_ms"] >= cell["latency_p50_ms"] > 0, name
        assert cell["rss_idle_kib"] > 0 and cell["startup_ms"] > 0, name
    assert report["summary"]["idle-1k"]["pounce"]["idle_connections_open"] is not None
    markdown = out_md.read_text()
    assert "| workload | pounce |" in markdown
    assert done.stdout == markdown
