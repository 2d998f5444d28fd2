"""pounce.config: precedence of defaults < TOML < environment < overrides, and env conversion."""

from __future__ import annotations

from pathlib import Path

import pytest

from pounce.config import (
    AdminConfig,
    HealthConfig,
    Http2Config,
    LimitsConfig,
    ListenConfig,
    LogLevel,
    MetricsConfig,
    ProxyConfig,
    RateLimitConfig,
    ReloadConfig,
    RequestIdConfig,
    TlsClientAuth,
    TlsConfig,
    TlsVersion,
    WorkerMode,
    WorkersConfig,
    config_to_toml,
    env_var_name,
    load_config,
)
from pounce.config.declare import SettingSpec
from pounce.config.schema import by_dotted_key, table
from pounce.config.values import Invalid, parse_text
from pounce.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pounce.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_errors(**kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)  # type: ignore[arg-type]
    return list(info.value.errors)


# --- precedence -----------------------------------------------------------------------------


def test_precedence_defaults_toml_env_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[server]\nworkers = 2\nbacklog = 100\n[http]\nheader_timeout = 3\n"
        "[logging]\nlevel = 'warning'\n",
    )
    env = {"POUNCE_SERVER_WORKERS": "3", "POUNCE_SERVER_BACKLOG": "200"}
    config = load_config(path, env=env, overrides={"server.workers": 4})
    assert config.server.workers == 4  # overrides beat env and TOML
    assert config.server.backlog == 200  # env beats TOML
    assert config.http.header_timeout == 3.0  # TOML beats defaults
    assert config.logging.level is LogLevel.WARNING
    assert config.http.keep_alive_timeout == 5.0  # default
    assert load_config(path, env=env).server.workers == 3
    assert load_config(path, env={}).server.workers == 2


def test_env_none_means_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POUNCE_SERVER_WORKERS", "5")
    assert load_config().server.workers == 5


def test_override_listen_replaces_toml_listeners(tmp_path: Path) -> None:
    path = write(tmp_path, "[[listen]]\nport = 1\n[[listen]]\nport = 2\n")
    config = load_config(
        path, env={}, overrides={"listen": [{"host": "::1", "port": 9000}, {"fd": 3}]}
    )
    assert config.listen == (ListenConfig(host="::1", port=9000), ListenConfig(fd=3))


def test_override_listen_accepts_listen_config_objects() -> None:
    config = load_config(env={}, overrides={"listen": [ListenConfig(port=9000)]})
    assert config.listen == (ListenConfig(host="127.0.0.1", port=9000),)


def test_overrides_example_from_spec() -> None:
    config = load_config(
        env={},
        overrides={
            "app": "x:app",
            "server.workers": 2,
            "logging.level": "debug",
            "listen": [{"host": "::1", "port": 9000}, {"fd": 3}],
        },
    )
    assert config.app == "x:app"
    assert config.server.workers == 2
    assert config.logging.level is LogLevel.DEBUG
    assert [entry.describe() for entry in config.listen] == ["http://[::1]:9000", "fd://3"]


def test_override_none_means_not_given() -> None:
    config = load_config(env={"POUNCE_APP": "a:b"}, overrides={"app": None})
    assert config.app == "a:b"


def test_bad_overrides_are_reported() -> None:
    errors = config_errors(
        env={},
        overrides={
            "server.workers": 0,
            "server.wokers": 1,
            "logging.level": "loud",
            "listen": [{"port": 70000}],
        },
    )
    assert errors == [
        "server.workers: must be >= 1, got 0",
        "server.wokers: unknown key, did you mean server.workers?",
        'logging.level: must be one of critical, error, warning, info, debug, trace, got "loud"',
        "listen[0].port: must be 0-65535, got 70000",
    ]


def test_override_listen_must_be_a_list() -> None:
    assert config_errors(env={}, overrides={"listen": 3}) == [
        "listen: expected an array of tables ([[listen]]), got integer 3"
    ]


# --- environment ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("app", "POUNCE_APP"),
        ("server.workers", "POUNCE_SERVER_WORKERS"),
        ("http.keep_alive_timeout", "POUNCE_HTTP_KEEP_ALIVE_TIMEOUT"),
        ("logging.access_log", "POUNCE_LOGGING_ACCESS_LOG"),
        ("workers.max_restarts", "POUNCE_WORKERS_MAX_RESTARTS"),
        ("reload.max_surge", "POUNCE_RELOAD_MAX_SURGE"),
        ("shutdown.drain_delay", "POUNCE_SHUTDOWN_DRAIN_DELAY"),
        ("control.socket", "POUNCE_CONTROL_SOCKET"),
        ("admin.port", "POUNCE_ADMIN_PORT"),
        ("health.live_path", "POUNCE_HEALTH_LIVE_PATH"),
        ("metrics.enabled", "POUNCE_METRICS_ENABLED"),
        ("logging.file", "POUNCE_LOGGING_FILE"),
    ],
)
def test_env_var_name(key: str, name: str) -> None:
    assert env_var_name(key) == name
    assert by_dotted_key()[key].env_var == name


def test_every_setting_can_be_set_from_env() -> None:
    env = {
        "POUNCE_APP": "pkg.mod:factory()",
        "POUNCE_SERVER_WORKERS": "8",
        "POUNCE_SERVER_WORKER_MODE": "THREAD",
        "POUNCE_SERVER_ROOT_PATH": "/api",
        "POUNCE_SERVER_BACKLOG": "512",
        "POUNCE_SERVER_FACTORY": "yes",
        "POUNCE_HTTP_KEEP_ALIVE_TIMEOUT": "2.5",
        "POUNCE_HTTP_HEADER_TIMEOUT": "7",
        "POUNCE_HTTP_MAX_HEADER_SIZE": "2048",
        "POUNCE_HTTP_MAX_BODY_SIZE": "0",
        "POUNCE_HTTP_MAX_REQUESTS_PER_CONNECTION": "100",
        "POUNCE_SHUTDOWN_TIMEOUT": "1.5",
        "POUNCE_LOGGING_LEVEL": "trace",
        "POUNCE_LOGGING_ACCESS_LOG": "off",
        "POUNCE_LOGGING_FORMAT": "json",
        "POUNCE_LOGGING_FILE": "/tmp/pounce.log",
        "POUNCE_SHUTDOWN_DRAIN_DELAY": "3",
        "POUNCE_WORKERS_MAX_RESTARTS": "7",
        "POUNCE_WORKERS_RESTART_WINDOW": "30",
        "POUNCE_WORKERS_TIMEOUT": "12.5",
        "POUNCE_WORKERS_HEARTBEAT_INTERVAL": "0.5",
        "POUNCE_WORKERS_MAX": "16",
        "POUNCE_RELOAD_MAX_SURGE": "1",
        "POUNCE_RELOAD_TIMEOUT": "45",
        "POUNCE_CONTROL_SOCKET": "/run/ctl.sock",
        "POUNCE_ADMIN_HOST": "::1",
        "POUNCE_ADMIN_PORT": "9100",
        "POUNCE_HEALTH_LIVE_PATH": "/livez",
        "POUNCE_HEALTH_READY_PATH": "/readyz",
        "POUNCE_HEALTH_PUBLIC": "no",
        "POUNCE_METRICS_ENABLED": "off",
        "POUNCE_METRICS_PATH": "/m",
        "POUNCE_METRICS_PUBLIC": "0",
        "POUNCE_SERVER_LOOP": "asyncio",
        "POUNCE_HTTP_PARSER": "H11",
        "POUNCE_HTTP_REQUEST_TIMEOUT": "45",
        "POUNCE_HTTP_WRITE_TIMEOUT": "20",
        "POUNCE_HTTP_DISCONNECT_GRACE": "0",
        "POUNCE_WEBSOCKET_ENABLED": "off",
        "POUNCE_WEBSOCKET_MAX_MESSAGE_SIZE": "1024",
        "POUNCE_WEBSOCKET_PING_INTERVAL": "0",
        "POUNCE_WEBSOCKET_PING_TIMEOUT": "2.5",
        "POUNCE_WEBSOCKET_PER_MESSAGE_DEFLATE": "no",
        "POUNCE_TLS_CERTFILE": "/etc/pounce/cert.pem",
        "POUNCE_TLS_KEYFILE": "/etc/pounce/key.pem",
        "POUNCE_TLS_PASSWORD": "s3cret",
        "POUNCE_TLS_CA_CERTS": "/etc/pounce/ca.pem",
        "POUNCE_TLS_CLIENT_AUTH": "REQUIRED",
        "POUNCE_TLS_MINIMUM_VERSION": "1.3",
        "POUNCE_TLS_ALPN": "http/1.1",
        "POUNCE_TLS_USE_SYSTEM_STORE": "yes",
        "POUNCE_HTTP2_ENABLED": "no",
        "POUNCE_HTTP2_H2C": "off",
        "POUNCE_HTTP2_MAX_CONCURRENT_STREAMS": "50",
        "POUNCE_HTTP2_INITIAL_WINDOW_SIZE": "1048576",
        "POUNCE_HTTP2_MAX_HEADER_LIST_SIZE": "8192",
        "POUNCE_WORKERS_MIN_READY": "2",
        "POUNCE_HTTP2_MAX_RESETS_PER_SECOND": "20",
        "POUNCE_HTTP2_MAX_RESETS": "0",
        "POUNCE_HTTP2_RESET_GRACE": "0.5",
        "POUNCE_SERVER_MIDDLEWARE": "a.b:C, d:E",
        "POUNCE_HTTP_SERVER_TIMING": "yes",
        "POUNCE_LOGGING_SLOW_REQUEST_THRESHOLD": "1.5",
        "POUNCE_PROXY_TRUSTED": "10.0.0.0/8,unix",
        "POUNCE_REQUEST_ID_ENABLED": "off",
        "POUNCE_REQUEST_ID_HEADER": "X-Correlation-ID",
        "POUNCE_LIMITS_MAX_CONNECTIONS": "100",
        "POUNCE_LIMITS_MAX_CONCURRENT_REQUESTS": "10",
        "POUNCE_LIMITS_QUEUE_SIZE": "5",
        "POUNCE_LIMITS_QUEUE_TIMEOUT": "0.5",
        "POUNCE_LIMITS_RETRY_AFTER": "3",
        "POUNCE_LIMITS_RATE_REQUESTS_PER_SECOND": "2.5",
        "POUNCE_LIMITS_RATE_BURST": "4",
        "POUNCE_LIMITS_RATE_MAX_TRACKED_CLIENTS": "50",
    }
    assert set(env) == {s.env_var for s in by_dotted_key().values()}
    config = load_config(env=env)
    assert config.server.middleware == ("a.b:C", "d:E")
    assert config.http.server_timing is True
    assert config.logging.slow_request_threshold == 1.5
    assert config.proxy == ProxyConfig(trusted=("10.0.0.0/8", "unix"))
    assert config.request_id == RequestIdConfig(enabled=False, header="X-Correlation-ID")
    assert config.limits == LimitsConfig(100, 10, 5, 0.5, 3, RateLimitConfig(2.5, 4, 50))
    assert config.server.loop == "asyncio"
    assert config.http.parser == "h11"
    assert (config.http.request_timeout, config.http.write_timeout) == (45.0, 20.0)
    assert config.http.disconnect_grace == 0.0
    assert config.websocket.enabled is False
    assert config.websocket.max_message_size == 1024
    assert config.websocket.ping_interval == 0.0
    assert config.websocket.ping_timeout == 2.5
    assert config.websocket.per_message_deflate is False
    assert config.tls == TlsConfig(
        certfile="/etc/pounce/cert.pem",
        keyfile="/etc/pounce/key.pem",
        password="s3cret",
        ca_certs="/etc/pounce/ca.pem",
        client_auth=TlsClientAuth.REQUIRED,
        minimum_version=TlsVersion.TLS1_3,
        alpn="http/1.1",
        use_system_store=True,
    )
    assert config.http2 == Http2Config(False, False, 50, 1048576, 8192, 20, 0, 0.5)
    assert config.app == "pkg.mod:factory()"
    assert config.server.workers == 8
    assert config.server.worker_mode is WorkerMode.THREAD
    assert config.server.root_path == "/api"
    assert config.server.backlog == 512
    assert config.server.factory is True
    assert config.http.keep_alive_timeout == 2.5
    assert config.http.header_timeout == 7.0
    assert isinstance(config.http.header_timeout, float)
    assert config.http.max_header_size == 2048
    assert config.http.max_body_size == 0
    assert config.http.max_requests_per_connection == 100
    assert config.shutdown.timeout == 1.5
    assert config.logging.level is LogLevel.TRACE
    assert config.logging.access_log is False
    assert config.logging.file == "/tmp/pounce.log"
    assert config.shutdown.drain_delay == 3.0
    assert config.workers == WorkersConfig(7, 30.0, 12.5, 0.5, 16, min_ready=2)
    assert config.reload == ReloadConfig(max_surge=1, timeout=45.0)
    assert config.control.socket == "/run/ctl.sock"
    assert config.admin == AdminConfig(host="::1", port=9100)
    assert config.health == HealthConfig("/livez", "/readyz", public=False)
    assert config.metrics == MetricsConfig(enabled=False, path="/m", public=False)


def test_env_sets_a_supervisor_table(tmp_path: Path) -> None:
    path = write(tmp_path, "[workers]\nmax_restarts = 3\n")
    config = load_config(path, env={"POUNCE_WORKERS_MAX_RESTARTS": "7"})
    assert config.workers.max_restarts == 7
    assert config.workers.timeout == 30.0


def test_env_sets_optional_strings() -> None:
    config = load_config(env={"POUNCE_CONTROL_SOCKET": "ctl.sock"})
    assert config.control.socket == "ctl.sock"
    assert config.logging.file is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_env_booleans(text: str, value: bool) -> None:
    config = load_config(env={"POUNCE_LOGGING_ACCESS_LOG": text})
    assert config.logging.access_log is value


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("POUNCE_SERVER_WORKERS", "two", 'expected an integer, got "two"'),
        ("POUNCE_SERVER_WORKERS", "2.5", 'expected an integer, got "2.5"'),
        ("POUNCE_SERVER_WORKERS", "0", "must be >= 1, got 0"),
        ("POUNCE_HTTP_KEEP_ALIVE_TIMEOUT", "soon", 'expected a number, got "soon"'),
        ("POUNCE_HTTP_KEEP_ALIVE_TIMEOUT", "inf", "expected a finite number, got float inf"),
        (
            "POUNCE_SERVER_FACTORY",
            "maybe",
            'expected a boolean (true/false, yes/no, on/off, 1/0), got "maybe"',
        ),
        (
            "POUNCE_SERVER_WORKER_MODE",
            "proces",
            'must be one of auto, process, thread, got "proces"',
        ),
        (
            "POUNCE_APP",
            "main",
            'must look like "module:attribute" or "module:factory()", got "main"',
        ),
        ("POUNCE_WORKERS_MAX_RESTARTS", "-1", "must be >= 0, got -1"),
        ("POUNCE_WORKERS_MAX_RESTARTS", "many", 'expected an integer, got "many"'),
        ("POUNCE_WORKERS_RESTART_WINDOW", "0", "must be > 0, got 0.0"),
        ("POUNCE_RELOAD_TIMEOUT", "1m", 'expected a number, got "1m"'),
        ("POUNCE_ADMIN_PORT", "99999", "must be 0-65535, got 99999"),
        ("POUNCE_ADMIN_HOST", "[::1]", 'write IPv6 addresses without brackets: "::1", got "[::1]"'),
        (
            "POUNCE_METRICS_ENABLED",
            "sure",
            'expected a boolean (true/false, yes/no, on/off, 1/0), got "sure"',
        ),
        (
            "POUNCE_HEALTH_LIVE_PATH",
            "live",
            'must start with "/" and have no "?", "#" or spaces, got "live"',
        ),
        ("POUNCE_CONTROL_SOCKET", "", 'must not be empty, got ""'),
        ("POUNCE_LOGGING_FILE", "", 'must not be empty, got ""'),
    ],
)
def test_bad_env_values_are_named_by_variable(name: str, text: str, error: str) -> None:
    assert config_errors(env={name: text}) == [f"{name}: {error}"]


def warnings_of(**kwargs: object) -> list[str]:
    warned: list[str] = []
    load_config(warn=warned.append, **kwargs)  # type: ignore[arg-type]
    return warned


def test_unknown_env_variable_in_a_table_namespace_is_a_warning() -> None:
    assert warnings_of(env={"POUNCE_HTTP_KEEPALIVE_TIMEOUT": "3"}) == [
        "POUNCE_HTTP_KEEPALIVE_TIMEOUT: unknown variable (ignored), did you mean "
        "POUNCE_HTTP_KEEP_ALIVE_TIMEOUT?"
    ]


def test_kubernetes_service_links_are_warnings_not_errors() -> None:
    # What the kubelet injects for Services named "pounce-http", "pounce-admin" and "pounce".
    env = {
        "POUNCE_HTTP_PORT": "tcp://10.96.0.12:80",
        "POUNCE_HTTP_PORT_80_TCP": "tcp://10.96.0.12:80",
        "POUNCE_HTTP_SERVICE_HOST": "10.96.0.12",
        "POUNCE_ADMIN_PORT": "tcp://10.96.0.13:9100",
        "POUNCE_PORT": "tcp://10.96.0.14:80",
        "POUNCE_SERVICE_PORT": "80",
        "POUNCE_SERVER_WORKERS": "3",
    }
    warned: list[str] = []
    config = load_config(env=env, warn=warned.append)
    assert config.server.workers == 3
    assert config.admin.port == 0
    assert [(e.host, e.port) for e in config.listen] == [("127.0.0.1", 8000)]
    link = "is a Kubernetes Service link, not a setting (set enableServiceLinks: false in the pod spec)"
    assert warned == [
        f'POUNCE_ADMIN_PORT: ignored, "tcp://10.96.0.13:9100" {link}',
        f'POUNCE_PORT: ignored, "tcp://10.96.0.14:80" {link}',
        'POUNCE_HTTP_PORT: unknown variable (ignored), "tcp://10.96.0.12:80" '
        "is a Kubernetes Service link",
        'POUNCE_HTTP_PORT_80_TCP: unknown variable (ignored), "tcp://10.96.0.12:80" '
        "is a Kubernetes Service link",
        "POUNCE_HTTP_SERVICE_HOST: unknown variable (ignored), "
        "did you mean POUNCE_HTTP_SERVER_TIMING?",
        # any unknown POUNCE_* variable, not only those under a table's prefix
        "POUNCE_SERVICE_PORT: unknown variable (ignored), did you mean POUNCE_SERVER_WORKERS?",
    ]


def test_unknown_variable_warns_through_the_config_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="pounce.config"):
        load_config(env={"POUNCE_HTTP_PORT": "tcp://10.96.0.12:80"})
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["POUNCE_HTTP_PORT"]


def test_bad_value_of_a_known_variable_stays_an_error() -> None:
    assert config_errors(env={"POUNCE_ADMIN_PORT": "http", "POUNCE_HTTP_PORT": "x"}) == [
        'POUNCE_ADMIN_PORT: expected an integer, got "http"'
    ]


@pytest.mark.parametrize(
    ("name", "error"),
    [
        (
            "POUNCE_WORKERS_MAX_RESTART",
            "POUNCE_WORKERS_MAX_RESTART: unknown variable (ignored), did you mean "
            "POUNCE_WORKERS_MAX_RESTARTS?",
        ),
        (
            "POUNCE_RELOAD_SURGE",
            "POUNCE_RELOAD_SURGE: unknown variable (ignored), did you mean POUNCE_RELOAD_MAX_SURGE?",
        ),
        (
            "POUNCE_CONTROL_PATH",
            "POUNCE_CONTROL_PATH: unknown variable (ignored), did you mean POUNCE_CONTROL_SOCKET?",
        ),
        (
            "POUNCE_ADMIN_PROT",
            "POUNCE_ADMIN_PROT: unknown variable (ignored), did you mean POUNCE_ADMIN_PORT?",
        ),
        (
            "POUNCE_HEALTH_PUBLIK",
            "POUNCE_HEALTH_PUBLIK: unknown variable (ignored), did you mean POUNCE_HEALTH_PUBLIC?",
        ),
        (
            "POUNCE_METRICS_ENABLE",
            "POUNCE_METRICS_ENABLE: unknown variable (ignored), did you mean POUNCE_METRICS_ENABLED?",
        ),
        (
            "POUNCE_SHUTDOWN_DRAIN",
            "POUNCE_SHUTDOWN_DRAIN: unknown variable (ignored), did you mean POUNCE_SHUTDOWN_DRAIN_DELAY?",
        ),
    ],
)
def test_unknown_env_variable_in_a_new_table_namespace(name: str, error: str) -> None:
    assert warnings_of(env={name: "1"}) == [error]


def test_other_pounce_variables_are_left_alone() -> None:
    assert load_config(env={"POUNCE_CONFIG": "x", "POUNCE_WORKER_ID": "1", "HOME": "/"})
    assert load_config(env={"POUNCE_WORKERS": "4", "POUNCE_HEALTHY": "1"})


def test_rules_see_every_layer(tmp_path: Path) -> None:
    path = write(tmp_path, "[workers]\nheartbeat_interval = 10\n")
    assert config_errors(path=path, env={"POUNCE_WORKERS_TIMEOUT": "5"}) == [
        "workers.heartbeat_interval: must be less than workers.timeout (5.0), got 10.0"
    ]
    config = load_config(
        path, env={"POUNCE_WORKERS_TIMEOUT": "5"}, overrides={"workers.timeout": 20.0}
    )
    assert (config.workers.heartbeat_interval, config.workers.timeout) == (10.0, 20.0)
    assert config_errors(env={}, overrides={"metrics.path": "/health/live"}) == [
        'metrics.path: must differ from health.live_path, got "/health/live" for both'
    ]


def test_rule_is_skipped_when_a_layer_gave_a_bad_value(tmp_path: Path) -> None:
    path = write(tmp_path, "[workers]\nheartbeat_interval = 40\n")
    assert config_errors(path=path, env={"POUNCE_WORKERS_TIMEOUT": "soon"}) == [
        'POUNCE_WORKERS_TIMEOUT: expected a number, got "soon"'
    ]
    assert config_errors(env={}, overrides={"admin.port": 8000, "listen": [{"port": -1}]}) == [
        "listen[0].port: must be 0-65535, got -1"
    ]


def test_admin_rule_sees_listen_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[admin]\nport = 9000\n")
    assert config_errors(path=path, env={}, overrides={"listen": [{"port": 9000}]}) == [
        "admin.port: same socket as listen[0] (http://127.0.0.1:9000)"
    ]


def test_env_and_toml_errors_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nworkers = 0\n")
    errors = config_errors(path=path, env={"POUNCE_SERVER_BACKLOG": "x"})
    assert errors == [
        "server.workers: must be >= 1, got 0",
        'POUNCE_SERVER_BACKLOG: expected an integer, got "x"',
    ]


def _mode_spec() -> SettingSpec:
    listen = table("listen")
    assert listen is not None
    spec = listen.setting("mode")
    assert spec is not None
    return spec


@pytest.mark.parametrize("text", ["0o660", "660", "0660"])
def test_octal_text_for_modes(text: str) -> None:
    assert parse_text(_mode_spec(), text) == 0o660


def test_octal_text_out_of_range() -> None:
    with pytest.raises(Invalid, match=r"must be 0o0-0o777, got 0o1000 \(decimal 512\)"):
        parse_text(_mode_spec(), "1000")


# --- the single listener's address: POUNCE_HOST/PORT, --host/--port, PORT, WEB_CONCURRENCY ---


def addresses(config: object) -> list[tuple[object, ...]]:
    return [
        (e.kind, e.host, e.port, e.path, e.backlog)
        for e in config.listen  # type: ignore[attr-defined]
    ]


def test_address_precedence_defaults_toml_env_flags(tmp_path: Path) -> None:
    path = write(tmp_path, '[[listen]]\nhost = "0.0.0.0"\nport = 8001\nbacklog = 64\n')
    assert addresses(load_config(env={})) == [("tcp", "127.0.0.1", 8000, None, None)]
    assert addresses(load_config(path, env={})) == [("tcp", "0.0.0.0", 8001, None, 64)]
    # Each layer changes only what it names; the listener keeps the rest (here its backlog).
    env = {"POUNCE_PORT": "8002"}
    assert addresses(load_config(path, env=env)) == [("tcp", "0.0.0.0", 8002, None, 64)]
    env = {"POUNCE_HOST": "::1"}
    assert addresses(load_config(path, env=env)) == [("tcp", "::1", 8001, None, 64)]
    env = {"POUNCE_HOST": "::1", "POUNCE_PORT": "8002"}
    config = load_config(path, env=env, overrides={"listen.port": [8003]})
    assert addresses(config) == [("tcp", "::1", 8003, None, 64)]
    config = load_config(path, env=env, overrides={"listen.host": ["127.0.0.2"]})
    assert addresses(config) == [("tcp", "127.0.0.2", 8002, None, 64)]


def test_port_flag_keeps_the_files_host_and_other_listeners(tmp_path: Path) -> None:
    path = write(tmp_path, '[[listen]]\nhost = "0.0.0.0"\n[[listen]]\npath = "/run/p.sock"\n')
    config = load_config(path, env={}, overrides={"listen.port": [9000]})
    assert addresses(config) == [
        ("tcp", "0.0.0.0", 9000, None, None),
        ("unix", None, None, "/run/p.sock", None),
    ]


def test_several_hosts_or_ports_replace_the_listeners(tmp_path: Path) -> None:
    path = write(tmp_path, '[[listen]]\nhost = "0.0.0.0"\nport = 8001\n')
    config = load_config(path, env={}, overrides={"listen.host": ["127.0.0.1", "::1"]})
    assert addresses(config) == [
        ("tcp", "127.0.0.1", 8001, None, None),
        ("tcp", "::1", 8001, None, None),
    ]
    config = load_config(
        path, env={}, overrides={"listen.port": [9000], "listen": [{"path": "/run/p.sock"}]}
    )
    assert addresses(config) == [
        ("tcp", "0.0.0.0", 9000, None, None),
        ("unix", None, None, "/run/p.sock", None),
    ]


def test_platform_port_and_web_concurrency_only_where_nothing_is_set(tmp_path: Path) -> None:
    platform = {"PORT": "5000", "WEB_CONCURRENCY": "3"}
    config = load_config(env=platform)
    assert addresses(config) == [("tcp", "127.0.0.1", 5000, None, None)]
    assert config.server.workers == 3
    # A file host without a port: PORT is the port.
    path = write(tmp_path, '[[listen]]\nhost = "0.0.0.0"\n')
    assert addresses(load_config(path, env=platform)) == [("tcp", "0.0.0.0", 5000, None, None)]
    # Anything explicit wins: the file, POUNCE_*, a flag.
    path = write(tmp_path, "[[listen]]\nport = 8001\n[server]\nworkers = 2\n")
    config = load_config(path, env=platform)
    assert (addresses(config), config.server.workers) == (
        [("tcp", "127.0.0.1", 8001, None, None)],
        2,
    )
    env = {**platform, "POUNCE_PORT": "8002", "POUNCE_SERVER_WORKERS": "4"}
    config = load_config(env=env)
    assert (config.listen[0].port, config.server.workers) == (8002, 4)
    config = load_config(env=platform, overrides={"listen.port": [8003], "server.workers": 5})
    assert (config.listen[0].port, config.server.workers) == (8003, 5)
    # POUNCE_HOST alone names no port: PORT still counts.
    config = load_config(env={**platform, "POUNCE_HOST": "0.0.0.0"})
    assert addresses(config) == [("tcp", "0.0.0.0", 5000, None, None)]
    # Unix sockets and inherited fds have no port to set.
    path = write(tmp_path, '[[listen]]\npath = "/run/p.sock"\n')
    assert addresses(load_config(path, env=platform)) == [("unix", None, None, "/run/p.sock", None)]


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"POUNCE_PORT": "http"}, 'POUNCE_PORT: expected an integer, got "http"'),
        ({"POUNCE_PORT": "70000"}, "POUNCE_PORT: must be 0-65535, got 70000"),
        (
            {"POUNCE_HOST": "[::1]"},
            'POUNCE_HOST: write IPv6 addresses without brackets: "::1", got "[::1]"',
        ),
        ({"PORT": "x"}, 'PORT: expected an integer, got "x"'),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY: must be >= 1, got 0"),
    ],
)
def test_bad_address_and_platform_values_are_errors(env: dict[str, str], error: str) -> None:
    assert config_errors(env=env) == [error]


def test_lists_and_sub_tables_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "pounce.toml"
    path.write_text(
        "[proxy]\n"
        'trusted = ["10.0.0.0/8", "::1", "unix"]\n'
        "[server]\n"
        'middleware = ["pkg.mw:Outer", "pkg.mw:Inner"]\n'
        "[limits]\n"
        "max_concurrent_requests = 8\n"
        "[limits.rate]\n"
        "requests_per_second = 5\n"
        "burst = 10\n"
    )
    config = load_config(str(path))
    assert config.proxy.trusted == ("10.0.0.0/8", "::1", "unix")
    assert config.server.middleware == ("pkg.mw:Outer", "pkg.mw:Inner")
    assert config.limits.max_concurrent_requests == 8
    assert config.limits.rate == RateLimitConfig(requests_per_second=5.0, burst=10)
    # the effective config reads back the same
    again = tmp_path / "again.toml"
    again.write_text(config_to_toml(config))
    assert load_config(str(again)) == config


def test_bad_lists_and_sub_tables_name_the_key_path(tmp_path: Path) -> None:
    path = tmp_path / "pounce.toml"
    path.write_text(
        "[proxy]\n"
        'trusted = ["10.0.0.0/33"]\n'
        "[server]\n"
        'middleware = "pkg:Mw"\n'
        "[limits.rate]\n"
        "burts = 3\n"
        "requests_per_second = -1\n"
        "[limits]\n"
        "rte = 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    text = str(info.value)
    assert (
        'proxy.trusted: [0]: must be an IP address, a CIDR network, "unix" or "*", got "10.0.0.0/33"'
        in text
    )
    assert "server.middleware: expected an array of strings, got string" in text
    assert "limits.rate.burts: unknown key, did you mean burst?" in text
    assert "limits.rate.requests_per_second: must be >= 0, got -1" in text
    assert "limits.rte: unknown key, did you mean rate?" in text


def test_list_settings_from_flags_and_env() -> None:
    config = load_config(
        env={"POUNCE_PROXY_TRUSTED": "127.0.0.1, unix"},
        overrides={"server.middleware": ["a:B"]},
    )
    assert config.proxy.trusted == ("127.0.0.1", "unix")
    assert config.server.middleware == ("a:B",)
    assert load_config(env={"POUNCE_PROXY_TRUSTED": ""}).proxy.trusted == ()
    with pytest.raises(ConfigError, match=r"POUNCE_SERVER_MIDDLEWARE: \[0\]: must be"):
        load_config(env={"POUNCE_SERVER_MIDDLEWARE": "not a path"})
