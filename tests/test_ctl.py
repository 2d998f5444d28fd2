"""``pounce ctl``: the status tables (pure, rendered to strings), the parser, and every
command against a real control server run by a fake supervisor."""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType
from rich.text import Text

from helpers.control import STATUS, WAIT, Daemon, FakeSupervisor, make_event
from pounce.control.handler import DrainResult, StatusResult
from pounce.ctl import add_ctl_parser, run_ctl
from pounce.ctl.command import EPILOG, call_timeout, reload_summary, socket_path
from pounce.ctl.format import format_count, format_duration
from pounce.ctl.render import crash_budget_text, render_status, summary_table, workers_table
from pounce.errors import ControlCommandError

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


def render(renderable: RenderableType, width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, legacy_windows=False)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def cells(text: str, first: str) -> list[str]:
    """The cells of the table row (or tab-separated line) whose first cell is ``first``."""
    for line in text.splitlines():
        if "\t" in line:
            parts = line.split("\t")
        else:
            parts = [part.strip() for part in line.replace("┃", "│").strip(" │").split("│")]
        if parts and parts[0] == first:
            return parts
    raise AssertionError(f"no row {first!r} in:\n{text}")


def two_generations() -> dict[str, Any]:
    status: dict[str, Any] = copy.deepcopy(dict(STATUS))
    status["workers"].append(
        {
            "id": 1,
            "pid": None,
            "thread": "pounce-worker-1",
            "generation": 1,
            "state": "draining",
            "uptime": 7300.0,
            "requests": 1234567,
            "connections": 3,
            "restarts": 2,
            "healthy": False,
        }
    )
    status["listeners"].append("unix:/run/app.sock")
    status["state"] = "reloading"
    return status


# -- rendering (pure) ---------------------------------------------------------------------


def test_the_summary_shows_the_daemon() -> None:
    text = render(summary_table(two_generations()))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert lines == [
        "daemon pid 4242, pounce 0.1.0",
        "state reloading",
        "uptime 12s",
        "generation 2",
        "workers 2 (process)",
        "crash budget 0 of 5 restarts used in a 1m 00s window, 5 left",
        "listeners http://127.0.0.1:8000",
        "unix:/run/app.sock",
        "config /etc/pounce.toml",
    ]


def test_the_workers_table_has_a_row_per_worker() -> None:
    text = render(render_status(two_generations()))
    assert "workers (2)" in text
    assert cells(text, "ID") == [
        "ID",
        "PID/THREAD",
        "GEN",
        "STATE",
        "UPTIME",
        "REQUESTS",
        "CONNS",
        "RESTARTS",
    ]
    assert cells(text, "0") == ["0", "4243", "2", "ready", "3.0s", "10", "1", "0"]
    assert cells(text, "1") == [
        "1",
        "pounce-worker-1",
        "1",
        "draining (unhealthy)",
        "2h 01m",
        "1,234,567",
        "3",
        "2",
    ]


def test_older_generations_are_dimmed_and_unhealthy_workers_red() -> None:
    status = two_generations()
    table = workers_table(status["workers"], status)
    assert [row.style for row in table.rows] == [None, "dim"]
    state = list(table.columns[3].cells)
    assert isinstance(state[0], Text)
    assert state[0].style == "green"
    assert isinstance(state[1], Text)
    assert state[1].style == "bold red"


def test_an_unhealthy_worker_says_so_once() -> None:
    worker = {"id": 7, "state": "unhealthy", "healthy": False}
    assert cells(render(workers_table([worker])), "7")[3] == "unhealthy"
    worker = {"id": 7, "state": "booting", "healthy": True}
    assert cells(render(workers_table([worker])), "7")[3] == "booting"


def test_an_exhausted_crash_budget_is_red() -> None:
    budget = {"max_restarts": 5, "window": 60.0, "used": 5, "left": 0}
    text = crash_budget_text(budget)
    assert text.plain == "5 of 5 restarts used in a 1m 00s window, 0 left"
    assert text.style == "bold red"
    assert crash_budget_text(STATUS["crash_budget"]).style == ""


def test_a_status_with_missing_or_odd_fields_still_renders() -> None:
    text = render(render_status({}))
    assert " ".join(text.split()).startswith("daemon pid -, pounce - state - uptime -")
    odd: dict[str, Any] = {"workers": [42, {"id": 3, "pid": True, "uptime": "soon"}]}
    odd["crash_budget"] = "lots"
    text = render(render_status(odd))
    assert cells(text, "3") == ["3", "-", "-", "-", "-", "-", "-", "-"]
    assert "workers (2)" in text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"),
        (0.35, "350ms"),
        (4.25, "4.2s"),
        (42, "42s"),
        (63, "1m 03s"),
        (3720, "1h 02m"),
        (2 * 86400 + 4 * 3600 + 59, "2d 04h"),
        (-3, "0ms"),
        (None, "-"),
        ("12", "-"),
        (True, "-"),
        (float("nan"), "-"),
    ],
)
def test_format_duration(seconds: object, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_count() -> None:
    assert format_count(1234567) == "1,234,567"
    assert format_count(None) == "-"
    assert format_count(False) == "-"


def test_the_reload_summary() -> None:
    result = {"generation": 4, "duration": 2.34, "workers": 4, "needs_restart": []}
    assert reload_summary(result) == "reloaded: generation 4 ready in 2.3s (4 workers)"
    result["needs_restart"] = ["server.worker_mode", "listen"]
    assert reload_summary(result).splitlines()[1] == (
        "changed settings that take effect only after a restart: server.worker_mode, listen"
    )


# -- the parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pounce")
    sub = parser.add_subparsers(dest="command")
    add_ctl_parser(sub)
    return parser


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["ctl", *argv])


@pytest.mark.parametrize(
    ("argv", "timeout"),
    [
        (["status"], 10.0),
        (["reload"], None),
        (["reload", "--no-wait"], 10.0),
        (["drain"], 10.0),
        (["drain", "--wait", "--timeout", "30"], None),
        (["--timeout", "3", "reload"], 3.0),
        (["--timeout", "0.5", "drain", "--wait", "--timeout", "30"], 0.5),
    ],
)
def test_how_long_each_command_waits(argv: list[str], timeout: float | None) -> None:
    assert call_timeout(parse(*argv)) == timeout


def test_the_drain_timeout_is_not_the_reply_timeout() -> None:
    ns = parse("--timeout", "2", "drain", "--wait", "--timeout", "30")
    assert (ns.ctl_timeout, ns.drain_timeout, ns.wait) == (2.0, 30.0, True)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["-c", "pounce.toml", "--socket", "x", "status"],
        ["scale"],
        ["scale", "0"],
        ["scale", "two"],
        ["--timeout", "-1", "status"],
        ["--timeout", "inf", "status"],
        ["drain", "--timeout", "soon"],
    ],
)
def test_bad_command_lines_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse(*argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_the_socket_comes_from_the_flag_the_env_the_config_or_the_default(
    tmp_path: Path,
) -> None:
    env = {"RUNTIME_DIRECTORY": "/run/here"}
    assert socket_path(parse("--socket", "/x.sock", "status"), env) == "/x.sock"
    assert socket_path(parse("status"), env) == "/run/here/pounce.sock"
    named = tmp_path / "app.toml"
    named.write_text('[control]\nsocket = "/srv/ctl.sock"\n')
    assert socket_path(parse("-c", str(named), "status"), env) == "/srv/ctl.sock"
    assert socket_path(parse("status", "-c", str(named)), env) == "/srv/ctl.sock"
    assert socket_path(parse("status"), {**env, "POUNCE_CONFIG": str(named)}) == "/srv/ctl.sock"
    with_env = {**env, "POUNCE_CONTROL_SOCKET": "/env.sock"}
    assert socket_path(parse("-c", str(named), "status"), with_env) == "/env.sock"
    named.write_text('app = "x:app"\n')
    assert socket_path(parse("-c", str(named), "status"), env) == "/run/here/pounce.sock"


@pytest.mark.parametrize(
    "text",
    [
        # valid TOML, invalid settings
        'app = 3\n[server]\nworkers = "lots"\n[control]\nsocket = "/srv/ctl.sock"\n',
        # not TOML at all (half-edited): the [control] table is scanned for
        "[server\nworkers = \n\n[control]  # ours\nsocket = '/srv/ctl.sock'\n[http]\nx = 1\n",
        # no such table is ignored, an unknown key is not looked at
        '[control]\nsocket = "/srv/ctl.sock"\nbogus = [1, 2\n[workers]\nsocket = "/no"\n',
    ],
    ids=["invalid-values", "not-toml", "unknown-key"],
)
def test_ctl_c_reads_only_the_control_socket(text: str, tmp_path: Path) -> None:
    cfg = tmp_path / "pounce.toml"
    cfg.write_text(text)
    env = {"RUNTIME_DIRECTORY": "/run/here", "POUNCE_SERVER_WORKERS": "zero"}
    assert socket_path(parse("-c", str(cfg), "stop"), env) == "/srv/ctl.sock"


def test_a_half_edited_config_and_a_stray_variable_do_not_stop_ctl(
    daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "pounce.toml"
    cfg.write_text(f'[server]\nworkers = "lots\n\n[control]\nsocket = "{daemon.path}"\n')
    monkeypatch.setenv("POUNCE_SERVER_WORKERS", "zero")
    monkeypatch.setenv("POUNCE_BOGUS_THING", "1")
    monkeypatch.delenv("POUNCE_CONTROL_SOCKET", raising=False)
    out, err = io.StringIO(), io.StringIO()
    code = run_ctl(parse("resume", "-c", str(cfg)), out=out, err=err)
    assert (code, out.getvalue(), err.getvalue()) == (0, "resumed: running\n", "")


@pytest.mark.parametrize(
    ("after", "before"),
    [
        (["status", "-c", "pounce.toml", "--json"], ["-c", "pounce.toml", "status", "--json"]),
        (
            ["reload", "--socket", "/x.sock", "--timeout", "3"],
            ["--socket", "/x.sock", "--timeout", "3", "reload"],
        ),
        (["stop", "--now", "--config", "a.toml"], ["--config", "a.toml", "stop", "--now"]),
        (
            ["drain", "--socket", "/x.sock", "--wait", "--timeout", "30"],
            ["--socket", "/x.sock", "drain", "--wait", "--timeout", "30"],
        ),
        (["workers", "--timeout", "2", "--json"], ["--timeout", "2", "workers", "--json"]),
    ],
    ids=["status", "reload", "stop", "drain", "workers"],
)
def test_options_may_follow_the_command(after: list[str], before: list[str]) -> None:
    assert vars(parse(*after)) == vars(parse(*before))


def test_socket_and_config_together_are_a_usage_error_wherever_given() -> None:
    err = io.StringIO()
    ns = parse("-c", "pounce.toml", "status", "--socket", "/x.sock")
    assert run_ctl(ns, out=io.StringIO(), err=err) == 2
    assert err.getvalue() == "pounce ctl: error: give either -c/--config or --socket, not both\n"


# -- running commands ---------------------------------------------------------------------


class Run:
    """Run ``pounce ctl --socket PATH ARGS`` in process; keep the exit code and output."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = run_ctl(parse("--socket", self.daemon.path, *argv), out=out, err=err)
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    where = tempfile.mkdtemp(prefix="pounce-ctl-")
    running = Daemon(os.path.join(where, "pounce.sock"), FakeSupervisor()).start()
    yield running
    running.shutdown()
    shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def ctl(daemon: Daemon) -> Run:
    return Run(daemon)


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("COLUMNS", "120")
    yield


def test_status_prints_the_tables(ctl: Run) -> None:
    code, out, err = ctl("status")
    assert (code, err) == (0, "")
    assert "pid 4242, pounce 0.1.0" in out
    assert cells(out, "0") == ["0", "4243", "2", "ready", "3.0s", "10", "1", "0"]
    assert "\x1b[" not in out  # not a terminal: no colour codes


BOX = set("│┃─━┌┐└┘├┤┬┴┼┏┓┗┛╭╮╰╯")


def test_piped_status_and_workers_are_plain_lines(ctl: Run) -> None:
    for command in ("status", "workers"):
        code, out, err = ctl(command)
        assert (code, err) == (0, ""), command
        assert not BOX & set(out), out
        for line in out.splitlines():
            assert line == line.strip() and "  " not in line, repr(line)
        assert "ID\tPID/THREAD\tGEN\tSTATE\tUPTIME\tREQUESTS\tCONNS\tRESTARTS" in out
    code, out, _ = ctl("status")
    assert out.splitlines()[:3] == [
        "daemon: pid 4242, pounce 0.1.0",
        "state: running",
        "uptime: 12s",
    ]
    assert "listener: http://127.0.0.1:8000" in out.splitlines()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_tables(daemon: Daemon) -> None:
    out = Terminal()
    assert run_ctl(parse("--socket", daemon.path, "status"), out=out, err=io.StringIO()) == 0
    assert "│" in out.getvalue() or "┃" in out.getvalue(), out.getvalue()
    assert cells(out.getvalue(), "0")[:3] == ["0", "4243", "2"]


def test_status_json_is_the_reply_unchanged(ctl: Run) -> None:
    code, out, _ = ctl("status", "--json")
    assert code == 0
    assert json.loads(out) == STATUS


def test_workers(ctl: Run) -> None:
    code, out, _ = ctl("workers")
    assert code == 0
    assert cells(out, "0")[:4] == ["0", "4243", "2", "ready"]
    code, out, _ = ctl("workers", "--json")
    assert json.loads(out) == {"generation": 2, "workers": STATUS["workers"]}


def test_reload_waits_and_reports_the_new_generation(ctl: Run) -> None:
    assert ctl("reload") == (0, "reloaded: generation 3 ready in 1.5s (1 workers)\n", "")


def test_a_failed_reload_prints_the_cause_and_exits_1(ctl: Run, daemon: Daemon) -> None:
    daemon.handler.reload_error = ControlCommandError(
        "pounce.toml: invalid configuration (2 errors)",
        ["server.workers: must be >= 1", "server.backlog: must be an integer"],
    )
    code, out, err = ctl("reload")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "pounce ctl: reload failed: pounce.toml: invalid configuration (2 errors)",
        "  server.workers: must be >= 1",
        "  server.backlog: must be an integer",
    ]


def test_reload_no_wait_returns_once_sent(ctl: Run, daemon: Daemon) -> None:
    gate = daemon.run(make_event())
    daemon.handler.reload_gate = gate
    assert ctl("reload", "--no-wait") == (0, "reload requested\n", "")
    assert daemon.handler.reload_started.wait(WAIT)
    daemon.loop.call_soon_threadsafe(gate.set)


def test_reload_that_outlasts_the_timeout_fails(ctl: Run, daemon: Daemon) -> None:
    gate = daemon.run(make_event())
    daemon.handler.reload_gate = gate
    code, out, err = Run(daemon)("--timeout", "0.2", "reload")
    daemon.loop.call_soon_threadsafe(gate.set)
    assert (code, out) == (1, "")
    assert err == "pounce ctl: error: no reply from the daemon within 0.2s (see --timeout)\n"


def test_drain_resume_stop_scale(ctl: Run, daemon: Daemon) -> None:
    assert ctl("drain") == (0, "draining (0 connections open)\n", "")
    assert ctl("drain", "--wait", "--timeout", "5") == (0, "drained (0 connections open)\n", "")
    assert ctl("resume") == (0, "resumed: running\n", "")
    # The reply says the scale lasts only until the next reload.
    assert ctl("scale", "4") == (
        0,
        "workers: 1 -> 4\nuntil the next reload, which returns to server.workers = 1 "
        "unless the config changes it\n",
        "",
    )
    assert ctl("stop", "--no-wait") == (0, "stopping (gracefully)\n", "")
    assert ctl("stop", "--now", "--no-wait") == (0, "stopping (now)\n", "")
    assert daemon.handler.calls == [
        ("drain", {"wait": False, "timeout": None}),
        ("drain", {"wait": True, "timeout": 5.0}),
        ("resume", {}),
        ("scale", {"workers": 4}),
        ("stop", {"now": False}),
        ("stop", {"now": True}),
    ]


def test_a_drain_that_did_not_finish_exits_1(ctl: Run, daemon: Daemon) -> None:
    async def stuck(wait: bool, timeout: float | None) -> DrainResult:
        return {"state": "draining", "connections": 2}

    daemon.handler.drain = stuck  # type: ignore[method-assign]
    code, out, _ = ctl("drain", "--wait", "--timeout", "1")
    assert (code, out) == (1, "not drained in time: draining, 2 connections still open\n")


def test_a_refused_command_exits_1_with_its_details(ctl: Run) -> None:
    assert ctl("scale", "100") == (
        1,
        "",
        "pounce ctl: scale failed: too many workers\n  the limit is 64\n",
    )


def test_no_daemon_exits_3(tmp_path: Path) -> None:
    err = io.StringIO()
    missing = str(tmp_path / "missing.sock")
    assert run_ctl(parse("--socket", missing, "status"), out=io.StringIO(), err=err) == 3
    assert err.getvalue() == (
        f"pounce ctl: error: no pounce daemon at {missing}: no socket there "
        "(is it running? pass --socket or -c to point at another one)\n"
    )


def test_an_unreadable_config_exits_2(tmp_path: Path) -> None:
    err = io.StringIO()
    code = run_ctl(parse("-c", str(tmp_path / "nope.toml"), "status"), out=io.StringIO(), err=err)
    assert code == 2
    assert err.getvalue().startswith("pounce ctl: error: ")
    assert len(err.getvalue().splitlines()) == 1


def test_with_a_config_the_default_socket_is_used_until_it_names_one(
    daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "pounce.toml"
    config.write_text('app = "apps.echo:app"\n')
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(Path(daemon.path).parent))
    out, err = io.StringIO(), io.StringIO()
    assert run_ctl(parse("-c", str(config), "resume"), out=out, err=err) == 0, err.getvalue()
    assert out.getvalue() == "resumed: running\n"


# -- as a command -------------------------------------------------------------------------

# `pounce ctl` once cli/main.py wires it in; until then the same parser in a shim.
SHIM = """
import argparse, sys
from pounce.ctl import add_ctl_parser, run_ctl
parser = argparse.ArgumentParser(prog="pounce")
add_ctl_parser(parser.add_subparsers(dest="command"))
code = run_ctl(parser.parse_args(sys.argv[1:]))
sys.stdout.write(repr(sorted(m for m in ("asyncio", "rich") if m in sys.modules)))
sys.exit(code)
"""


def pounce_ctl(*argv: str, shim: bool = False) -> subprocess.CompletedProcess[str]:
    from pounce.cli.main import COMMANDS

    if shim or "ctl" not in COMMANDS:
        cmd = [sys.executable, "-c", SHIM, "ctl", *argv]
    else:
        cmd = [sys.executable, "-m", "pounce", "ctl", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("POUNCE_")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env, cwd=ROOT)


def test_pounce_ctl_without_a_daemon_exits_3_with_one_line(tmp_path: Path) -> None:
    result = pounce_ctl("--socket", str(tmp_path / "missing.sock"), "status")
    assert result.returncode == 3
    assert len(result.stderr.splitlines()) == 1
    assert "no pounce daemon at" in result.stderr
    assert "Traceback" not in result.stderr


def test_pounce_ctl_loads_neither_asyncio_nor_rich_when_it_draws_no_table(
    daemon: Daemon,
) -> None:
    result = pounce_ctl("--socket", daemon.path, "resume", shim=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "resumed: running\n[]"


def test_the_status_result_type_matches_the_sample() -> None:
    sample: StatusResult = STATUS
    assert set(sample) == set(StatusResult.__annotations__)


def test_the_fake_supervisor_is_a_control_handler() -> None:
    from pounce.control.handler import ControlHandler

    handler: ControlHandler = FakeSupervisor()
    assert callable(handler.status)


@pytest.mark.parametrize("argv", [["status"], ["status", "--json"], ["workers", "--json"]])
def test_a_closed_pipe_prints_no_traceback(daemon: Daemon, argv: list[str]) -> None:
    # `pounce ctl status | head -1`: the reader is gone before ctl writes.
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {k: v for k, v in os.environ.items() if not k.startswith("POUNCE_")}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pounce", "ctl", "--socket", daemon.path, *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            env=env,
            cwd=ROOT,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 1


def documented_exit_codes(text: str) -> set[int]:
    listed = text.split("exit status:", 1)[1]
    return {int(code) for code in re.findall(r"(?:^ |, )(\d) ", listed)}


def test_the_documented_exit_codes_are_the_ones_returned(daemon: Daemon, tmp_path: Path) -> None:
    helped = pounce_ctl("--help")
    documented = documented_exit_codes(" ".join(helped.stdout.split()))
    assert documented == {0, 1, 2, 3}, helped.stdout
    runs = {
        "done": pounce_ctl("--socket", daemon.path, "resume"),
        "failed": pounce_ctl("--socket", daemon.path, "scale", "100"),
        "usage": pounce_ctl("--socket", daemon.path, "scale", "none"),
        "config": pounce_ctl("-c", str(tmp_path / "missing.toml"), "status"),
        "not running": pounce_ctl("--socket", str(tmp_path / "no.sock"), "status"),
    }
    codes = {what: run.returncode for what, run in runs.items()}
    assert codes == {"done": 0, "failed": 1, "usage": 2, "config": 2, "not running": 3}
    assert set(codes.values()) <= documented
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert EPILOG in docs
