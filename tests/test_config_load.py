"""pounce.config: reading a TOML file into frozen dataclasses, and every kind of error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from helpers.config import FULL_EXAMPLE
from pounce.config import (
    AdminConfig,
    Config,
    ControlConfig,
    HealthConfig,
    HttpConfig,
    ListenConfig,
    LogFormat,
    LoggingConfig,
    LogLevel,
    MetricsConfig,
    ReloadConfig,
    ServerConfig,
    ShutdownConfig,
    WorkerMode,
    WorkersConfig,
    load_config,
)
from pounce.errors import ConfigError, UsageError


def write(tmp_path: Path, text: str, name: str = "pounce.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str) -> list[str]:
    """The errors a file with ``text`` is rejected with."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    return list(info.value.errors)


def only_error(tmp_path: Path, text: str) -> str:
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1, errors
    return errors[0]


# --- defaults and a full file ---------------------------------------------------------------


def test_defaults() -> None:
    config = load_config(env={})
    assert config == Config()
    assert config.app is None
    assert config.source is None
    assert config.server == ServerConfig(
        workers=1, worker_mode=WorkerMode.AUTO, root_path="", backlog=2048, factory=False
    )
    assert config.listen == (ListenConfig(host="127.0.0.1", port=8000),)
    assert config.http == HttpConfig(
        keep_alive_timeout=5.0,
        header_timeout=10.0,
        max_header_size=65536,
        max_body_size=104857600,
        max_requests_per_connection=0,
    )
    assert config.shutdown == ShutdownConfig(timeout=30.0, drain_delay=0.0)
    assert config.logging == LoggingConfig(
        level=LogLevel.INFO, access_log=True, format=LogFormat.TEXT, file=None
    )
    assert config.workers == WorkersConfig(
        max_restarts=5, restart_window=60.0, timeout=30.0, heartbeat_interval=1.0
    )
    assert config.reload == ReloadConfig(max_surge=0, timeout=60.0)
    assert config.control == ControlConfig(socket=None)
    assert config.admin == AdminConfig(host="127.0.0.1", port=0)
    assert config.health == HealthConfig(
        live_path="/health/live", ready_path="/health/ready", public=False
    )
    assert config.metrics == MetricsConfig(enabled=True, path="/metrics", public=False)


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    config = load_config(path, env={})
    assert config == Config()
    assert config.source == str(path)


def test_full_example(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL_EXAMPLE), env={})
    assert config.app == "myproject.asgi:create_app()"
    assert config.server == ServerConfig(
        workers=4, worker_mode=WorkerMode.PROCESS, root_path="/api", backlog=1024, factory=True
    )
    assert config.listen == (
        ListenConfig(host="0.0.0.0", port=8080),
        ListenConfig(host="::1", port=8000),
        ListenConfig(host="127.0.0.1", port=9000, backlog=16),
        ListenConfig(path="/run/pounce.sock", mode=0o660, owner="www-data", group="1000"),
        ListenConfig(fd=3),
        ListenConfig(name="web"),
    )
    assert [entry.kind for entry in config.listen] == ["tcp", "tcp", "tcp", "unix", "fd", "named"]
    assert [entry.describe() for entry in config.listen[:5]] == [
        "http://0.0.0.0:8080",
        "http://[::1]:8000",
        "http://127.0.0.1:9000",
        "unix:/run/pounce.sock",
        "fd://3",
    ]
    assert [config.backlog_for(entry) for entry in config.listen[1:3]] == [1024, 16]
    assert config.http == HttpConfig(
        keep_alive_timeout=15.0,
        header_timeout=2.5,
        max_header_size=32768,
        max_body_size=0,
        max_requests_per_connection=1000,
    )
    assert isinstance(config.http.keep_alive_timeout, float)
    assert config.shutdown == ShutdownConfig(timeout=0.0, drain_delay=2.5)
    assert config.logging == LoggingConfig(
        level=LogLevel.DEBUG, access_log=False, format=LogFormat.JSON, file="/var/log/pounce.log"
    )
    assert type(config.logging.level) is LogLevel
    assert config.workers == WorkersConfig(
        max_restarts=0, restart_window=120.0, timeout=10.5, heartbeat_interval=0.25
    )
    assert isinstance(config.workers.restart_window, float)
    assert config.reload == ReloadConfig(max_surge=2, timeout=90.0)
    assert isinstance(config.reload.timeout, float)
    assert config.control == ControlConfig(socket="/run/pounce/ctl.sock")
    assert config.admin == AdminConfig(host="::", port=9100)
    assert config.health == HealthConfig(live_path="/livez", ready_path="/readyz", public=True)
    assert config.metrics == MetricsConfig(enabled=False, path="/_/metrics", public=True)


def test_accepts_path_objects_and_strings(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nworkers = 2\n")
    assert load_config(path, env={}) == load_config(str(path), env={})


def test_enum_values_are_case_insensitive(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[logging]\nlevel = "WARNING"\n'), env={})
    assert config.logging.level is LogLevel.WARNING


@pytest.mark.parametrize(
    "app", ["main:app", "my_pkg.sub.mod:app", "pkg:make_app()", "m:obj.attr.app", "é:app"]
)
def test_app_shapes_accepted(tmp_path: Path, app: str) -> None:
    assert load_config(write(tmp_path, f'app = "{app}"\n'), env={}).app == app


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "::1", "localhost", "example.com", "fe80::1%lo"])
def test_hosts_accepted(tmp_path: Path, host: str) -> None:
    config = load_config(write(tmp_path, f'[[listen]]\nhost = "{host}"\n'), env={})
    assert config.listen == (ListenConfig(host=host, port=8000),)


def test_frozen_dataclasses() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.app = "x:y"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.workers = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listen[0].port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers.timeout = 1.0  # type: ignore[misc]
    tables = (config.workers, config.reload, config.control, config.admin, config.health)
    for obj in (config, config.server, config.listen[0], config.http, config.logging, *tables):
        assert not hasattr(obj, "__dict__")  # slotted
    assert not hasattr(config.metrics, "__dict__")


def test_source_does_not_affect_equality() -> None:
    assert Config(source="a.toml") == Config(source="b.toml")


# --- file errors ----------------------------------------------------------------------------


def test_missing_file_is_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "pounce.toml"
    with pytest.raises(UsageError) as info:
        load_config(path, env={})
    assert str(info.value) == f"{path}: no such file"
    assert info.value.exit_code == 2


def test_directory_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        load_config(tmp_path, env={})


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'app = "x:y"\n\n[server]\nworkers = \n')
    with pytest.raises(UsageError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}:4: invalid TOML: ")
    assert "\n" not in message


def test_toml_error_at_end_of_file_names_the_last_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'app = "x:y"\nname = "unterminated\n')
    with pytest.raises(UsageError, match=r"pounce\.toml:2: invalid TOML: "):
        load_config(path, env={})


def test_not_utf8_is_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "pounce.toml"
    path.write_bytes(b'app = "\xff"\n')
    with pytest.raises(UsageError, match="not UTF-8"):
        load_config(path, env={})


# --- validation errors ----------------------------------------------------------------------


def test_config_error_carries_source_and_exit_code(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nworkers = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.source == str(path)
    assert info.value.exit_code == 2
    assert str(info.value) == f"{path}: invalid configuration: server.workers: must be >= 1, got 0"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("htp = {}\n", "htp: unknown key, did you mean http?"),
        ("zzz = 1\n", "zzz: unknown key"),
        ("worker_mode = 2\n", "worker_mode: unknown key, did you mean server.worker_mode?"),
        (
            "timeout = 2\n",
            "timeout: unknown key, did you mean shutdown.timeout, workers.timeout or "
            "reload.timeout?",
        ),
        (
            "[workers]\nmax_restart = 1\n",
            "workers.max_restart: unknown key, did you mean max_restarts?",
        ),
        (
            "[workers]\ndrain_delay = 1\n",
            "workers.drain_delay: unknown key, did you mean shutdown.drain_delay?",
        ),
        ("[reload]\nsurge = 1\n", "reload.surge: unknown key, did you mean max_surge?"),
        ("[shutdown]\ndrain = 1\n", "shutdown.drain: unknown key, did you mean drain_delay?"),
        ("[control]\nsockets = 'x'\n", "control.sockets: unknown key, did you mean socket?"),
        ("[admin]\nprot = 1\n", "admin.prot: unknown key, did you mean port?"),
        (
            "[http]\ntimeout = 1\n",
            "http.timeout: unknown key, did you mean shutdown.timeout, workers.timeout or "
            "reload.timeout?",
        ),
        ("[health]\nlive = '/x'\n", "health.live: unknown key, did you mean live_path?"),
        ("[metrics]\nenable = false\n", "metrics.enable: unknown key, did you mean enabled?"),
        ("[logging]\nlog_file = 'x'\n", "logging.log_file: unknown key, did you mean file?"),
        ("[metrcs]\n", "metrcs: unknown key, did you mean metrics?"),
        ("[healthz]\n", "healthz: unknown key, did you mean health?"),
        (
            "[http]\nkeepalive_timeout = 1\n",
            "http.keepalive_timeout: unknown key, did you mean keep_alive_timeout?",
        ),
        ("[http]\nfoo = 1\n", "http.foo: unknown key"),
        ("[[listen]]\nhots = 'x'\nport = 1\n", "listen[0].hots: unknown key, did you mean host?"),
    ],
)
def test_unknown_keys(tmp_path: Path, text: str, error: str) -> None:
    assert only_error(tmp_path, text) == error


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[server]\nworkers = "two"\n', 'server.workers: expected an integer, got string "two"'),
        ("[server]\nworkers = 2.0\n", "server.workers: expected an integer, got float 2.0"),
        ("[server]\nworkers = true\n", "server.workers: expected an integer, got boolean true"),
        (
            "[http]\nkeep_alive_timeout = false\n",
            "http.keep_alive_timeout: expected a number, got boolean false",
        ),
        (
            "[http]\nheader_timeout = nan\n",
            "http.header_timeout: expected a finite number, got float nan",
        ),
        ("[server]\nfactory = 1\n", "server.factory: expected a boolean, got integer 1"),
        ("[server]\nroot_path = 1\n", "server.root_path: expected a string, got integer 1"),
        ("[server]\nworkers = [1]\n", "server.workers: expected an integer, got an array"),
        ("app = 1979-05-27\n", "app: expected a string, got date-time 1979-05-27"),
        ("server = 3\n", "server: expected a table ([server]), got integer 3"),
        ("[[server]]\n", "server: expected a table ([server]), got an array of tables"),
        (
            "workers = 2\n",
            "workers: expected a table ([workers]), got integer 2; did you mean server.workers?",
        ),
        ("[[admin]]\n", "admin: expected a table ([admin]), got an array of tables"),
        (
            "[workers]\nmax_restarts = 1.5\n",
            "workers.max_restarts: expected an integer, got float 1.5",
        ),
        (
            "[workers]\nheartbeat_interval = '1s'\n",
            'workers.heartbeat_interval: expected a number, got string "1s"',
        ),
        ("[reload]\nmax_surge = true\n", "reload.max_surge: expected an integer, got boolean true"),
        ("[reload]\ntimeout = inf\n", "reload.timeout: expected a finite number, got float inf"),
        (
            "[shutdown]\ndrain_delay = '5'\n",
            'shutdown.drain_delay: expected a number, got string "5"',
        ),
        ("[control]\nsocket = 1\n", "control.socket: expected a string, got integer 1"),
        ("[admin]\nport = '9100'\n", 'admin.port: expected an integer, got string "9100"'),
        ("[admin]\nhost = 127\n", "admin.host: expected a string, got integer 127"),
        ("[health]\npublic = 'yes'\n", 'health.public: expected a boolean, got string "yes"'),
        ("[health]\nlive_path = ['/a']\n", "health.live_path: expected a string, got an array"),
        ("[metrics]\nenabled = 0\n", "metrics.enabled: expected a boolean, got integer 0"),
        ("[metrics]\npublic = 1\n", "metrics.public: expected a boolean, got integer 1"),
        ("[logging]\nfile = false\n", "logging.file: expected a string, got boolean false"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, error: str) -> None:
    assert only_error(tmp_path, text) == error


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[server]\nworkers = 0\n", "server.workers: must be >= 1, got 0"),
        ("[server]\nbacklog = 70000\n", "server.backlog: must be 1-65535, got 70000"),
        ("[http]\nkeep_alive_timeout = 0\n", "http.keep_alive_timeout: must be > 0, got 0"),
        ("[http]\nmax_header_size = 100\n", "http.max_header_size: must be 1024-16777216, got 100"),
        ("[http]\nmax_body_size = -1\n", "http.max_body_size: must be >= 0, got -1"),
        ("[shutdown]\ntimeout = -0.5\n", "shutdown.timeout: must be >= 0, got -0.5"),
        ("[shutdown]\ndrain_delay = -1\n", "shutdown.drain_delay: must be >= 0, got -1"),
        ("[workers]\nmax_restarts = -1\n", "workers.max_restarts: must be >= 0, got -1"),
        ("[workers]\nrestart_window = 0\n", "workers.restart_window: must be > 0, got 0"),
        ("[workers]\ntimeout = -3\n", "workers.timeout: must be > 0, got -3"),
        (
            "[workers]\nheartbeat_interval = 0.0\n",
            "workers.heartbeat_interval: must be > 0, got 0.0",
        ),
        ("[reload]\nmax_surge = -1\n", "reload.max_surge: must be >= 0, got -1"),
        ("[reload]\ntimeout = 0\n", "reload.timeout: must be > 0, got 0"),
        ("[admin]\nport = 65536\n", "admin.port: must be 0-65535, got 65536"),
        ("[admin]\nport = -1\n", "admin.port: must be 0-65535, got -1"),
        ("[[listen]]\nport = 70000\n", "listen[0].port: must be 0-65535, got 70000"),
        ("[[listen]]\nfd = -1\n", "listen[0].fd: must be >= 0, got -1"),
        (
            "[[listen]]\npath = '/x'\nmode = 0o10000\n",
            "listen[0].mode: must be 0o0-0o777, got 0o10000 (decimal 4096); "
            "write the mode in octal, e.g. 0o660",
        ),
        (
            # Decimal 660 is 0o1224, a socket no one could use: say how to write it.
            "[[listen]]\npath = '/x'\nmode = 660\n",
            "listen[0].mode: must be 0o0-0o777, got 0o1224 (decimal 660); write 0o660",
        ),
        (
            "[[listen]]\npath = '/x'\nmode = 0o1777\n",
            "listen[0].mode: must be 0o0-0o777, got 0o1777 (decimal 1023); "
            "write the mode in octal, e.g. 0o660",
        ),
    ],
)
def test_ranges(tmp_path: Path, text: str, error: str) -> None:
    assert only_error(tmp_path, text) == error


def test_port_error_names_the_entry(tmp_path: Path) -> None:
    text = "[[listen]]\nport = 8000\n\n[[listen]]\nport = 70000\n"
    assert only_error(tmp_path, text) == "listen[1].port: must be 0-65535, got 70000"


def test_port_zero_is_allowed_twice(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[[listen]]\nport = 0\n[[listen]]\nport = 0\n"), env={})
    assert [entry.port for entry in config.listen] == [0, 0]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            '[server]\nworker_mode = "proces"\n',
            'server.worker_mode: must be one of auto, process, thread, got "proces"',
        ),
        (
            "[logging]\nformat = 1\n",
            "logging.format: must be one of text, json, got integer 1",
        ),
        (
            '[logging]\nlevel = "verbose"\n',
            "logging.level: must be one of critical, error, warning, info, debug, trace, "
            'got "verbose"',
        ),
    ],
)
def test_enums(tmp_path: Path, text: str, error: str) -> None:
    assert only_error(tmp_path, text) == error


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            'app = "main"\n',
            'app: must look like "module:attribute" or "module:factory()", got "main"',
        ),
        (
            'app = "main:app("\n',
            'app: must look like "module:attribute" or "module:factory()", got "main:app("',
        ),
        (
            '[server]\nroot_path = "api/"\n',
            'server.root_path: must be "" or start with "/" and not end with "/", got "api/"',
        ),
        (
            '[server]\nroot_path = "/"\n',
            'server.root_path: must be "" or start with "/" and not end with "/", got "/"',
        ),
        (
            '[[listen]]\nhost = "bad host"\n',
            'listen[0].host: must be an IP address or a hostname, got "bad host"',
        ),
        (
            '[[listen]]\nhost = "[::1]"\n',
            'listen[0].host: write IPv6 addresses without brackets: "::1", got "[::1]"',
        ),
        ('[[listen]]\npath = ""\n', 'listen[0].path: must not be empty, got ""'),
        (
            '[[listen]]\nhost = "256.1.1.1"\n',
            'listen[0].host: must be an IP address or a hostname, got "256.1.1.1"',
        ),
        (
            '[admin]\nhost = "bad host"\n',
            'admin.host: must be an IP address or a hostname, got "bad host"',
        ),
        ('[control]\nsocket = ""\n', 'control.socket: must not be empty, got ""'),
        ('[logging]\nfile = ""\n', 'logging.file: must not be empty, got ""'),
        (
            '[health]\nlive_path = "health/live"\n',
            'health.live_path: must start with "/" and have no "?", "#" or spaces, '
            'got "health/live"',
        ),
        (
            '[health]\nready_path = ""\n',
            'health.ready_path: must start with "/" and have no "?", "#" or spaces, got ""',
        ),
        (
            '[metrics]\npath = "/metrics?x=1"\n',
            'metrics.path: must start with "/" and have no "?", "#" or spaces, got "/metrics?x=1"',
        ),
        (
            '[metrics]\npath = "/my metrics"\n',
            'metrics.path: must start with "/" and have no "?", "#" or spaces, got "/my metrics"',
        ),
    ],
)
def test_string_shapes(tmp_path: Path, text: str, error: str) -> None:
    assert only_error(tmp_path, text) == error


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            '[[listen]]\nhost = "::1"\npath = "/x"\n',
            "listen[0]: give exactly one of host/port, path or fd, got host and path",
        ),
        (
            "[[listen]]\nport = 1\nfd = 3\n",
            "listen[0]: give exactly one of host/port, path or fd, got port and fd",
        ),
        ("[[listen]]\nbacklog = 5\n", "listen[0]: give one of host/port, path, fd or name"),
        (
            "[[listen]]\nport = 1\nmode = 0o600\n",
            "listen[0].mode: only allowed with path (a Unix socket)",
        ),
        (
            "[[listen]]\nfd = 3\nowner = 'me'\n",
            "listen[0].owner: only allowed with path (a Unix socket)",
        ),
        (
            "[[listen]]\nfd = 3\n[[listen]]\nfd = 3\n",
            "listen[1]: same socket as listen[0] (fd://3)",
        ),
        (
            "[listen]\nport = 1\n",
            "listen: expected an array of tables ([[listen]]), got a table ([listen])",
        ),
        (
            'listen = "127.0.0.1:8000"\n',
            'listen: expected an array of tables ([[listen]]), got string "127.0.0.1:8000"',
        ),
        ("listen = [1]\n", "listen[0]: expected a table, got integer 1"),
        ("listen = []\n", "listen: must not be empty (leave it out to listen on 127.0.0.1:8000)"),
    ],
)
def test_listen_rules(tmp_path: Path, text: str, error: str) -> None:
    assert only_error(tmp_path, text) == error


def test_name_may_label_any_listener(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[[listen]]\nfd = 3\nname = "web"\n'), env={})
    assert config.listen == (ListenConfig(fd=3, name="web"),)
    assert config.listen[0].kind == "fd"


def test_all_errors_reported_at_once_in_order(tmp_path: Path) -> None:
    text = """\
app = "nope"
htp = 1

[server]
workers = "two"
worker_mode = "proces"

[[listen]]
host = "::1"
path = "/x"

[[listen]]
port = 70000

[http]
keepalive_timeout = 3
"""
    assert errors_of(tmp_path, text) == [
        'app: must look like "module:attribute" or "module:factory()", got "nope"',
        "htp: unknown key, did you mean http?",
        'server.workers: expected an integer, got string "two"',
        'server.worker_mode: must be one of auto, process, thread, got "proces"',
        "listen[0]: give exactly one of host/port, path or fd, got host and path",
        "listen[1].port: must be 0-65535, got 70000",
        "http.keepalive_timeout: unknown key, did you mean keep_alive_timeout?",
    ]
    with pytest.raises(ConfigError, match=r"invalid configuration \(7 errors\)"):
        load_config(write(tmp_path, text), env={})


# --- rules between settings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "[workers]\nheartbeat_interval = 40\n",
            "workers.heartbeat_interval: must be less than workers.timeout (30.0), got 40.0",
        ),
        (
            "[workers]\ntimeout = 2\nheartbeat_interval = 2\n",
            "workers.heartbeat_interval: must be less than workers.timeout (2.0), got 2.0",
        ),
        (
            "[workers]\ntimeout = 0.5\n",
            "workers.heartbeat_interval: must be less than workers.timeout (0.5), got 1.0",
        ),
        (
            '[health]\nready_path = "/health/live"\n',
            'health.ready_path: must differ from health.live_path, got "/health/live" for both',
        ),
        (
            '[metrics]\npath = "/health/ready"\n',
            'metrics.path: must differ from health.ready_path, got "/health/ready" for both',
        ),
        (
            '[health]\nlive_path = "/metrics"\n',
            'metrics.path: must differ from health.live_path, got "/metrics" for both',
        ),
        (
            "[admin]\nport = 8000\n",
            "admin.port: same socket as listen[0] (http://127.0.0.1:8000)",
        ),
        (
            '[admin]\nhost = "::1"\nport = 9100\n[[listen]]\nport = 80\n[[listen]]\n'
            'host = "::1"\nport = 9100\n',
            "admin.port: same socket as listen[1] (http://[::1]:9100)",
        ),
    ],
)
def test_rules_between_settings(tmp_path: Path, text: str, error: str) -> None:
    assert only_error(tmp_path, text) == error


@pytest.mark.parametrize(
    "text",
    [
        "[workers]\ntimeout = 2\nheartbeat_interval = 1.99\n",
        '[health]\nlive_path = "/a"\nready_path = "/b"\n[metrics]\npath = "/c"\n',
        "[admin]\nport = 9100\n",
        '[admin]\nhost = "0.0.0.0"\nport = 8000\n',  # not the same address as 127.0.0.1
        "[admin]\nport = 0\n[[listen]]\nport = 0\n",  # port 0 is "no admin listener"
        "[metrics]\nenabled = false\n",
    ],
)
def test_rules_between_settings_allow(tmp_path: Path, text: str) -> None:
    load_config(write(tmp_path, text), env={})


def test_rule_is_skipped_when_a_key_it_reads_is_invalid(tmp_path: Path) -> None:
    text = "[workers]\ntimeout = 0\nheartbeat_interval = 40\n"
    assert errors_of(tmp_path, text) == ["workers.timeout: must be > 0, got 0"]
    text = '[health]\nlive_path = "x"\nready_path = "x"\n'
    assert errors_of(tmp_path, text) == [
        'health.live_path: must start with "/" and have no "?", "#" or spaces, got "x"',
        'health.ready_path: must start with "/" and have no "?", "#" or spaces, got "x"',
    ]
    text = "[admin]\nport = 8000\n[[listen]]\nport = 8000\nfd = 3\n"
    assert errors_of(tmp_path, text) == [
        "listen[0]: give exactly one of host/port, path or fd, got port and fd"
    ]


def test_rule_errors_come_after_the_others(tmp_path: Path) -> None:
    text = """\
[workers]
heartbeat_interval = 31

[health]
ready_path = "/health/live"

[metrics]
enabled = "no"
"""
    assert errors_of(tmp_path, text) == [
        'metrics.enabled: expected a boolean, got string "no"',
        "workers.heartbeat_interval: must be less than workers.timeout (30.0), got 31.0",
        'health.ready_path: must differ from health.live_path, got "/health/live" for both',
    ]
