"""Pounce's configuration: TOML file, environment and flags, read into frozen dataclasses.

Every setting is declared once, in :mod:`pounce.config.model`; its TOML key,
``POUNCE_*`` environment variable, command-line flag and docs row are derived
from that declaration.  Precedence: defaults < TOML < environment < flags.
"""

from pounce.config.cliflags import add_cli_flags, overrides_from_args
from pounce.config.declare import env_var_name
from pounce.config.docs import reference_markdown
from pounce.config.dump import config_to_toml
from pounce.config.loader import load_config
from pounce.config.model import (
    AdminConfig,
    Config,
    ControlConfig,
    HealthConfig,
    Http2Config,
    HttpConfig,
    HttpParser,
    LimitsConfig,
    ListenConfig,
    LogFormat,
    LoggingConfig,
    LogLevel,
    LoopKind,
    MetricsConfig,
    ProxyConfig,
    RateLimitConfig,
    ReloadConfig,
    RequestIdConfig,
    ServerConfig,
    ShutdownConfig,
    TlsClientAuth,
    TlsConfig,
    TlsVersion,
    WebSocketConfig,
    WorkerMode,
    WorkersConfig,
)

__all__ = [
    "AdminConfig",
    "Config",
    "ControlConfig",
    "HealthConfig",
    "Http2Config",
    "HttpConfig",
    "HttpParser",
    "LimitsConfig",
    "ListenConfig",
    "LogFormat",
    "LogLevel",
    "LoggingConfig",
    "LoopKind",
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
    "add_cli_flags",
    "config_to_toml",
    "env_var_name",
    "load_config",
    "overrides_from_args",
    "reference_markdown",
]
