"""Open, inherit and close listening sockets.

The process that opens a listener keeps it for its whole life; workers get the
already-listening socket.  Config objects never open sockets: this module does.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import logging
import os
import pwd
import socket
import stat
from dataclasses import dataclass

from pounce.config import ListenConfig
from pounce.errors import ListenerError
from pounce.net.activation import Activated

log = logging.getLogger("pounce.error")

DEFAULT_BACKLOG = 2048


@dataclass(slots=True)
class Listener:
    """A listening socket and where it came from."""

    config: ListenConfig
    sock: socket.socket
    owns_path: bool = False

    @property
    def family(self) -> socket.AddressFamily:
        return self.sock.family

    @property
    def is_unix(self) -> bool:
        return self.sock.family == socket.AF_UNIX

    def describe(self) -> str:
        """A URL-like name of the bound address, e.g. ``http://127.0.0.1:8000``."""
        return describe_socket(self.sock)

    def close(self) -> None:
        path = self.sock.getsockname() if self.is_unix and self.owns_path else None
        self.sock.close()
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)


def describe_socket(sock: socket.socket) -> str:
    if sock.family == socket.AF_UNIX:
        name = sock.getsockname()
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return f"unix:{name or '(unnamed)'}"
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def open_listener(config: ListenConfig, *, backlog: int = DEFAULT_BACKLOG) -> Listener:
    """Open (or inherit) the socket ``config`` describes; raise :class:`ListenerError`.

    ``backlog``: ``server.backlog``, used unless the listener has its own."""
    backlog = config.backlog_or(backlog)
    if config.fd is not None:
        return Listener(config, inherit_fd(config.fd, backlog=backlog))
    if config.path is not None:
        return Listener(config, bind_unix(config, backlog=backlog), owns_path=True)
    if config.host is not None or config.port is not None:
        host = config.host if config.host is not None else "127.0.0.1"
        port = config.port if config.port is not None else 8000
        return Listener(config, bind_tcp(host, port, backlog=backlog))
    raise ListenerError(f"listener {config.name or ''!s} has no address, path or fd")


def open_listeners(configs: tuple[ListenConfig, ...], *, backlog: int) -> list[Listener]:
    """Open every listener, or none: on a failure the ones already open are closed."""
    opened: list[Listener] = []
    try:
        for config in configs:
            opened.append(open_listener(config, backlog=backlog))
    except BaseException:
        for listener in opened:
            listener.close()
        raise
    return opened


def bind_tcp(host: str, port: int, *, backlog: int) -> socket.socket:
    bracketless = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        infos = socket.getaddrinfo(
            bracketless, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenerError(f"cannot resolve listen host {host!r}: {exc.strerror}") from None
    family, socktype, proto, _, address = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # Like nginx: "[::]" means IPv6 only, so "0.0.0.0" can be listed beside it.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        shown = f"[{bracketless}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        raise ListenerError(f"cannot listen on {shown}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def bind_unix(config: ListenConfig, *, backlog: int) -> socket.socket:
    path = config.path
    assert path is not None
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if config.mode is not None:
            os.chmod(path, config.mode)
        if config.owner is not None or config.group is not None:
            os.chown(path, _uid(config.owner), _gid(config.group))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenerError(f"cannot listen on unix:{path}: {exc.strerror}") from None
    except KeyError as exc:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise ListenerError(f"unix:{path}: unknown user or group {exc.args[0]}") from None
    sock.setblocking(False)
    return sock


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file nobody listens on; refuse a live one or a non-socket."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ListenerError(f"cannot use unix:{path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenerError(f"cannot listen on unix:{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ListenerError(f"cannot use unix:{path}: {exc.strerror}") from None
        os.unlink(path)  # stale: left by a process that is gone
        return
    finally:
        probe.close()
    raise ListenerError(f"cannot listen on unix:{path}: another process is listening on it")


def _uid(owner: str | None) -> int:
    if owner is None:
        return -1
    return int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid


def _gid(group: str | None) -> int:
    if group is None:
        return -1
    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid


def inherit_fd(fd: int, *, backlog: int) -> socket.socket:
    """Wrap an inherited fd; its family and type come from the fd itself."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise ListenerError(f"fd {fd}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ListenerError(f"fd {fd} is not a socket")
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ListenerError(f"fd {fd} is not a stream socket")
    if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        sock.detach()
        raise ListenerError(f"fd {fd} has an unsupported address family {sock.family!r}")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        try:
            sock.listen(backlog)
        except OSError as exc:
            sock.detach()
            raise ListenerError(f"fd {fd}: cannot listen: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def open_with_activation(
    configs: tuple[ListenConfig, ...], *, backlog: int, activated: list[Activated]
) -> list[Listener]:
    """Open every listener, taking systemd-activated sockets by name.

    A named entry takes the activated socket of that name; a named entry with no such
    socket is an error unless it also has its own address.  When no entry is named,
    the activated sockets are the listeners.
    """
    if not activated:
        return open_listeners(configs, backlog=backlog)
    if not any(c.name for c in configs):
        return [Listener(ListenConfig(fd=a.fd, name=a.name), a.sock) for a in activated]
    pool = list(activated)
    chosen: list[Listener | ListenConfig] = []
    for i, config in enumerate(configs):
        match = next((a for a in pool if config.name and a.name == config.name), None)
        if match is not None:
            pool.remove(match)
            chosen.append(Listener(config, match.sock))
        elif (
            config.host is None
            and config.port is None
            and config.path is None
            and config.fd is None
        ):
            names = ", ".join(sorted({a.name for a in activated})) or "none"
            raise ListenerError(
                f"listen[{i}] named {config.name!r}: systemd passed no socket of that name "
                f"(passed: {names})"
            )
        else:
            chosen.append(config)
    for extra in pool:
        log.warning(
            "systemd passed socket %r (fd %d) that no [[listen]] names", extra.name, extra.fd
        )
    opened: list[Listener] = []
    try:
        for item in chosen:
            opened.append(
                item if isinstance(item, Listener) else open_listener(item, backlog=backlog)
            )
    except BaseException:
        for listener in opened:
            if not listener.config.name:
                listener.close()
        raise
    return opened
