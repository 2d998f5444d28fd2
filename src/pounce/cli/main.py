"""The ``pounce`` command.  The only module that reads argv or calls ``sys.exit``."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from pounce._version import __version__
from pounce.config import Config, add_cli_flags, config_to_toml, load_config, overrides_from_args
from pounce.errors import PounceError, UsageError
from pounce.types import ASGIApp

CONFIG_ENV = "POUNCE_CONFIG"
"""The environment variable naming the config file when ``-c`` is not given."""
LOCAL_CONFIG = "pounce.toml"
"""``serve``, ``check`` and ``config show`` with neither an app nor ``-c`` (nor
``$POUNCE_CONFIG``) read this file in the current directory, when it exists."""

PROXY_HEADERS_DEFAULT = "127.0.0.1"
"""Who ``--proxy-headers`` trusts when ``[proxy] trusted`` is empty (as uvicorn does)."""

# uvicorn/gunicorn habits with no flag of the same name here: what to do instead.
HABITS = {
    "--reload": "pounce has no code reloader; reload the daemon with `pounce ctl reload` or SIGHUP",
    "--header": "pounce adds no response headers; set them in the app",
}


class Parser(argparse.ArgumentParser):
    """No prefix matching, and every usage error is one line (with a did-you-mean)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        ns, extras = super().parse_known_args(args, namespace)
        # The innermost (sub)parser that left arguments over names them in the error.
        if extras and not hasattr(ns, "_extras_parser"):
            ns._extras_parser = self
        return ns, extras

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        ns, extras = self.parse_known_args(args, namespace)
        owner: Parser = vars(ns).pop("_extras_parser", self)
        if extras:
            owner.error(owner.unknown_text(extras))
        return ns

    def unknown_text(self, extras: Sequence[str]) -> str:
        """``unknown option --relaod (did you mean --reload-timeout?)``."""
        flag = next((arg for arg in extras if arg.startswith("-")), None)
        if flag is None:
            return f"unexpected argument {extras[0]!r}"
        name = flag.partition("=")[0]
        if name in HABITS:
            return f"unknown option {name}: {HABITS[name]}"
        known = [s for action in self._actions for s in action.option_strings]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        guess = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown option {name}{guess}"

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = Parser(
        prog="pounce",
        description="Pounce: a pure-Python ASGI server run by a supervisor daemon.",
    )
    parser.add_argument("--version", action="version", version=f"pounce {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser("serve", help="serve an ASGI app")
    serve.add_argument("app", nargs="?", help='the app, "module:attr" or "module:factory()"')
    _add_config_arg(serve)
    listen = serve.add_argument_group(
        "listeners (--host/--port change the config's TCP listener; --uds/--fd replace them all)"
    )
    listen.add_argument(
        "--host", action="append", help="bind to this host (repeatable) [env POUNCE_HOST]"
    )
    listen.add_argument(
        "--port", action="append", type=_port, help="bind to this TCP port [env POUNCE_PORT, PORT]"
    )
    listen.add_argument("--uds", action="append", metavar="PATH", help="bind to a Unix socket")
    listen.add_argument("--fd", action="append", type=_fd, metavar="N", help="use inherited fd N")
    serve.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="uvicorn's flag: apply trusted proxies' forwarding headers; without "
        "--forwarded-allow-ips nor a [proxy] trusted list, trust 127.0.0.1; "
        "--no-proxy-headers trusts nobody, whatever the config says",
    )
    add_cli_flags(serve)

    check = sub.add_parser("check", help="validate the config and import the app")
    check.add_argument("app", nargs="?", help="the app, overriding the config's")
    _add_config_arg(check)

    from pounce.cli.bench import add_bench_parser
    from pounce.ctl import add_ctl_parser

    add_ctl_parser(sub)
    add_bench_parser(sub)

    config = sub.add_parser("config", help="inspect the configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION")
    config_sub.required = True
    show = config_sub.add_parser("show", help="print the effective config as TOML")
    _add_config_arg(show)
    return parser


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"the pounce.toml to read (default: ${CONFIG_ENV}, else ./{LOCAL_CONFIG} "
        "when no app is given and the file exists)",
    )


def config_path(ns: argparse.Namespace, *, local: bool) -> tuple[str | None, str | None]:
    """The config file to read and, when it was found rather than named, a line saying so.

    ``-c FILE``, else ``$POUNCE_CONFIG``, else (``local`` and no app given)
    ``./pounce.toml`` when it exists, else none.
    """
    if ns.config:
        return str(ns.config), None
    named = os.environ.get(CONFIG_ENV)
    if named:
        return named, f"reading {named} (from ${CONFIG_ENV})"
    if local and not getattr(ns, "app", None) and os.path.isfile(LOCAL_CONFIG):
        path = os.path.abspath(LOCAL_CONFIG)
        return path, f"reading ./{LOCAL_CONFIG} from the current directory ({path})"
    return None, None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {text!r}")
    return int(text)


def _fd(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a file descriptor number, got {text!r}")
    return int(text)


def listen_overrides(ns: argparse.Namespace) -> dict[str, Any]:
    """The listener overrides from --host/--port/--uds/--fd (empty when none was given).

    --host and --port change only the host or port of the config's TCP
    listener; --uds and --fd, and several --host/--port, replace the listeners.
    """
    hosts: list[str] = ns.host or []
    ports: list[int] = ns.port or []
    if len(hosts) > 1 and len(ports) > 1 and len(hosts) != len(ports):
        raise UsageError("give one --port for all --host flags, or one --port per --host")
    entries: list[dict[str, Any]] = [{"path": p} for p in ns.uds or []]
    entries += [{"fd": n} for n in ns.fd or []]
    overrides: dict[str, Any] = {}
    if hosts:
        overrides["listen.host"] = hosts
    if ports:
        overrides["listen.port"] = ports
    if entries:
        overrides["listen"] = entries
    return overrides


class _WarnOnce:
    """Prints each config warning to stderr once, however often the config is reloaded."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, message: str) -> None:
        if message not in self.seen:
            self.seen.add(message)
            print(f"pounce: warning: {message}", file=sys.stderr, flush=True)


_warn_once = _WarnOnce()


def _load(ns: argparse.Namespace, *, with_flags: bool) -> Config:
    overrides: dict[str, object] = {}
    proxy_headers: bool | None = None
    if with_flags:
        overrides.update(overrides_from_args(ns))
        overrides.update(listen_overrides(ns))
        proxy_headers = getattr(ns, "proxy_headers", None)
        if proxy_headers is False:
            overrides["proxy.trusted"] = ()  # --no-proxy-headers: trust nobody
    if getattr(ns, "app", None):
        overrides["app"] = ns.app
    config = load_config(ns.config_path, overrides=overrides, warn=_warn_once)
    return with_proxy_headers(config) if proxy_headers else config


def with_proxy_headers(config: Config) -> Config:
    """uvicorn's ``--proxy-headers``: when nothing else trusts anyone, trust 127.0.0.1
    (uvicorn's default ``--forwarded-allow-ips``)."""
    if config.proxy.trusted:
        return config
    return dataclasses.replace(
        config, proxy=dataclasses.replace(config.proxy, trusted=(PROXY_HEADERS_DEFAULT,))
    )


def _find_config(ns: argparse.Namespace, *, local: bool) -> str | None:
    """Set ``ns.config_path`` once (a reload reads the same file); return the note, if any."""
    path, note = config_path(ns, local=local)
    ns.config_path = path
    return note


def _app_loader(config: Config) -> Callable[[], ASGIApp]:
    """What a worker calls to get its app: the configured app in its middleware."""
    from pounce.asgi.app import load_app

    if not config.app:
        raise UsageError("no app given: pass MODULE:APP or set app in the config file")
    return functools.partial(load_app, config)


def cmd_serve(ns: argparse.Namespace) -> int:
    note = _find_config(ns, local=True)
    config = _load(ns, with_flags=True)

    def reload_config() -> Config:
        return _load(ns, with_flags=True)

    return serve(config, load_app=_app_loader, reload_config=reload_config, note=note)


def serve(
    config: Config,
    *,
    load_app: Callable[[Config], Callable[[], ASGIApp]],
    reload_config: Callable[[], Config],
    note: str | None = None,
    app_label: str | None = None,
) -> int:
    """Run the daemon of ``pounce serve`` on ``config`` until it stops; return the exit code.

    ``load_app(config)`` gives what each worker calls to get its app (a thread
    worker calls it; a process worker imports ``config.app`` itself);
    ``reload_config`` gives the config of a reload; ``app_label`` is the banner's
    app when it is not ``config.app`` (an object).  Also what :func:`pounce.run` runs.
    """
    from pounce.cli.banner import print_banner
    from pounce.logs import configure_logging
    from pounce.net.activation import take_activated_sockets
    from pounce.net.listeners import open_with_activation
    from pounce.net.tls import check_tls
    from pounce.supervisor import run_daemon
    from pounce.supervisor.systemd import Notifier
    from pounce.worker.loops import resolve_loop

    load_app(config)  # fail early, before any socket, when no app is given
    resolve_loop(config.server.loop)  # likewise for a loop that is not installed
    check_tls(config)  # a missing, unreadable or mismatched TLS cert/key fails here
    configure_logging(config.logging.level, config.logging.format, file=config.logging.file or None)
    global _log_errors
    _log_errors = config.logging.format == "json"
    if note:
        logging.getLogger("pounce.error").info("%s", note)
    notifier = Notifier()  # takes NOTIFY_SOCKET and WATCHDOG_* out of the environment
    activated = take_activated_sockets()  # likewise LISTEN_*
    listeners = open_with_activation(
        config.listen, backlog=config.server.backlog, activated=activated
    )

    shown = config if app_label is None else dataclasses.replace(config, app=app_label)
    try:
        return run_daemon(
            config,
            listeners,
            load_app=load_app,
            reload_config=reload_config,
            notifier=notifier,
            on_banner=lambda extras: _banner(shown, listeners, extras, print_banner),
        )
    finally:
        for listener in listeners:
            listener.close()


def _banner(config: Config, listeners: Any, extras: Any, print_banner: Any) -> None:
    """The banner as a table on stderr, or with ``logging.format = "json"`` one JSON log line."""
    if config.logging.format != "json":
        print_banner(config, listeners, extras)
        return
    from pounce.cli.banner import banner_table

    table = banner_table(config, listeners, extras)
    keys, values = ([str(c) for c in column.cells] for column in table.columns[:2])
    fields: dict[str, Any] = {}
    last = ""
    for key, value in zip(keys, values, strict=False):
        key = key or last
        last = key
        if key in fields:
            shown = fields[key]
            fields[key] = [*(shown if isinstance(shown, list) else [shown]), value]
        else:
            fields[key] = value
    log = logging.getLogger("pounce.error")
    log.info("pounce %s started", __version__, extra={"banner": fields})


def cmd_check(ns: argparse.Namespace) -> int:
    from pounce.net.tls import check_tls

    note = _find_config(ns, local=True)
    if note:
        print(f"pounce: {note}", file=sys.stderr)
    config = _load(ns, with_flags=False)
    check_tls(config)  # a missing, unreadable or mismatched TLS cert/key fails here
    _app_loader(config)()
    where = f"{config.source}: " if config.source else ""
    count = len(config.server.middleware)
    wrapped = f" in {count} middleware" if count else ""
    print(f"{where}configuration is valid; app {config.app} imported{wrapped}")
    return 0


def cmd_config_show(ns: argparse.Namespace) -> int:
    note = _find_config(ns, local=True)
    if note:
        print(f"pounce: {note}", file=sys.stderr)
    sys.stdout.write(config_to_toml(_load(ns, with_flags=False)))
    return 0


def cmd_ctl(ns: argparse.Namespace) -> int:
    from pounce.ctl import run_ctl

    return run_ctl(ns)


def cmd_bench(ns: argparse.Namespace) -> int:
    from pounce.cli.bench import run_bench

    return run_bench(ns)


COMMANDS = {
    "serve": cmd_serve,
    "check": cmd_check,
    "config": cmd_config_show,
    "ctl": cmd_ctl,
    "bench": cmd_bench,
}


_log_errors = False  # serve with logging.format = "json": the last error is a log line too


def report_error(exc: PounceError) -> None:
    """The app's traceback (when its code raised) once, then the one-line summary last."""
    trace = getattr(exc, "app_traceback", None)
    if _log_errors:
        from pounce.logs import JSONFormatter

        log = logging.getLogger("pounce.error")
        extra = {"traceback": trace} if trace else {}
        record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (exc,), None)
        record.__dict__.update(extra)
        log.handle(record)
        if any(isinstance(h, logging.FileHandler) for h in logging.getLogger("pounce").handlers):
            # The log goes to a file: the terminal (or journal) gets the same JSON line.
            print(JSONFormatter().format(record), file=sys.stderr)
        return
    if trace:
        print(trace, file=sys.stderr)
    print(f"pounce: error: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``pounce`` console script."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        code = COMMANDS[ns.command](ns)
        sys.stdout.flush()  # here, so that a closed pipe (`| head`) is caught below
    except PounceError as exc:
        report_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (`pounce ctl status | head`): no traceback, and none at
        # exit either when Python flushes stdout again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    sys.exit(code)
