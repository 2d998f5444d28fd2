"""The configuration as data: one frozen dataclass per TOML table.

Each setting is declared here, once, with :func:`~pounce.config.declare.setting`;
the TOML key, environment variable, flag and docs row all come from that.
Class docstrings are the docs' section introductions.  These classes do no
I/O and open no sockets: the loader validates, the ``net`` layer binds.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import os
import re
from dataclasses import dataclass

from pounce.config.declare import setting
from pounce.config.values import quote

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "AdminConfig",
    "Config",
    "ControlConfig",
    "HealthConfig",
    "Http2Config",
    "HttpConfig",
    "LimitsConfig",
    "ListenConfig",
    "LogFormat",
    "LogLevel",
    "LoggingConfig",
    "MetricsConfig",
    "ProxyConfig",
    "RateLimitConfig",
    "ReloadConfig",
    "RequestIdConfig",
    "ServerConfig",
    "ShutdownConfig",
    "TlsClientAuth",
    "TlsConfig",
    "TlsVersion",
    "WebSocketConfig",
    "WorkerMode",
    "WorkersConfig",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

_IDENT_PATH = r"[^\W\d]\w*(?:\.[^\W\d]\w*)*"
_APP_RE = re.compile(rf"{_IDENT_PATH}:{_IDENT_PATH}(?:\(\))?")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


class WorkerMode(enum.StrEnum):
    """How workers run."""

    AUTO = "auto"
    PROCESS = "process"
    THREAD = "thread"


class LogFormat(enum.StrEnum):
    """How log records are written."""

    TEXT = "text"
    JSON = "json"


class LogLevel(enum.StrEnum):
    """Log verbosity, from quietest to loudest."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"
    TRACE = "trace"


def _check_app(value: str) -> str | None:
    if _APP_RE.fullmatch(value):
        return None
    return f'must look like "module:attribute" or "module:factory()", got {quote(value)}'


def _check_root_path(value: str) -> str | None:
    if value == "" or (value.startswith("/") and not value.endswith("/")):
        return None
    return f'must be "" or start with "/" and not end with "/", got {quote(value)}'


def _check_host(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return None
    if value.startswith("[") and value.endswith("]"):
        return f"write IPv6 addresses without brackets: {quote(value[1:-1])}, got {quote(value)}"
    name = value.removesuffix(".")
    labels = name.split(".")
    numeric = all(label.isdigit() for label in labels)  # "256.1.1.1" is a bad address
    if 0 < len(name) <= 253 and not numeric and all(_HOST_LABEL.fullmatch(p) for p in labels):
        return None
    return f"must be an IP address or a hostname, got {quote(value)}"


def _check_not_empty(value: str) -> str | None:
    return None if value else 'must not be empty, got ""'


def _check_url_path(value: str) -> str | None:
    # Matched against the request target's path, which never holds a query,
    # a fragment or whitespace (RFC 9112 section 3.2).
    if value.startswith("/") and not any(c in value for c in "?# \t\r\n"):
        return None
    return f'must start with "/" and have no "?", "#" or spaces, got {quote(value)}'


_URL_PATH_RULE = 'starts with "/"; no "?", "#" or spaces'

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _check_header_name(value: str) -> str | None:
    if not _TOKEN.fullmatch(value):
        return f"must be an HTTP header name (a token, RFC 9110 §5.1), got {quote(value)}"
    return None


def _check_trusted(value: tuple[str, ...]) -> str | None:
    for i, item in enumerate(value):
        if item in ("unix", "*"):
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f'[{i}]: must be an IP address, a CIDR network, "unix" or "*", got {quote(item)}'
    return None


def _check_middleware(value: tuple[str, ...]) -> str | None:
    for i, item in enumerate(value):
        if not _APP_RE.fullmatch(item) or item.endswith("()"):
            return f'[{i}]: must be "module:Class", got {quote(item)}'
    return None


class LoopKind(enum.StrEnum):
    """``server.loop``: which event loop implementation a worker runs."""

    AUTO = "auto"
    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


class HttpParser(enum.StrEnum):
    """``http.parser``: which HTTP/1.1 engine parses requests."""

    FAST = "fast"
    H11 = "h11"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``[server]``: the processes and what they serve."""

    workers: int = setting(1, doc="Number of workers serving requests.", minimum=1)
    # setting() returns a dataclasses.field(), which ruff's RUF009 does not know.
    worker_mode: WorkerMode = setting(  # noqa: RUF009
        WorkerMode.AUTO,
        doc=(
            "How workers run: `process` (one process each), `thread` (threads in one "
            "process, for free-threaded Python) or `auto` (threads when the GIL is disabled, "
            "else processes)."
        ),
    )
    root_path: str = setting(
        "",
        doc="ASGI `root_path`: the URL prefix the application is mounted under behind a proxy.",
        check=_check_root_path,
        rule='"" or "/prefix" (no trailing "/")',
        metavar="PATH",
    )
    backlog: int = setting(
        2048,
        doc="Listen backlog (queued connections) for listeners that do not set their own.",
        minimum=1,
        maximum=65535,
        metavar="N",
    )
    factory: bool = setting(
        False,
        doc="Treat `app` as a factory and call it with no arguments, even without `()`.",
    )
    loop: LoopKind = setting(  # noqa: RUF009
        LoopKind.AUTO,
        doc=(
            "Event loop: `asyncio`, `uvloop` (needs the `pounce[fast]` extra) or `auto` "
            "(uvloop when it is installed, else asyncio)."
        ),
    )
    middleware: tuple[str, ...] = setting(
        (),
        doc=(
            "ASGI 3 middleware classes (`module:Class`) wrapped around the app, the first "
            "outermost; each is called as `Class(app)`."
        ),
        flags=("--middleware",),
        check=_check_middleware,
        rule='"module:Class" each',
        metavar="MODULE:CLASS,...",
    )


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """``[[listen]]``: one socket to accept connections on; repeat the table for more.

    Each entry is exactly one of: TCP (`host` and/or `port`; a `port` alone
    means host `127.0.0.1`, a `host` alone means port 8000), a Unix socket
    (`path`, optionally with `mode`, `owner` and `group`) or an inherited file
    descriptor (`fd`).  `name` may label any entry, or stand alone for a
    socket systemd passes by its `FileDescriptorName`.  Without any
    `[[listen]]` Pounce listens on `127.0.0.1:8000`.
    """

    host: str | None = setting(
        None,
        doc="TCP host: an IPv4 or IPv6 address (`0.0.0.0`, `::1`) or a hostname (`localhost`).",
        check=_check_host,
        rule="IP address or hostname",
    )
    port: int | None = setting(None, doc="TCP port; 0 picks a free port.", minimum=0, maximum=65535)
    path: str | None = setting(None, doc="Unix socket path.", check=_check_not_empty)
    mode: int | None = setting(
        None,
        doc="File mode of the Unix socket, written in octal: `0o660` (not `660`, a decimal).",
        minimum=0,
        maximum=0o777,
        octal=True,
    )
    owner: str | None = setting(
        None, doc="Owner of the Unix socket: a user name or a uid.", check=_check_not_empty
    )
    group: str | None = setting(
        None, doc="Group of the Unix socket: a group name or a gid.", check=_check_not_empty
    )
    fd: int | None = setting(
        None, doc="An inherited, already listening file descriptor.", minimum=0
    )
    name: str | None = setting(
        None,
        doc="systemd `FileDescriptorName` of a socket-activated listener (reserved).",
        check=_check_not_empty,
    )
    backlog: int | None = setting(
        None,
        doc="Listen backlog for this socket; unset means `server.backlog`.",
        minimum=1,
        maximum=65535,
    )
    tls: bool | None = setting(
        None,
        doc=(
            "Serve TLS on this socket. Unset means: TLS on TCP and fd listeners when "
            "`tls.certfile` is set, plain on Unix sockets; `false` keeps a plain listener "
            "next to TLS ones."
        ),
    )

    def backlog_or(self, default: int) -> int:
        """The backlog to listen with: this listener's own, else ``default``
        (``server.backlog``; see :meth:`Config.backlog_for`)."""
        return self.backlog if self.backlog is not None else default

    @property
    def kind(self) -> str:
        """``"tcp"``, ``"unix"``, ``"fd"`` or ``"named"`` (only a systemd name)."""
        if self.host is not None or self.port is not None:
            return "tcp"
        if self.path is not None:
            return "unix"
        if self.fd is not None:
            return "fd"
        return "named"

    def describe(self) -> str:
        """A URL-like text for logs: ``http://[::1]:8000``, ``unix:/run/x.sock``, ``fd://3``."""
        kind = self.kind
        if kind == "tcp":
            host = self.host if self.host is not None else DEFAULT_HOST
            port = self.port if self.port is not None else DEFAULT_PORT
            return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        if kind == "unix":
            return f"unix:{self.path}"
        if kind == "fd":
            return f"fd://{self.fd}"
        return f"systemd:{self.name}"


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """``[http]``: limits and timeouts of HTTP connections."""

    keep_alive_timeout: float = setting(
        5.0,
        doc="Close an idle keep-alive connection after this long.",
        flags=("--keep-alive-timeout", "--timeout-keep-alive"),
        minimum=0,
        exclusive_minimum=True,
        unit="seconds",
    )
    header_timeout: float = setting(
        10.0,
        doc="Close a connection whose request head has not arrived in full after this long.",
        minimum=0,
        exclusive_minimum=True,
        unit="seconds",
    )
    max_header_size: int = setting(
        65536,
        doc="Largest request head (request line and headers) accepted; larger gets 431.",
        minimum=1024,
        maximum=16 * 1024 * 1024,
        unit="bytes",
    )
    max_body_size: int = setting(
        100 * 1024 * 1024,
        doc="Largest request body accepted; larger gets 413. 0 means no limit.",
        minimum=0,
        unit="bytes",
    )
    max_requests_per_connection: int = setting(
        0,
        doc="Close a connection after serving this many requests. 0 means no limit.",
        minimum=0,
        metavar="N",
    )
    parser: HttpParser = setting(  # noqa: RUF009
        HttpParser.FAST,
        doc=(
            "HTTP/1.1 request parser: `fast` (Pounce's own) or `h11` (the reference engine, "
            "with the same strictness checks)."
        ),
        flags=("--http-parser",),
    )
    request_timeout: float = setting(
        30.0,
        doc=(
            "Answer 408 and close when a request body makes no progress for this long "
            "(an app already responding gets `http.disconnect` and the connection is closed)."
        ),
        minimum=0,
        exclusive_minimum=True,
        unit="seconds",
    )
    write_timeout: float = setting(
        30.0,
        doc=(
            "Drop a connection whose client has read nothing of a full send buffer for this long."
        ),
        minimum=0,
        exclusive_minimum=True,
        unit="seconds",
    )
    disconnect_grace: float = setting(
        10.0,
        doc=(
            "After a client went away mid-request, give the app this long to return "
            "(it gets `http.disconnect`) before cancelling it."
        ),
        minimum=0,
        unit="seconds",
    )
    server_timing: bool = setting(
        False,
        doc=(
            "Add `Server-Timing: app;dur=...` (ms from request head to response start) to "
            "responses, and `queue;dur=...` when the request waited in the `[limits]` queue."
        ),
        flags=("--server-timing",),
    )


class TlsClientAuth(enum.StrEnum):
    """``tls.client_auth``: whether clients must present a certificate (mTLS)."""

    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


class TlsVersion(enum.StrEnum):
    """``tls.minimum_version``: the oldest TLS version accepted."""

    TLS1_2 = "1.2"
    TLS1_3 = "1.3"


def _check_alpn(value: str) -> str | None:
    names = [n.strip() for n in value.split(",")]
    if names and all(n in ("h2", "http/1.1") for n in names):
        return None
    return f'must be a comma-separated list of "h2" and "http/1.1", got {quote(value)}'


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """``[tls]``: certificates for TLS listeners (see `[[listen]]` `tls`).

    Each worker generation builds its own TLS context, so `pounce ctl reload`
    serves certificate files replaced on disk.  TLS 1.2 is the oldest version
    ever accepted.
    """

    certfile: str | None = setting(
        None,
        doc="PEM certificate chain (leaf first). Setting it turns TLS on for TCP listeners.",
        flags=("--tls-certfile", "--ssl-certfile"),
        check=_check_not_empty,
        metavar="PATH",
    )
    keyfile: str | None = setting(
        None,
        doc="PEM private key; unset means the key is in `certfile`.",
        flags=("--tls-keyfile", "--ssl-keyfile"),
        check=_check_not_empty,
        metavar="PATH",
    )
    password: str | None = setting(
        None,
        doc="Password of an encrypted `keyfile` (prefer the environment variable to the file).",
        flags=(),
    )
    ca_certs: str | None = setting(
        None,
        doc="PEM bundle of CAs that client certificates are verified against (mTLS).",
        flags=("--tls-ca-certs",),
        check=_check_not_empty,
        metavar="PATH",
    )
    client_auth: TlsClientAuth = setting(  # noqa: RUF009
        TlsClientAuth.NONE,
        doc="Client certificates: `none`, `optional` (verified when sent) or `required`.",
        flags=("--tls-client-auth",),
    )
    minimum_version: TlsVersion = setting(  # noqa: RUF009
        TlsVersion.TLS1_2,
        doc="Oldest TLS version accepted: `1.2` or `1.3`.",
        flags=("--tls-minimum-version",),
    )
    alpn: str = setting(
        "h2,http/1.1",
        doc="ALPN protocols offered, most preferred first (`h2` only when HTTP/2 is enabled).",
        flags=("--tls-alpn",),
        check=_check_alpn,
        rule='comma-separated "h2", "http/1.1"',
    )
    use_system_store: bool = setting(
        False,
        doc=(
            "Also trust the system's CA store for client certificates (OpenSSL's default"
            " paths or `SSL_CERT_FILE`, else the distribution's bundle)."
        ),
        flags=("--tls-use-system-store",),
    )


@dataclass(frozen=True, slots=True)
class Http2Config:
    """``[http2]``: HTTP/2 over TLS (ALPN `h2`) and cleartext (h2c), needs `pounce[h2]`."""

    enabled: bool = setting(True, doc="Offer HTTP/2.", flags=("--http2",))
    h2c: bool = setting(
        True,
        doc=(
            "On plain listeners, accept HTTP/2 with prior knowledge and `Upgrade: h2c` "
            "(RFC 7540 §3.2)."
        ),
        flags=("--h2c",),
    )
    max_concurrent_streams: int = setting(
        100,
        doc="SETTINGS_MAX_CONCURRENT_STREAMS: streams a client may open at once.",
        flags=("--http2-max-concurrent-streams",),
        minimum=1,
        maximum=2**31 - 1,
        metavar="N",
    )
    initial_window_size: int = setting(
        65535,
        doc="SETTINGS_INITIAL_WINDOW_SIZE: request body bytes a stream may send unread.",
        flags=("--http2-initial-window-size",),
        minimum=1,
        maximum=2**31 - 1,
        unit="bytes",
    )
    max_header_list_size: int = setting(
        65536,
        doc="SETTINGS_MAX_HEADER_LIST_SIZE: largest request header list accepted.",
        flags=("--http2-max-header-list-size",),
        minimum=1024,
        maximum=16 * 1024 * 1024,
        unit="bytes",
    )
    max_resets_per_second: int = setting(
        100,
        doc=(
            "Stream resets a connection may cause per second (its RST_STREAM, malformed or"
            " refused streams; as large a burst) before GOAWAY ENHANCE_YOUR_CALM closes it"
            " (rapid reset, CVE-2023-44487); `0`: no limit."
        ),
        flags=("--http2-max-resets-per-second",),
        minimum=0,
        metavar="N",
    )
    max_resets: int = setting(
        10000,
        doc="Stream resets a connection may cause in its lifetime, likewise; `0`: no limit.",
        flags=("--http2-max-resets",),
        minimum=0,
        metavar="N",
    )
    reset_grace: float = setting(
        1.0,
        doc=(
            "The app of a stream the client reset gets `http.disconnect`, and is cancelled"
            " this long after; it counts toward `max_concurrent_streams` until it returns."
        ),
        flags=("--http2-reset-grace",),
        minimum=0,
        unit="seconds",
    )


@dataclass(frozen=True, slots=True)
class ShutdownConfig:
    """``[shutdown]``: how the server drains and how workers stop."""

    timeout: float = setting(
        30.0,
        doc="On shutdown or reload, wait this long for requests in flight before closing them.",
        flags=("--shutdown-timeout", "--timeout-graceful-shutdown"),
        minimum=0,
        unit="seconds",
    )
    drain_delay: float = setting(
        0.0,
        doc=(
            "On `pounce ctl drain`, keep serving this long, with the readiness path answering "
            "503, so load balancers notice first; then new connections are refused at once."
        ),
        minimum=0,
        unit="seconds",
    )


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """``[logging]``: what is logged and how."""

    level: LogLevel = setting(  # noqa: RUF009
        LogLevel.INFO, doc="Least severe level logged.", flags=("--log-level",)
    )
    access_log: bool = setting(True, doc="Log one line per request.")
    format: LogFormat = setting(  # noqa: RUF009
        LogFormat.TEXT,
        doc="`text` for people, `json` for one JSON object per line.",
        flags=("--log-format",),
    )
    file: str | None = setting(
        None,
        doc=(
            "Append log lines to this file instead of writing them to stderr; it is reopened "
            "on SIGUSR1, after log rotation. Unset means stderr."
        ),
        flags=("--log-file",),
        check=_check_not_empty,
        metavar="PATH",
    )
    slow_request_threshold: float = setting(
        0.0,
        doc=(
            "Log a warning for each request that takes longer than this (method, path, "
            "status, duration, request ID); 0 means off."
        ),
        flags=("--slow-request-threshold",),
        minimum=0,
        unit="seconds",
    )


@dataclass(frozen=True, slots=True)
class WorkersConfig:
    """``[workers]``: how the supervisor keeps workers alive: crash budget and heartbeats."""

    max_restarts: int = setting(
        5,
        doc=(
            "Crash budget: more worker restarts than this within `restart_window` stops the "
            "supervisor; 0 stops it at the first restart."
        ),
        minimum=0,
        metavar="N",
    )
    restart_window: float = setting(
        60.0,
        doc="The sliding window `max_restarts` is counted over.",
        minimum=0,
        exclusive_minimum=True,
        unit="seconds",
    )
    timeout: float = setting(
        30.0,
        doc=(
            "A worker whose event loop has not sent a heartbeat for this long is hung: "
            "its stacks are dumped, it is killed and replaced."
        ),
        flags=("--worker-timeout",),
        minimum=0,
        exclusive_minimum=True,
        unit="seconds",
    )
    heartbeat_interval: float = setting(
        1.0,
        doc="How often each worker's event loop sends a heartbeat; less than `workers.timeout`.",
        minimum=0,
        exclusive_minimum=True,
        unit="seconds",
    )
    max: int | None = setting(
        None,
        doc=(
            "The most workers the daemon runs: `server.workers`, `pounce ctl scale` and SIGTTIN "
            "are refused above it. Unset: 4 x the CPUs the daemon may use, or "
            "`server.workers` if that is more."
        ),
        flags=("--workers-max",),
        minimum=1,
        metavar="N",
    )
    min_ready: int = setting(
        1,
        doc=(
            "`/health/ready` answers 503 while fewer workers than this are ready (all of them "
            "when fewer are configured): a daemon whose workers crashed or cannot be started "
            "is taken out of rotation."
        ),
        minimum=1,
        metavar="N",
    )


@dataclass(frozen=True, slots=True)
class ReloadConfig:
    """``[reload]``: replacing every worker by a new generation (SIGHUP, `pounce ctl reload`)."""

    max_surge: int = setting(
        0,
        doc="How many workers of the new generation start at once; 0 means all of them.",
        flags=("--reload-max-surge",),
        minimum=0,
        metavar="N",
    )
    timeout: float = setting(
        60.0,
        doc="The new generation must be ready within this long, else the reload fails.",
        flags=("--reload-timeout",),
        minimum=0,
        exclusive_minimum=True,
        unit="seconds",
    )


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """``[control]``: the control socket that `pounce ctl` talks to."""

    socket: str | None = setting(
        None,
        doc="Path of the control socket (a Unix socket); unset means the default location.",
        flags=("--control-socket",),
        check=_check_not_empty,
        metavar="PATH",
    )


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """``[admin]``: an optional listener of its own, served by the supervisor.

    It answers the health and metrics paths, whatever the workers are doing,
    for probes and scrapes that should not reach the public listeners.
    """

    host: str = setting(
        DEFAULT_HOST,
        doc="Host of the admin listener: an IP address or a hostname.",
        flags=("--admin-host",),
        check=_check_host,
        rule="IP address or hostname",
        metavar="HOST",
    )
    port: int = setting(
        0,
        doc=(
            "TCP port of the admin listener; 0 means no admin listener (then health and "
            "metrics are served only where `health.public`/`metrics.public` say)."
        ),
        flags=("--admin-port",),
        minimum=0,
        maximum=65535,
    )


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """``[health]``: the liveness and readiness paths, for probes and load balancers."""

    live_path: str = setting(
        "/health/live",
        doc="Liveness path: answers 200 while the server runs.",
        flags=("--health-live-path",),
        check=_check_url_path,
        rule=_URL_PATH_RULE,
        metavar="PATH",
    )
    ready_path: str = setting(
        "/health/ready",
        doc=(
            "Readiness path: answers 200 while workers take requests, "
            "else 503 (starting, draining)."
        ),
        flags=("--health-ready-path",),
        check=_check_url_path,
        rule=_URL_PATH_RULE,
        metavar="PATH",
    )
    public: bool = setting(
        False,
        doc=(
            "Also answer these paths on the public listeners, before the application (which "
            "then never sees them). Off: the application owns every path of its listeners "
            "and the paths are served on the admin listener only."
        ),
        flags=("--health-public",),
    )


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``[metrics]``: request metrics of all workers added up, in the Prometheus text format."""

    enabled: bool = setting(True, doc="Serve metrics.", flags=("--metrics",))
    path: str = setting(
        "/metrics",
        doc="Path the metrics are served at.",
        flags=("--metrics-path",),
        check=_check_url_path,
        rule=_URL_PATH_RULE,
        metavar="PATH",
    )
    public: bool = setting(
        False,
        doc=(
            "Also answer the path on the public listeners, before the application (which "
            "then never sees it). Off: it is served on the admin listener only."
        ),
        flags=("--metrics-public",),
    )


@dataclass(frozen=True, slots=True)
class WebSocketConfig:
    """``[websocket]``: WebSocket connections (RFC 6455), needs `pounce[ws]`."""

    enabled: bool = setting(
        True,
        doc="Accept WebSocket upgrades; when off the app sees them as plain HTTP requests.",
        flags=("--ws",),
    )
    max_message_size: int = setting(
        16 * 1024 * 1024,
        doc="Largest message accepted from a client; larger closes with 1009.",
        flags=("--ws-max-size",),
        minimum=1,
        unit="bytes",
    )
    ping_interval: float = setting(
        20.0,
        doc="Send a ping this often on an open connection; 0 means never.",
        flags=("--ws-ping-interval",),
        minimum=0,
        unit="seconds",
    )
    ping_timeout: float = setting(
        20.0,
        doc="Close a connection (1011) whose pong has not arrived this long after a ping.",
        flags=("--ws-ping-timeout",),
        minimum=0,
        exclusive_minimum=True,
        unit="seconds",
    )
    per_message_deflate: bool = setting(
        True,
        doc="Compress messages (permessage-deflate, RFC 7692) when the client offers it.",
        flags=("--ws-per-message-deflate",),
    )


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """``[proxy]``: which peers' forwarding headers are believed.

    From a trusted peer, `Forwarded` (RFC 7239) or else `X-Forwarded-For`,
    `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Forwarded-Port` set the scope's
    `client`, `scheme`, `server` and the `host` header the app sees; from any other
    peer they pass through untouched.
    """

    trusted: tuple[str, ...] = setting(
        (),
        doc=(
            "Peers whose forwarding headers are applied: IP addresses or CIDR networks, "
            '`"unix"` for peers on Unix sockets, `"*"` for every peer. Empty: trust nobody.'
        ),
        flags=("--forwarded-allow-ips",),
        check=_check_trusted,
        rule='IP addresses, CIDR networks, "unix" or "*"',
        metavar="ADDRESSES",
    )


@dataclass(frozen=True, slots=True)
class RequestIdConfig:
    """``[request_id]``: an ID for every request, in the scope, the response and the logs."""

    enabled: bool = setting(
        True,
        doc=(
            'Give every request an ID: `scope["extensions"]["request_id"]`, a response '
            "header, the access log and the error log. A trusted peer's ID is kept."
        ),
        flags=("--request-id",),
    )
    header: str = setting(
        "X-Request-ID",
        doc="Header the ID is read from (trusted peers only) and written to.",
        flags=("--request-id-header",),
        check=_check_header_name,
        rule="an HTTP header name",
        metavar="NAME",
    )


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """``[limits.rate]``: a token bucket per client IP (the one after `[proxy]`).

    Over it a request gets `429 Too Many Requests` with `Retry-After`.  Health and
    metrics paths are exempt.
    """

    requests_per_second: float = setting(
        0.0,
        doc="Requests each client IP may make per second, sustained; 0 means no rate limit.",
        flags=("--rate-limit",),
        minimum=0,
        unit="requests/second",
    )
    burst: int = setting(
        0,
        doc=(
            "Requests a client may make at once above the sustained rate (the bucket's "
            "size); 0 means `requests_per_second` rounded up."
        ),
        flags=("--rate-limit-burst",),
        minimum=0,
        metavar="N",
    )
    max_tracked_clients: int = setting(
        10000,
        doc="Client IPs tracked at once per worker; the least recently seen are forgotten.",
        flags=("--rate-limit-max-clients",),
        minimum=1,
        metavar="N",
    )


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """``[limits]``: load shedding, for the whole daemon.

    A request or connection turned away is answered (`503` or `429` with
    `Retry-After`), counted in `pounce_requests_shed_total{reason}` and logged at
    most once a second per reason.
    """

    max_connections: int = setting(
        0,
        doc=(
            "Open client connections across all workers; over it a new connection gets "
            "`503` and is closed (HTTP/2: GOAWAY). 0 means no limit."
        ),
        flags=("--limit-max-connections",),
        minimum=0,
        metavar="N",
    )
    max_concurrent_requests: int = setting(
        0,
        doc=(
            "Requests (and WebSocket sessions) being answered at once across all workers; "
            "over it a request waits in the queue, or gets `503`. 0 means no limit."
        ),
        flags=("--limit-concurrency",),
        minimum=0,
        metavar="N",
    )
    queue_size: int = setting(
        0,
        doc=(
            "Requests per worker that may wait for a free slot of `max_concurrent_requests`; "
            "0 means none wait (503 at once)."
        ),
        flags=("--limit-queue-size",),
        minimum=0,
        metavar="N",
    )
    queue_timeout: float = setting(
        5.0,
        doc="Longest a request waits in the queue before it gets `503`.",
        flags=("--limit-queue-timeout",),
        minimum=0,
        exclusive_minimum=True,
        unit="seconds",
    )
    retry_after: int = setting(
        1,
        doc="Seconds given in the `Retry-After` header of `503` answers.",
        flags=("--limit-retry-after",),
        minimum=0,
        unit="seconds",
    )
    rate: RateLimitConfig = dataclasses.field(default_factory=RateLimitConfig)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


DEFAULT_LISTEN: tuple[ListenConfig, ...] = (ListenConfig(host=DEFAULT_HOST, port=DEFAULT_PORT),)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of one Pounce server.

    ``source`` is the file it was read from; it is not a setting and does not
    take part in comparisons.
    """

    app: str | None = setting(
        None,
        doc=(
            "The ASGI application: `module:attribute`, or `module:factory()` to call a factory. "
            "Usually given on the command line."
        ),
        flags=(),
        check=_check_app,
        rule='"module:attr" or "module:factory()"',
    )
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    listen: tuple[ListenConfig, ...] = DEFAULT_LISTEN
    http: HttpConfig = dataclasses.field(default_factory=HttpConfig)
    tls: TlsConfig = dataclasses.field(default_factory=TlsConfig)
    http2: Http2Config = dataclasses.field(default_factory=Http2Config)
    shutdown: ShutdownConfig = dataclasses.field(default_factory=ShutdownConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    workers: WorkersConfig = dataclasses.field(default_factory=WorkersConfig)
    reload: ReloadConfig = dataclasses.field(default_factory=ReloadConfig)
    control: ControlConfig = dataclasses.field(default_factory=ControlConfig)
    admin: AdminConfig = dataclasses.field(default_factory=AdminConfig)
    health: HealthConfig = dataclasses.field(default_factory=HealthConfig)
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    websocket: WebSocketConfig = dataclasses.field(default_factory=WebSocketConfig)
    proxy: ProxyConfig = dataclasses.field(default_factory=ProxyConfig)
    request_id: RequestIdConfig = dataclasses.field(default_factory=RequestIdConfig)
    limits: LimitsConfig = dataclasses.field(default_factory=LimitsConfig)
    source: str | None = dataclasses.field(default=None, compare=False)

    def max_workers(self) -> int:
        """The bound on the worker count: ``workers.max``, else 4 x the usable CPUs (at least
        ``server.workers``)."""
        if self.workers.max is not None:
            return self.workers.max
        return max(4 * usable_cpus(), self.server.workers)

    def backlog_for(self, listen: ListenConfig) -> int:
        """The backlog to listen with on ``listen``: its own, else ``server.backlog``."""
        return listen.backlog_or(self.server.backlog)
