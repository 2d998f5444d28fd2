"""Pounce: a pure-Python ASGI server run by a supervisor daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pounce._version import __version__

if TYPE_CHECKING:
    from pounce.config import Config
    from pounce.types import ASGIApp

__all__ = ["__version__", "run"]


def run(app: str | ASGIApp, *, config: Config | None = None, **settings: object) -> None:
    """Serve ``app`` with the daemon of ``pounce serve``; block until it stops.

    ``app`` is an import string (``"myapp:app"``, ``"myapp:create()"``) or an ASGI 3
    app object.  ``settings`` are named after the ``pounce serve`` flags without
    their dashes (``workers=4``, ``log_level="debug"``, ``keep_alive_timeout=10``,
    ``host``/``port``/``uds``/``fd``); they override ``config``.  Without ``config``
    the ``POUNCE_*`` environment is read as ``pounce serve`` reads it.

    An app object cannot be imported by a worker process: it runs on one thread
    worker in this process (or on several with ``worker_mode="thread"``); a reload
    restarts the workers with the same object.  Call it from the main thread: SIGINT
    and SIGTERM stop the daemon gracefully, SIGHUP reloads it.

    Raises ``TypeError`` for an unknown setting, :class:`~pounce.errors.ConfigError`
    or :class:`~pounce.errors.UsageError` for a bad value,
    :class:`~pounce.errors.AppImportError` when the app cannot be imported.

    Examples::

        import pounce
        from pounce.config import load_config

        pounce.run("myapp:app")
        pounce.run("myapp:app", port=8080, workers=4)
        pounce.run(app, host="0.0.0.0", log_level="debug")
        pounce.run(app, config=load_config("pounce.toml"), port=9000)
    """
    from pounce.api import run as run_daemon

    run_daemon(app, config=config, **settings)
