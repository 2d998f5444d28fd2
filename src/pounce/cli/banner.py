"""The start-up banner: version, Python build, listeners, workers."""

from __future__ import annotations

import platform
import sys
import sysconfig
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pounce._version import __version__
from pounce.config import Config
from pounce.net.listeners import Listener
from pounce.net.tls import listener_uses_tls
from pounce.worker.loops import resolve_loop


def python_build() -> str:
    """``CPython 3.13.0 (free-threaded, GIL disabled)`` or ``CPython 3.11.7 (GIL)``."""
    name = f"{platform.python_implementation()} {platform.python_version()}"
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        return f"{name} (GIL)"
    enabled = getattr(sys, "_is_gil_enabled", lambda: True)()
    return f"{name} (free-threaded, GIL {'enabled' if enabled else 'disabled'})"


def banner_table(
    config: Config, listeners: Sequence[Listener], extras: Mapping[str, str] | None = None
) -> Table:
    """The banner as a rich Table, built from data so it can be tested by rendering."""
    table = Table(title=f"Pounce {__version__}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("python", python_build())
    table.add_row("app", config.app or "-")
    loop = resolve_loop(config.server.loop).value
    table.add_row("engine", f"{loop} loop, {config.http.parser.value} HTTP/1.1 parser")
    table.add_row("workers", f"{config.server.workers} ({config.server.worker_mode.value} mode)")
    for i, listener in enumerate(listeners):
        shown = listener.describe()
        if listener_uses_tls(config, listener.config) and shown.startswith("http://"):
            shown = "https://" + shown.removeprefix("http://")
        table.add_row("listen" if i == 0 else "", shown)
    extras = dict(extras or {})
    for key, value in extras.items():
        table.add_row(key, value)
    for key, value in served_at(config, extras.get("admin")).items():
        table.add_row(key, Text(value))  # (not markup: "[admin]" is text)
    if config.source:
        table.add_row("config", config.source)
    return table


def served_at(config: Config, admin: str | None) -> dict[str, str]:
    """Where the health and metrics paths are answered: ``{"health": ..., "metrics": ...}``.

    ``admin`` is the admin listener's URL, or None when there is none.  By default the
    app owns every path of its listeners; ``public = true`` is reported as such.
    """
    health, metrics = config.health, config.metrics
    rows: dict[str, str] = {}
    items = [("health", f"{health.live_path}, {health.ready_path}", health.public, True)]
    items.append(("metrics", metrics.path, metrics.public, metrics.enabled))
    for key, paths, public, enabled in items:
        if not enabled:
            rows[key] = "off"
            continue
        places = [f"admin {admin}"] if admin else []
        if public:
            places.append("the public listeners (public = true)")
        if places:
            rows[key] = f"{paths} on {' and '.join(places)}"
        else:
            rows[key] = f"not served: no admin listener ([admin] port) and [{key}] public = false"
    return rows


def print_banner(
    config: Config, listeners: Sequence[Listener], extras: Mapping[str, str] | None = None
) -> None:
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(banner_table(config, listeners, extras))
