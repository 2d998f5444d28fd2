"""pounce.config: TOML dump round-trip, generated CLI flags, generated docs, declarations."""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import tempfile
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers.config import FULL_EXAMPLE
from pounce.config import (
    AdminConfig,
    Config,
    ControlConfig,
    HealthConfig,
    HttpConfig,
    LimitsConfig,
    ListenConfig,
    LogFormat,
    LoggingConfig,
    LogLevel,
    MetricsConfig,
    ProxyConfig,
    RateLimitConfig,
    ReloadConfig,
    ServerConfig,
    ShutdownConfig,
    WorkerMode,
    WorkersConfig,
    add_cli_flags,
    config_to_toml,
    load_config,
    overrides_from_args,
    reference_markdown,
)
from pounce.config.rules import RULES, check_rules
from pounce.config.schema import single_settings, tables

ROOT = Path(__file__).resolve().parent.parent


def load_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "effective.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env={})


# --- config_to_toml -------------------------------------------------------------------------


def test_dump_defaults_has_every_setting() -> None:
    document = tomllib.loads(config_to_toml(Config()))
    assert "app" not in document  # None is left out
    assert document["server"] == {
        "workers": 1,
        "worker_mode": "auto",
        "root_path": "",
        "backlog": 2048,
        "factory": False,
        "loop": "auto",
        "middleware": [],
    }
    assert document["listen"] == [{"host": "127.0.0.1", "port": 8000}]
    assert document["logging"] == {
        "level": "info",
        "access_log": True,
        "format": "text",
        "slow_request_threshold": 0.0,
    }
    assert document["proxy"] == {"trusted": []}
    assert document["request_id"] == {"enabled": True, "header": "X-Request-ID"}
    assert document["limits"] == {
        "max_connections": 0,
        "max_concurrent_requests": 0,
        "queue_size": 0,
        "queue_timeout": 5.0,
        "retry_after": 1,
        "rate": {"requests_per_second": 0.0, "burst": 0, "max_tracked_clients": 10000},
    }
    assert document["http"]["server_timing"] is False
    assert document["shutdown"] == {"timeout": 30.0, "drain_delay": 0.0}
    assert document["workers"] == {
        "max_restarts": 5,
        "restart_window": 60.0,
        "timeout": 30.0,
        "heartbeat_interval": 1.0,
        "min_ready": 1,
    }
    assert document["reload"] == {"max_surge": 0, "timeout": 60.0}
    assert document["control"] == {}  # socket is not set
    assert document["admin"] == {"host": "127.0.0.1", "port": 0}
    assert document["health"] == {
        "live_path": "/health/live",
        "ready_path": "/health/ready",
        "public": False,
    }
    assert document["metrics"] == {"enabled": True, "path": "/metrics", "public": False}
    assert document["websocket"] == {
        "enabled": True,
        "max_message_size": 16 * 1024 * 1024,
        "ping_interval": 20.0,
        "ping_timeout": 20.0,
        "per_message_deflate": True,
    }
    assert document["tls"] == {
        "client_auth": "none",
        "minimum_version": "1.2",
        "alpn": "h2,http/1.1",
        "use_system_store": False,
    }
    assert document["http2"] == {
        "enabled": True,
        "h2c": True,
        "max_concurrent_streams": 100,
        "initial_window_size": 65535,
        "max_header_list_size": 65536,
        "max_resets_per_second": 100,
        "max_resets": 10000,
        "reset_grace": 1.0,
    }
    for found in tables():
        if not found.array:
            part = document
            for name in found.name.split("."):
                part = part[name]
            subs = {
                t.name.rpartition(".")[2] for t in tables() if t.name.startswith(found.name + ".")
            }
            assert set(part) - subs == {s.key for s in found.settings if s.default is not None}


def test_dump_writes_optional_strings_when_set() -> None:
    config = Config(
        control=ControlConfig(socket="/run/p.sock"),
        logging=LoggingConfig(file="/var/log/p.log"),
    )
    document = tomllib.loads(config_to_toml(config))
    assert document["control"] == {"socket": "/run/p.sock"}
    assert document["logging"]["file"] == "/var/log/p.log"


def test_dump_writes_mode_with_octal_comment() -> None:
    config = Config(listen=(ListenConfig(path="/run/x.sock", mode=0o660),))
    text = config_to_toml(config)
    assert '[[listen]]\npath = "/run/x.sock"\nmode = 432  # 0o660\n' in text


def test_dump_names_its_source(tmp_path: Path) -> None:
    config = load_text(tmp_path, "")
    assert config_to_toml(config).startswith(
        f"# Effective Pounce configuration (read from {config.source})"
    )


def test_round_trip_full(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL_EXAMPLE)
    again = load_text(tmp_path, config_to_toml(config))
    assert again == config
    assert config_to_toml(again) == config_to_toml(config).replace(
        str(config.source), str(again.source)
    )


_names = st.text(alphabet="abcdefghij_", min_size=1, max_size=8).filter(
    lambda s: not s[0].isdigit()
)
_listen = st.one_of(
    st.builds(
        ListenConfig,
        host=st.sampled_from(["127.0.0.1", "::1", "0.0.0.0", "localhost"]),
        port=st.integers(0, 65535),
        backlog=st.none() | st.integers(1, 65535),
    ),
    st.builds(
        ListenConfig,
        path=st.text(min_size=1, max_size=20),
        mode=st.none() | st.integers(0, 0o777),
        owner=st.none() | _names,
        group=st.none() | st.integers(0, 70000).map(str),
    ),
    st.builds(ListenConfig, fd=st.integers(0, 1000), name=st.none() | _names),
    st.builds(ListenConfig, name=_names),
)
_configs = st.builds(
    Config,
    app=st.none()
    | st.builds(lambda m, a, f: f"{m}:{a}{'()' if f else ''}", _names, _names, st.booleans()),
    server=st.builds(
        ServerConfig,
        workers=st.integers(1, 64),
        worker_mode=st.sampled_from(WorkerMode),
        root_path=st.sampled_from(["", "/api", "/a b/ü"]),
        backlog=st.integers(1, 65535),
        factory=st.booleans(),
    ),
    listen=st.lists(_listen, min_size=1, max_size=1).map(tuple),
    http=st.builds(
        HttpConfig,
        keep_alive_timeout=st.floats(0.001, 1e6),
        header_timeout=st.floats(0.001, 1e6),
        max_header_size=st.integers(1024, 16 * 1024 * 1024),
        max_body_size=st.integers(0, 2**40),
        max_requests_per_connection=st.integers(0, 10**6),
    ),
    shutdown=st.builds(ShutdownConfig, timeout=st.floats(0, 1e6), drain_delay=st.floats(0, 1e6)),
    logging=st.builds(
        LoggingConfig,
        level=st.sampled_from(LogLevel),
        access_log=st.booleans(),
        format=st.sampled_from(LogFormat),
        file=st.none() | st.text(min_size=1, max_size=20),
    ),
    workers=st.builds(
        lambda restarts, window, timeout, fraction: WorkersConfig(
            restarts, window, timeout, heartbeat_interval=timeout * fraction
        ),
        st.integers(0, 1000),
        st.floats(0.001, 1e6),
        st.floats(0.001, 1e6),
        st.floats(0.01, 0.99),
    ),
    reload=st.builds(ReloadConfig, max_surge=st.integers(0, 64), timeout=st.floats(0.001, 1e6)),
    control=st.builds(ControlConfig, socket=st.none() | st.text(min_size=1, max_size=20)),
    admin=st.one_of(
        st.builds(AdminConfig, host=st.sampled_from(["127.0.0.1", "::1"]), port=st.just(0)),
        # Hosts no listener uses, so that it is never "the same socket as listen[0]".
        st.builds(
            AdminConfig, host=st.sampled_from(["::", "admin.internal"]), port=st.integers(0, 65535)
        ),
    ),
    health=st.builds(
        HealthConfig,
        live_path=st.sampled_from(["/health/live", "/livez", "/ü/ok"]),
        ready_path=st.sampled_from(["/health/ready", "/readyz"]),
        public=st.booleans(),
    ),
    metrics=st.builds(
        MetricsConfig,
        enabled=st.booleans(),
        path=st.sampled_from(["/metrics", "/_/metrics"]),
        public=st.booleans(),
    ),
    proxy=st.builds(
        ProxyConfig,
        trusted=st.lists(st.sampled_from(["unix", "*", "10.0.0.0/8", "::1"])).map(tuple),
    ),
    limits=st.builds(
        LimitsConfig,
        max_connections=st.integers(0, 10**6),
        queue_timeout=st.floats(0.001, 1e6),
        rate=st.builds(
            RateLimitConfig,
            requests_per_second=st.floats(0, 1e6),
            burst=st.integers(0, 1000),
        ),
    ),
)


@given(_configs)
def test_round_trip_any_valid_config(config: Config) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "pounce.toml"
        path.write_text(config_to_toml(config), encoding="utf-8")
        assert load_config(path, env={}) == config


# --- CLI flags ------------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pounce serve", exit_on_error=False)
    add_cli_flags(parser)
    return parser


def test_no_flags_no_overrides() -> None:
    assert overrides_from_args(make_parser().parse_args([])) == {}


def test_flag_names() -> None:
    parser = make_parser()
    options = {s for action in parser._actions for s in action.option_strings}
    assert options >= {
        "--workers",
        "--worker-mode",
        "--root-path",
        "--backlog",
        "--factory",
        "--keep-alive-timeout",
        "--timeout-keep-alive",
        "--header-timeout",
        "--max-header-size",
        "--max-body-size",
        "--max-requests-per-connection",
        "--shutdown-timeout",
        "--timeout-graceful-shutdown",
        "--log-level",
        "--access-log",
        "--no-access-log",
        "--log-format",
        "--log-file",
        "--drain-delay",
        "--max-restarts",
        "--restart-window",
        "--worker-timeout",
        "--heartbeat-interval",
        "--reload-max-surge",
        "--reload-timeout",
        "--control-socket",
        "--admin-host",
        "--admin-port",
        "--health-live-path",
        "--health-ready-path",
        "--health-public",
        "--metrics",
        "--no-metrics",
        "--metrics-path",
        "--metrics-public",
    }
    # Flags of the CLI's own that generic setting keys must not take.
    assert not options & {"--host", "--port", "--timeout", "--path", "--public", "--socket"}
    assert "--no-factory" not in options
    assert any(group.title == "settings" for group in parser._action_groups)


def test_flags_round_trip_into_config() -> None:
    argv = [
        "--workers=3",
        "--worker-mode",
        "thread",
        "--root-path",
        "/x",
        "--backlog",
        "10",
        "--factory",
        "--timeout-keep-alive",
        "2",
        "--header-timeout",
        "1.5",
        "--max-header-size",
        "4096",
        "--max-body-size",
        "0",
        "--max-requests-per-connection",
        "9",
        "--timeout-graceful-shutdown",
        "4",
        "--log-level",
        "DEBUG",
        "--no-access-log",
        "--log-format",
        "json",
    ]
    overrides = overrides_from_args(make_parser().parse_args(argv))
    assert overrides == {
        "server.workers": 3,
        "server.worker_mode": WorkerMode.THREAD,
        "server.root_path": "/x",
        "server.backlog": 10,
        "server.factory": True,
        "http.keep_alive_timeout": 2.0,
        "http.header_timeout": 1.5,
        "http.max_header_size": 4096,
        "http.max_body_size": 0,
        "http.max_requests_per_connection": 9,
        "shutdown.timeout": 4.0,
        "logging.level": LogLevel.DEBUG,
        "logging.access_log": False,
        "logging.format": LogFormat.JSON,
    }
    config = load_config(env={"POUNCE_SERVER_WORKERS": "7"}, overrides=overrides)
    assert config.server == ServerConfig(3, WorkerMode.THREAD, "/x", 10, True)
    assert config.http == HttpConfig(2.0, 1.5, 4096, 0, 9)
    assert config.shutdown.timeout == 4.0
    assert config.logging == LoggingConfig(LogLevel.DEBUG, False, LogFormat.JSON)


def test_supervisor_flags_round_trip_into_config() -> None:
    argv = [
        "--log-file",
        "/var/log/p.log",
        "--drain-delay",
        "5",
        "--max-restarts",
        "0",
        "--restart-window=10",
        "--worker-timeout",
        "3",
        "--heartbeat-interval",
        "0.5",
        "--reload-max-surge",
        "2",
        "--reload-timeout",
        "15",
        "--control-socket",
        "/run/p.sock",
        "--admin-host",
        "::1",
        "--admin-port",
        "9100",
        "--health-live-path",
        "/livez",
        "--health-ready-path",
        "/readyz",
        "--health-public",
        "--no-metrics",
        "--metrics-path",
        "/m",
        "--metrics-public",
    ]
    overrides = overrides_from_args(make_parser().parse_args(argv))
    assert overrides == {
        "shutdown.drain_delay": 5.0,
        "logging.file": "/var/log/p.log",
        "workers.max_restarts": 0,
        "workers.restart_window": 10.0,
        "workers.timeout": 3.0,
        "workers.heartbeat_interval": 0.5,
        "reload.max_surge": 2,
        "reload.timeout": 15.0,
        "control.socket": "/run/p.sock",
        "admin.host": "::1",
        "admin.port": 9100,
        "health.live_path": "/livez",
        "health.ready_path": "/readyz",
        "health.public": True,
        "metrics.enabled": False,
        "metrics.path": "/m",
        "metrics.public": True,
    }
    config = load_config(env={"POUNCE_WORKERS_MAX_RESTARTS": "7"}, overrides=overrides)
    assert config.shutdown == ShutdownConfig(timeout=30.0, drain_delay=5.0)
    assert config.logging.file == "/var/log/p.log"
    assert config.workers == WorkersConfig(0, 10.0, 3.0, 0.5)
    assert config.reload == ReloadConfig(2, 15.0)
    assert config.control == ControlConfig("/run/p.sock")
    assert config.admin == AdminConfig("::1", 9100)
    assert config.health == HealthConfig("/livez", "/readyz", True)
    assert config.metrics == MetricsConfig(False, "/m", True)


def test_metrics_flags_turn_it_back_on() -> None:
    ns = make_parser().parse_args(["--metrics", "--health-public"])
    env = {"POUNCE_METRICS_ENABLED": "0", "POUNCE_HEALTH_PUBLIC": "off"}
    config = load_config(env=env, overrides=overrides_from_args(ns))
    assert config.metrics.enabled is True
    assert config.health.public is True


def test_access_log_flag_turns_it_back_on() -> None:
    ns = make_parser().parse_args(["--access-log"])
    config = load_config(env={"POUNCE_LOGGING_ACCESS_LOG": "0"}, overrides=overrides_from_args(ns))
    assert config.logging.access_log is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "argument --workers: must be >= 1, got 0"),
        (["--workers", "two"], 'argument --workers: expected an integer, got "two"'),
        (
            ["--worker-mode", "proces"],
            'argument --worker-mode: must be one of auto, process, thread, got "proces"',
        ),
        (["--max-restarts", "-1"], "argument --max-restarts: must be >= 0, got -1"),
        (["--worker-timeout", "0"], "argument --worker-timeout: must be > 0, got 0.0"),
        (["--reload-max-surge", "x"], 'argument --reload-max-surge: expected an integer, got "x"'),
        (["--admin-port", "70000"], "argument --admin-port: must be 0-65535, got 70000"),
        (["--control-socket", ""], 'argument --control-socket: must not be empty, got ""'),
        (
            ["--metrics-path", "metrics"],
            'argument --metrics-path: must start with "/" and have no "?", "#" or spaces, '
            'got "metrics"',
        ),
    ],
)
def test_bad_flag_values(argv: list[str], message: str) -> None:
    with pytest.raises(argparse.ArgumentError) as info:
        make_parser().parse_args(argv)
    assert str(info.value) == message


def test_help_renders() -> None:
    text = make_parser().format_help()
    spellings = (
        "--keep-alive-timeout SECONDS, --timeout-keep-alive SECONDS"
        if sys.version_info < (3, 13)
        else "--keep-alive-timeout, --timeout-keep-alive SECONDS"  # 3.13: the metavar once
    )
    assert spellings in text
    assert "POUNCE_HTTP_KEEP_ALIVE_TIMEOUT" in text
    assert "--log-file PATH" in text
    assert "--admin-host HOST" in text
    assert "--heartbeat-interval SECONDS" in text
    assert "--metrics, --no-metrics" in text


# --- declarations and docs ------------------------------------------------------------------


def test_flags_and_env_vars_are_unique() -> None:
    flags = [f for s in single_settings() for f in s.flags]
    assert len(flags) == len(set(flags))
    env = [s.env_var for s in single_settings()]
    assert len(env) == len(set(env))


def test_every_setting_is_documented() -> None:
    reference = reference_markdown()
    for found in tables():
        assert f"## `[{'[' if found.array else ''}{found.name}]" in reference
        for spec in found.settings:
            assert spec.setting.doc
            assert f"| `{spec.key}` |" in reference
    for spec in single_settings():
        assert f"`{spec.env_var}`" in reference
        for flag in spec.flags:
            assert f"`{flag}`" in reference


def test_every_rule_is_documented_and_holds_for_defaults() -> None:
    reference = reference_markdown()
    for rule in RULES:
        assert rule.doc
        assert f"- {rule.doc}" in reference
        assert rule.key in {s.dotted for s in single_settings()}
    assert check_rules(Config()) == []


def test_rules_on_a_built_config() -> None:
    config = Config(
        workers=WorkersConfig(heartbeat_interval=40.0),
        metrics=MetricsConfig(path="/health/ready"),
    )
    assert check_rules(config) == [
        "workers.heartbeat_interval: must be less than workers.timeout (30.0), got 40.0",
        'metrics.path: must differ from health.ready_path, got "/health/ready" for both',
    ]
    assert check_rules(config, {"workers.timeout"}) == check_rules(config)[1:]


def _gen_docs_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_config_docs", ROOT / "scripts" / "gen_config_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_are_up_to_date() -> None:
    script = _gen_docs_script()
    current = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert current == script.render(), "docs/config.md is stale: run scripts/gen_config_docs.py"


def test_docs_examples_are_valid(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    examples = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    assert examples
    for example in examples:
        load_text(tmp_path, example)
