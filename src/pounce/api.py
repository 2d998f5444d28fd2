"""``pounce.run``: the daemon of ``pounce serve``, started from Python.

Keyword settings are named after the command-line flags without their dashes
(``--keep-alive-timeout`` -> ``keep_alive_timeout``, ``--forwarded-allow-ips`` ->
``forwarded_allow_ips``; a setting with no flag by its key path, ``tls_password``),
plus the listener names ``host``, ``port``, ``uds`` and ``fd`` (a value or a list).
The names come from the setting declarations (:func:`setting_names`), so they follow
the flags.  Values are checked as the config loader checks TOML values.

Errors private to this module: :class:`DaemonExited`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pounce.config import Config, WorkerMode, load_config, schema
from pounce.errors import PounceError, UsageError
from pounce.types import ASGIApp

__all__ = ["LISTEN_NAMES", "DaemonExited", "build_config", "run", "setting_names"]

#: Keywords naming listeners (the CLI's own flags): one value or a list of them.
LISTEN_NAMES = ("host", "port", "uds", "fd")


class DaemonExited(PounceError):
    """The daemon stopped with a failure (e.g. the crash budget was spent)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"the daemon stopped with exit code {code}")
        self.exit_code = code


@functools.cache
def setting_names() -> dict[str, str]:
    """Each keyword of :func:`run` (and ``TestServer``) -> the key path of its setting.

    Every flag of a setting, aliases too, without its leading dashes and with ``_``
    for ``-``; a setting without a flag by its key path (``tls.password`` ->
    ``tls_password``).  ``app`` is the positional argument.
    """
    names: dict[str, str] = {}
    for spec in schema.single_settings():
        if spec.dotted == "app":
            continue
        for flag in spec.flags or ("--" + spec.dotted.replace(".", "-"),):
            names[flag.removeprefix("--").replace("-", "_")] = spec.dotted
    return names


def _listen_list(value: object) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def settings_overrides(settings: Mapping[str, object]) -> dict[str, object]:
    """``load_config`` overrides from keyword settings; :class:`TypeError` for unknown names."""
    from pounce.cli.main import listen_overrides

    names = setting_names()
    overrides: dict[str, object] = {}
    given: dict[str, str] = {}
    for name, value in settings.items():
        key = names.get(name)
        if key is None and name not in LISTEN_NAMES:
            raise TypeError(_unknown(name, names))
        if key is None:
            continue
        if key in given:
            raise TypeError(f"{given[key]!r} and {name!r} are the same setting ({key})")
        given[key] = name
        overrides[key] = value
    listen = argparse.Namespace(**{n: _listen_list(settings.get(n)) for n in LISTEN_NAMES})
    overrides.update(listen_overrides(listen))
    return overrides


def _unknown(name: str, names: Mapping[str, str]) -> str:
    """``unknown setting 'workres' (did you mean 'workers'?)``, or the CLI's note on a habit."""
    from pounce.cli.main import HABITS

    habit = HABITS.get("--" + name.replace("_", "-"))
    if habit is not None:
        return f"unknown setting {name!r}: {habit}"
    close = difflib.get_close_matches(name, [*names, *LISTEN_NAMES], n=1, cutoff=0.6)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown setting {name!r}{guess}"


def build_config(
    app: str | ASGIApp,
    *,
    config: Config | None,
    settings: Mapping[str, object],
    env: Mapping[str, str] | None = None,
) -> Config:
    """The :class:`Config` of ``app`` with ``settings``, checked like the CLI's.

    Layers: ``config`` (else the environment ``env``, default ``os.environ``, as for
    ``pounce serve``), then ``settings``.  ``app`` as a string sets ``app``.
    Raises ``TypeError`` for an unknown keyword, ``ConfigError``/``UsageError`` for a bad value.
    """
    overrides = settings_overrides(settings)
    if isinstance(app, str):
        overrides["app"] = app
    if config is not None:
        env = {}  # the Config is complete: its layers were read when it was loaded
    return load_config(None, env=env, overrides=overrides, base=config)


def for_app_object(config: Config) -> Config:
    """``config`` for an app given as an object: thread workers (the supervisor's process).

    A process worker imports its app from ``app``; an object cannot be sent there, so
    one worker runs as a thread, and several need ``worker_mode = "thread"``.
    """
    from pounce.supervisor import choose_worker_mode

    if choose_worker_mode(config) is WorkerMode.THREAD:
        return config
    if config.server.workers > 1:
        raise UsageError(
            "an app object runs with one worker or thread workers: pass an import string "
            '("module:app") for process workers, or set worker_mode="thread"'
        )
    server = dataclasses.replace(config.server, worker_mode=WorkerMode.THREAD)
    return dataclasses.replace(config, server=server)


def object_loader(app: ASGIApp) -> Callable[[Config], Callable[[], ASGIApp]]:
    """A ``load_app`` for the supervisor that serves ``app`` (in the config's middleware)."""
    from pounce.asgi.app import check_asgi3, wrap_middleware

    check_asgi3(app, getattr(app, "__qualname__", type(app).__name__))

    def load(config: Config) -> Callable[[], ASGIApp]:
        return functools.partial(wrap_middleware, app, config.server.middleware)

    return load


def _import_loader(config: Config) -> Callable[[], ASGIApp]:
    from pounce.asgi.app import load_app

    return functools.partial(load_app, config)


def run(app: str | ASGIApp, *, config: Config | None = None, **settings: object) -> None:
    """Run the daemon of ``pounce serve`` until it stops; see :func:`pounce.run`."""
    from pounce.cli.main import serve

    if threading.current_thread() is not threading.main_thread():
        raise UsageError(
            "pounce.run() must be called from the main thread, where the daemon handles "
            "signals (pounce.testing.TestServer serves from any thread)"
        )

    def build() -> Config:
        built = build_config(app, config=config, settings=settings)
        return built if isinstance(app, str) else for_app_object(built)

    first = build()
    if isinstance(app, str):
        code = serve(first, load_app=_import_loader, reload_config=build)
    else:
        label = f"{getattr(app, '__module__', '?')}:{getattr(app, '__qualname__', '?')} (object)"
        code = serve(first, load_app=object_loader(app), reload_config=build, app_label=label)
    if code:
        raise DaemonExited(code)
