"""The ``pounce`` command.  The only module that reads argv or calls ``sys.exit``."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from pounce import __version__
from pounce.config import Config, add_cli_flags, config_to_toml, load_config, overrides_from_args
from pounce.errors import PounceError, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    add_cli_flags(serve)

    check = sub.add_parser("check", help="validate the config and import the app")
    check.add_argument("app", nargs="?", help="the app, overriding the config's")
    _add_config_arg(check)

    from pounce.bench import add_bench_parser
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
    parser.add_argument("-c", "--config", metavar="FILE", help="the pounce.toml to read")


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
    if with_flags:
        overrides.update(overrides_from_args(ns))
        overrides.update(listen_overrides(ns))
    if getattr(ns, "app", None):
        overrides["app"] = ns.app
    return load_config(ns.config, overrides=overrides, warn=_warn_once)


def _app_loader(config: Config) -> functools.partial[Any]:
    from pounce.asgi.app import import_app

    if not config.app:
        raise UsageError("no app given: pass MODULE:APP or set app in the config file")
    return functools.partial(import_app, config.app, factory=config.server.factory)


def cmd_serve(ns: argparse.Namespace) -> int:
    from pounce.cli.banner import print_banner
    from pounce.logs import configure_logging
    from pounce.net.activation import take_activated_sockets
    from pounce.net.listeners import open_with_activation
    from pounce.net.tls import check_tls
    from pounce.supervisor import run_daemon
    from pounce.supervisor.systemd import Notifier
    from pounce.worker.loops import resolve_loop

    config = _load(ns, with_flags=True)
    _app_loader(config)  # fail early, before any socket, when no app is given
    resolve_loop(config.server.loop)  # likewise for a loop that is not installed
    check_tls(config)  # a missing, unreadable or mismatched TLS cert/key fails here
    configure_logging(config.logging.level, config.logging.format, file=config.logging.file or None)
    notifier = Notifier()  # takes NOTIFY_SOCKET and WATCHDOG_* out of the environment
    activated = take_activated_sockets()  # likewise LISTEN_*
    listeners = open_with_activation(
        config.listen, backlog=config.server.backlog, activated=activated
    )

    def reload_config() -> Config:
        return _load(ns, with_flags=True)

    try:
        return run_daemon(
            config,
            listeners,
            load_app=_app_loader,
            reload_config=reload_config,
            notifier=notifier,
            on_banner=lambda extras: print_banner(config, listeners, extras),
        )
    finally:
        for listener in listeners:
            listener.close()


def cmd_check(ns: argparse.Namespace) -> int:
    from pounce.net.tls import check_tls

    config = _load(ns, with_flags=False)
    check_tls(config)  # a missing, unreadable or mismatched TLS cert/key fails here
    _app_loader(config)()
    where = f"{config.source}: " if config.source else ""
    print(f"{where}configuration is valid; app {config.app} imported")
    return 0


def cmd_config_show(ns: argparse.Namespace) -> int:
    sys.stdout.write(config_to_toml(_load(ns, with_flags=False)))
    return 0


def cmd_ctl(ns: argparse.Namespace) -> int:
    from pounce.ctl import run_ctl

    return run_ctl(ns)


def cmd_bench(ns: argparse.Namespace) -> int:
    from pounce.bench import run_bench

    return run_bench(ns)


COMMANDS = {
    "serve": cmd_serve,
    "check": cmd_check,
    "config": cmd_config_show,
    "ctl": cmd_ctl,
    "bench": cmd_bench,
}


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``pounce`` console script."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        code = COMMANDS[ns.command](ns)
    except PounceError as exc:
        print(f"pounce: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code)
