"""The command line: app loading errors, factories, banner, ``check``, ``config show``."""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

import pounce
from helpers.asgi import (
    Launcher,
    json_lines,
    output_lines,
    short_tmpdir,
    wait_exit,
    wait_tcp,
    wait_uds,
)
from helpers.server import ROOT, free_port, run_pounce, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def combined(result: object) -> str:
    return (result.stdout or "") + (result.stderr or "")  # type: ignore[attr-defined]


def minimal_config(path: Path, port: int, app: str = "apps.asgi_scope:app") -> Path:
    path.write_text(f'app = "{app}"\n\n[[listen]]\nhost = "127.0.0.1"\nport = {port}\n')
    return path


# -- loading the app ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("no_such_module_q9:app", "no_such_module_q9"),
        ("apps.asgi_scope:no_such_attr", "no_such_attr"),
        ("apps.asgi_bad:not_callable", "not_callable"),
        ("apps.asgi_bad:Asgi2App", "Asgi2App"),
        ("apps.asgi_bad:single_arg", "single_arg"),
        ("apps.asgi_broken_import:app", "definitely_missing_dep_77"),
    ],
    ids=[
        "missing-module",
        "missing-attr",
        "not-callable",
        "asgi2-class",
        "one-arg",
        "inner-import",
    ],
)
def test_bad_app_gives_one_clear_line(launch: Launcher, target: str, needle: str) -> None:
    port = free_port()
    server = launch.spawn("serve", target, "--host", "127.0.0.1", "--port", str(port))
    code = wait_exit(server, 20)
    assert code is not None, f"server kept running with a bad app:\n{server.output}"
    assert code != 0
    out = server.output
    # One line tells what is wrong (the startup banner, a table, may name the app too);
    # the traceback of the app's own code, when it raised, comes before it.
    told = [line for line in out.splitlines() if needle in line and not set("│|┃") & set(line)]
    if target == "apps.asgi_broken_import:app":
        assert out.count("Traceback") == 1, out
        assert output_lines(out)[-1].startswith("pounce: error: "), out
        assert told[-1] == output_lines(out)[-1], out
    else:
        assert "Traceback" not in out, out
        assert len(told) == 1, out


@pytest.mark.parametrize(
    "args",
    [("apps.asgi_factory:create_app()",), ("--factory", "apps.asgi_factory:create_app")],
    ids=["call-syntax", "factory-flag"],
)
def test_app_factory(launch: Launcher, args: tuple[str, ...]) -> None:
    port = free_port()
    server = launch.spawn("serve", *args, "--host", "127.0.0.1", "--port", str(port))
    wait_tcp(server, "127.0.0.1", port)
    with httpx.Client(timeout=10) as client:
        r = client.get(f"http://127.0.0.1:{port}/")
    assert r.status_code == 200
    assert r.text == "made-by-factory"


def test_serve_applies_settings_from_config_file(launch: Launcher, tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "pounce.toml"
    cfg.write_text(
        'app = "apps.asgi_scope:app"\n\n'
        '[server]\nworkers = 1\nroot_path = "/from-config"\n\n'
        f'[[listen]]\nhost = "127.0.0.1"\nport = {port}\n\n'
        "[http]\nmax_body_size = 1000\n\n"
        "[shutdown]\ntimeout = 2.0\n\n"
        '[logging]\nlevel = "info"\naccess_log = true\nformat = "json"\n'
    )
    server = launch.spawn("serve", "-c", str(cfg))
    wait_tcp(server, "127.0.0.1", port)
    with httpx.Client(timeout=10) as client:
        r = client.get(f"http://127.0.0.1:{port}/from-config/cfg-probe")
        assert r.status_code == 200
        assert r.json()["scope"]["root_path"] == "/from-config"
        assert client.post(f"http://127.0.0.1:{port}/x", content=b"b" * 5000).status_code == 413

    def access_entry() -> bool:
        return any("cfg-probe" in str(o.get("path", "")) for o in json_lines(server.output))

    assert wait_for(access_entry, 10), server.output


def test_cli_flags_override_config_file(launch: Launcher, tmp_path: Path) -> None:
    cfg = tmp_path / "pounce.toml"
    cfg.write_text(
        'app = "apps.asgi_scope:app"\n\n[server]\nroot_path = "/from-config"\n\n'
        f'[[listen]]\nhost = "127.0.0.1"\nport = {free_port()}\n'
    )
    port = free_port()
    server = launch.spawn(
        "serve", "-c", str(cfg), "--host", "127.0.0.1", "--port", str(port),
        "--root-path", "/from-cli",
    )  # fmt: skip
    wait_tcp(server, "127.0.0.1", port)
    with httpx.Client(timeout=10) as client:
        r = client.get(f"http://127.0.0.1:{port}/from-cli/x")
    assert r.json()["scope"]["root_path"] == "/from-cli"


# -- startup banner -----------------------------------------------------------------------


def test_banner_mentions_version_build_listeners_and_workers(launch: Launcher) -> None:
    port = free_port()
    server = launch.spawn(
        "serve",
        "apps.asgi_scope:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
    )
    wait_tcp(server, "127.0.0.1", port)
    out = server.output
    assert pounce.__version__ in out, out
    gil_enabled = getattr(sys, "_is_gil_enabled", lambda: True)()
    if gil_enabled:
        assert re.search(r"\bGIL\b", out), out
    else:
        assert "free-threaded" in out.lower(), out
    assert f"127.0.0.1:{port}" in out, out
    assert re.search(r"(?i)\b2\s+(?:worker|process)|workers?\W{0,3}2\b", out), out


def test_banner_mentions_unix_socket_listener(launch: Launcher) -> None:
    with short_tmpdir() as d:
        path = d / "banner.sock"
        server = launch.spawn("serve", "apps.asgi_scope:app", "--uds", str(path))
        wait_uds(server, path)
        assert str(path) in server.output, server.output


def test_version_flag() -> None:
    result = run_pounce("--version")
    assert result.returncode == 0, combined(result)
    assert pounce.__version__ in result.stdout
    assert "Traceback" not in combined(result)


# -- every documented flag is accepted ----------------------------------------------------


def test_all_serve_flags_are_accepted(launch: Launcher) -> None:
    port = free_port()
    server = launch.spawn(
        "serve", "apps.asgi_scope:app",
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
        "--log-level", "info",
        "--root-path", "/rooted",
        "--keep-alive-timeout", "3",
        "--header-timeout", "5",
        "--max-header-size", "16384",
        "--max-body-size", "1000",
        "--max-requests-per-connection", "100",
        "--shutdown-timeout", "2",
        "--access-log",
        "--log-format", "text",
    )  # fmt: skip
    wait_tcp(server, "127.0.0.1", port)
    with httpx.Client(timeout=10) as client:
        r = client.get(f"http://127.0.0.1:{port}/rooted/x")
        assert r.status_code == 200
        assert r.json()["scope"]["root_path"] == "/rooted"
        big = client.post(f"http://127.0.0.1:{port}/rooted/x", content=b"b" * 5000)
        assert big.status_code == 413


# -- pounce check -------------------------------------------------------------------------


def test_check_valid_config_exits_zero(tmp_path: Path) -> None:
    cfg = minimal_config(tmp_path / "pounce.toml", free_port())
    result = run_pounce("check", "-c", str(cfg))
    assert result.returncode == 0, combined(result)
    assert "Traceback" not in combined(result)


def test_check_example_config_exits_zero() -> None:
    result = run_pounce("check", "-c", "examples/pounce.toml", cwd=ROOT)
    assert result.returncode == 0, combined(result)


def test_check_reports_unimportable_app(tmp_path: Path) -> None:
    cfg = minimal_config(tmp_path / "pounce.toml", free_port(), app="no_such_module_w3:app")
    result = run_pounce("check", "-c", str(cfg))
    assert result.returncode != 0
    out = combined(result)
    assert "no_such_module_w3" in out
    assert "Traceback" not in out


def test_check_reports_non_asgi3_app(tmp_path: Path) -> None:
    cfg = minimal_config(tmp_path / "pounce.toml", free_port(), app="apps.asgi_bad:single_arg")
    result = run_pounce("check", "-c", str(cfg))
    assert result.returncode != 0
    assert "single_arg" in combined(result)
    assert "Traceback" not in combined(result)


def test_check_reports_invalid_config(tmp_path: Path) -> None:
    cfg = tmp_path / "pounce.toml"
    cfg.write_text('app = "apps.asgi_scope:app"\n\n[http]\nkeep_alive_timeout = "soon"\n')
    result = run_pounce("check", "-c", str(cfg))
    assert result.returncode != 0
    assert "keep_alive_timeout" in combined(result)
    assert "Traceback" not in combined(result)


# -- pounce config show -------------------------------------------------------------------


def test_config_show_prints_toml_with_defaults(tmp_path: Path) -> None:
    port = free_port()
    cfg = minimal_config(tmp_path / "pounce.toml", port)
    result = run_pounce("config", "show", "-c", str(cfg))
    assert result.returncode == 0, combined(result)
    data = tomllib.loads(result.stdout)
    assert data["app"] == "apps.asgi_scope:app"
    assert data["listen"][0]["host"] == "127.0.0.1"
    assert data["listen"][0]["port"] == port
    assert data["http"]["keep_alive_timeout"] == 5.0
    assert re.search(r"(?m)^keep_alive_timeout = 5\.0$", result.stdout), result.stdout
    for section in ("server", "http", "shutdown", "logging"):
        assert isinstance(data[section], dict), section
    http_keys = (
        "header_timeout",
        "max_header_size",
        "max_body_size",
        "max_requests_per_connection",
    )
    for key in http_keys:
        assert key in data["http"], key
    assert "timeout" in data["shutdown"]
    assert {"level", "access_log", "format"} <= set(data["logging"])
    assert "workers" in data["server"]


def test_config_show_round_trips(tmp_path: Path) -> None:
    cfg = minimal_config(tmp_path / "pounce.toml", free_port())
    # The harness gives each run its own POUNCE_* environment; keep it the same here.
    env = {"POUNCE_CONTROL_SOCKET": str(tmp_path / "ctl.sock")}
    first = run_pounce("config", "show", "-c", str(cfg), env=env)
    assert first.returncode == 0, combined(first)
    shown = tmp_path / "shown.toml"
    shown.write_text(first.stdout)
    again = run_pounce("config", "show", "-c", str(shown), env=env)
    assert again.returncode == 0, combined(again)
    assert tomllib.loads(again.stdout) == tomllib.loads(first.stdout)
    checked = run_pounce("check", "-c", str(shown), env=env)
    assert checked.returncode == 0, combined(checked)


def test_config_show_reflects_given_values(tmp_path: Path) -> None:
    cfg = tmp_path / "pounce.toml"
    cfg.write_text(
        'app = "apps.asgi_scope:app"\n\n[http]\nkeep_alive_timeout = 12.5\n\n'
        "[shutdown]\ntimeout = 3.0\n\n[[listen]]\nport = 8123\n"
    )
    result = run_pounce("config", "show", "-c", str(cfg))
    assert result.returncode == 0, combined(result)
    data = tomllib.loads(result.stdout)
    assert data["http"]["keep_alive_timeout"] == 12.5
    assert data["shutdown"]["timeout"] == 3.0
    assert data["listen"][0]["port"] == 8123


# -- unreadable config files ----------------------------------------------------------------


COMMANDS = [("serve", "-c"), ("check", "-c"), ("config", "show", "-c")]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:-1]))
def test_missing_config_file(tmp_path: Path, command: tuple[str, ...]) -> None:
    missing = tmp_path / "nope.toml"
    result = run_pounce(*command, str(missing))
    out = combined(result)
    assert result.returncode == 2, out
    assert "Traceback" not in out
    assert len(output_lines(out)) == 1, out
    assert "nope.toml" in out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:-1]))
def test_toml_syntax_error(tmp_path: Path, command: tuple[str, ...]) -> None:
    cfg = tmp_path / "broken.toml"
    cfg.write_text('app = "apps.asgi_scope:app"\n[http\nkeep_alive_timeout = 5\n')
    result = run_pounce(*command, str(cfg))
    out = combined(result)
    assert result.returncode == 2, out
    assert "Traceback" not in out
    assert len(output_lines(out)) == 1, out


# -- the app's traceback when its import raises ------------------------------------------

ENVFAIL = "apps.asgi_envfail:app"
ENVFAIL_SUMMARY = (
    'pounce: error: importing "apps.asgi_envfail" failed: '
    "KeyError: 'POUNCE_TESTS_NO_SUCH_DATABASE_URL_Q7'"
)


def assert_app_traceback(out: str) -> None:
    """The app's frames once, Pounce's import machinery trimmed, the summary last."""
    lines = output_lines(out)
    assert lines[-1] == ENVFAIL_SUMMARY, out
    assert out.count("Traceback (most recent call last):") == 1, out
    trace = lines[lines.index("Traceback (most recent call last):") : -1]
    assert any("asgi_envfail.py" in line and "in <module>" in line for line in trace), out
    assert any("in read_setting" in line for line in trace), out
    assert trace[-1] == "KeyError: 'POUNCE_TESTS_NO_SUCH_DATABASE_URL_Q7'", out
    assert not any("importlib" in line or "/pounce/" in line for line in trace), out


@pytest.mark.parametrize(
    "args",
    [
        ("serve", "--port", "0", "--workers", "3"),
        ("serve", "--port", "0", "--workers", "2", "--worker-mode", "thread"),
        ("check",),
    ],
    ids=["serve-processes", "serve-threads", "check"],
)
def test_an_import_error_shows_the_apps_traceback(args: tuple[str, ...]) -> None:
    command, *rest = args
    result = run_pounce(command, ENVFAIL, *rest)
    assert result.returncode == 1, combined(result)
    assert_app_traceback(result.stderr)


def test_a_json_log_gets_the_import_error_as_one_json_line(tmp_path: Path) -> None:
    result = run_pounce("serve", ENVFAIL, "--port", "0", "--log-format", "json")
    assert result.returncode == 1, combined(result)
    entries = json_lines(combined(result))
    assert len(entries) == len(output_lines(combined(result))), combined(result)
    failed = entries[-1]
    assert failed["level"] == "error", entries
    assert failed["message"] == ENVFAIL_SUMMARY.removeprefix("pounce: error: ")
    assert "in read_setting" in failed["traceback"]
    # With a log file the error is in the file, and on stderr too, as the same JSON line.
    log = tmp_path / "pounce.log"
    args = ("--port", "0", "--log-format", "json", "--log-file", str(log))
    result = run_pounce("serve", ENVFAIL, *args)
    assert result.returncode == 1, combined(result)
    assert output_lines(result.stderr) == [log.read_text().splitlines()[-1]], combined(result)
    assert json.loads(result.stderr)["traceback"] == failed["traceback"]


# -- argparse: no prefix matching, one-line usage errors ----------------------------------


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["serve", "apps.asgi_scope:app", "--reload"],
            "pounce serve: error: unknown option --reload: pounce has no code reloader; "
            "reload the daemon with `pounce ctl reload` or SIGHUP; see pounce serve --help",
        ),
        (
            ["serve", "apps.asgi_scope:app", "--header", "X-A: b"],
            "pounce serve: error: unknown option --header: pounce adds no response headers; "
            "set them in the app; see pounce serve --help",
        ),
        (
            ["serve", "apps.asgi_scope:app", "--workrs", "2"],
            "pounce serve: error: unknown option --workrs (did you mean --workers?); "
            "see pounce serve --help",
        ),
        (
            ["serve", "apps.asgi_scope:app", "--keep-alive", "5"],
            "pounce serve: error: unknown option --keep-alive (did you mean --timeout-keep-alive?); "
            "see pounce serve --help",
        ),
        (
            ["check", "--conf", "x.toml"],
            "pounce check: error: unknown option --conf (did you mean --config?); "
            "see pounce check --help",
        ),
        (
            ["ctl", "status", "--jsn"],
            "pounce ctl status: error: unknown option --jsn (did you mean --json?); "
            "see pounce ctl status --help",
        ),
        (
            ["serve", "apps.asgi_scope:app", "--port", "http"],
            "pounce serve: error: argument --port: must be 0-65535, got 'http'; "
            "see pounce serve --help",
        ),
    ],
    ids=["reload", "header", "typo", "prefix", "check", "ctl", "bad-value"],
)
def test_a_bad_flag_is_one_line_and_no_prefix_matches(argv: list[str], line: str) -> None:
    result = run_pounce(*argv)
    assert result.returncode == 2, combined(result)
    assert (result.stdout, result.stderr) == ("", line + "\n")


def test_every_parser_refuses_abbreviations() -> None:
    from pounce.cli.main import build_parser

    todo = [build_parser()]
    seen = 0
    while todo:
        parser = todo.pop()
        seen += 1
        assert parser.allow_abbrev is False, parser.prog
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += list(action.choices.values())
    assert seen >= 12


# -- which config file: -c, $POUNCE_CONFIG, ./pounce.toml ---------------------------------


def test_serve_without_an_app_reads_pounce_toml_in_the_current_directory(
    launch: Launcher, tmp_path: Path
) -> None:
    port = free_port()
    minimal_config(tmp_path / "pounce.toml", port)
    server = launch.spawn("serve", cwd=tmp_path)
    wait_tcp(server, "127.0.0.1", port)
    with httpx.Client(timeout=10) as client:
        assert client.get(f"http://127.0.0.1:{port}/").status_code == 200
    where = str((tmp_path / "pounce.toml").resolve())
    told = [line for line in output_lines(server.output) if "./pounce.toml" in line]
    assert len(told) == 1 and where in told[0], server.output


def test_pounce_config_names_the_config_file(launch: Launcher, tmp_path: Path) -> None:
    port = free_port()
    cfg = minimal_config(tmp_path / "elsewhere.toml", port)
    server = launch.spawn("serve", env={"POUNCE_CONFIG": str(cfg)})
    wait_tcp(server, "127.0.0.1", port)
    assert f"reading {cfg} (from $POUNCE_CONFIG)" in server.output
    result = run_pounce("config", "show", env={"POUNCE_CONFIG": str(cfg)})
    assert result.returncode == 0, combined(result)
    assert tomllib.loads(result.stdout)["listen"][0]["port"] == port


def test_an_app_on_the_command_line_ignores_pounce_toml(tmp_path: Path) -> None:
    (tmp_path / "pounce.toml").write_text("this is not toml [")
    result = run_pounce("check", "apps.asgi_scope:app", cwd=tmp_path)
    assert result.returncode == 0, combined(result)
    assert "pounce.toml" not in combined(result)
