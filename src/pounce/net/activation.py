"""systemd socket activation: the ``LISTEN_FDS`` protocol (sd_listen_fds(3)).

Inherited sockets are matched to ``[[listen]]`` entries by name
(``FileDescriptorName=``), never by position.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import MutableMapping
from dataclasses import dataclass

from pounce.errors import ListenerError

SD_LISTEN_FDS_START = 3


@dataclass(slots=True)
class Activated:
    """One socket passed by the service manager."""

    fd: int
    name: str
    sock: socket.socket


def _pidfd_matches(env: MutableMapping[str, str]) -> bool:
    pidfdid = env.get("LISTEN_PIDFDID")
    if not pidfdid:
        return True
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return True
    try:
        fd = pidfd_open(os.getpid())
    except OSError:
        return True
    try:
        return str(os.fstat(fd).st_ino) == pidfdid
    finally:
        os.close(fd)


def take_activated_sockets(env: MutableMapping[str, str] | None = None) -> list[Activated]:
    """Claim the sockets systemd passed, then unset every ``LISTEN_*`` variable.

    Returns an empty list when the variables are absent or meant for another process.
    Each fd must be a listening stream socket.
    """
    env = os.environ if env is None else env
    pid = env.get("LISTEN_PID", "")
    count = env.get("LISTEN_FDS", "")
    names_raw = env.get("LISTEN_FDNAMES", "")
    ours = pid.isdigit() and int(pid) == os.getpid() and _pidfd_matches(env)
    for key in [k for k in env if k.startswith("LISTEN_")]:
        del env[key]
    if not ours or not count.isdigit() or int(count) == 0:
        return []
    n = int(count)
    names = names_raw.split(":") if names_raw else []
    found: list[Activated] = []
    for i in range(n):
        fd = SD_LISTEN_FDS_START + i
        name = names[i] if i < len(names) and names[i] else "unknown"
        found.append(Activated(fd, name, _check(fd, name)))
    return found


def _check(fd: int, name: str) -> socket.socket:
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise ListenerError(f"activated fd {fd} ({name}): {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ListenerError(f"activated fd {fd} ({name}) is not a socket")
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ListenerError(f"activated fd {fd} ({name}) is not a stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ListenerError(f"activated fd {fd} ({name}) is not listening")
    os.set_inheritable(fd, False)
    sock.setblocking(False)
    return sock
