"""Listeners: TCP (IPv4, IPv6, several at once), Unix sockets and inherited fds."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers.asgi import (
    Launcher,
    scope_of,
    short_tmpdir,
    uds_connect,
    uds_get,
    wait_exit,
    wait_tcp,
    wait_uds,
)
from helpers.server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

APP = "apps.asgi_scope:app"


@pytest.fixture
def sockdir() -> Iterator[Path]:
    with short_tmpdir() as d:
        yield d


def get_scope(url: str) -> dict:
    with httpx.Client(timeout=10) as client:
        return scope_of(client.get(url))["scope"]


def uds_scope(path: Path) -> dict:
    return scope_of(uds_get(path, "http://localhost/uds"))["scope"]


def write_config(path: Path, listen: str, extra: str = "") -> Path:
    path.write_text(f'app = "{APP}"\n{extra}\n{listen}')
    return path


# -- TCP ----------------------------------------------------------------------------------


def test_tcp_ipv4_host_port(launch: Launcher) -> None:
    port = free_port()
    server = launch.spawn("serve", APP, "--host", "127.0.0.1", "--port", str(port))
    wait_tcp(server, "127.0.0.1", port)
    scope = get_scope(f"http://127.0.0.1:{port}/v4")
    assert list(scope["server"]) == ["127.0.0.1", port]
    assert scope["client"][0] == "127.0.0.1"


def test_tcp_ipv6_loopback(launch: Launcher) -> None:
    port = free_port("::1")
    server = launch.spawn("serve", APP, "--host", "::1", "--port", str(port))
    wait_tcp(server, "::1", port)
    scope = get_scope(f"http://[::1]:{port}/v6")
    assert list(scope["server"]) == ["::1", port]
    assert scope["client"][0] == "::1"


def test_two_tcp_listeners_from_cli(launch: Launcher) -> None:
    p4, p6 = free_port(), free_port("::1")
    server = launch.spawn(
        "serve", APP, "--host", "127.0.0.1", "--port", str(p4), "--host", "::1", "--port", str(p6)
    )
    wait_tcp(server, "127.0.0.1", p4)
    wait_tcp(server, "::1", p6)
    assert list(get_scope(f"http://127.0.0.1:{p4}/a")["server"]) == ["127.0.0.1", p4]
    assert list(get_scope(f"http://[::1]:{p6}/b")["server"]) == ["::1", p6]


def test_two_listen_entries_in_config(launch: Launcher, tmp_path: Path) -> None:
    p1, p2 = free_port(), free_port()
    cfg = write_config(
        tmp_path / "pounce.toml",
        f'[[listen]]\nhost = "127.0.0.1"\nport = {p1}\n\n'
        f'[[listen]]\nhost = "127.0.0.1"\nport = {p2}\n',
    )
    server = launch.spawn("serve", "-c", str(cfg))
    wait_tcp(server, "127.0.0.1", p1)
    wait_tcp(server, "127.0.0.1", p2)
    assert list(get_scope(f"http://127.0.0.1:{p1}/")["server"]) == ["127.0.0.1", p1]
    assert list(get_scope(f"http://127.0.0.1:{p2}/")["server"]) == ["127.0.0.1", p2]


# -- Unix sockets -------------------------------------------------------------------------


def test_unix_socket_from_cli(launch: Launcher, sockdir: Path) -> None:
    path = sockdir / "p.sock"
    server = launch.spawn("serve", APP, "--uds", str(path))
    wait_uds(server, path)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    scope = uds_scope(path)
    assert isinstance(scope["server"], (list, tuple))
    assert list(scope["server"]) == [str(path), None]
    assert scope["state"]["answer"] == 42


def test_two_unix_sockets_from_cli(launch: Launcher, sockdir: Path) -> None:
    a, b = sockdir / "a.sock", sockdir / "b.sock"
    server = launch.spawn("serve", APP, "--uds", str(a), "--uds", str(b))
    wait_uds(server, a)
    wait_uds(server, b)
    assert list(uds_scope(a)["server"]) == [str(a), None]
    assert list(uds_scope(b)["server"]) == [str(b), None]


@pytest.mark.parametrize("mode", [0o600, 0o660], ids=oct)
def test_unix_socket_mode_from_config(launch: Launcher, sockdir: Path, mode: int) -> None:
    path = sockdir / "m.sock"
    cfg = write_config(sockdir / "pounce.toml", f'[[listen]]\npath = "{path}"\nmode = {mode:#o}\n')
    server = launch.spawn("serve", "-c", str(cfg))
    wait_uds(server, path)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == mode
    assert uds_get(path).status_code == 200


def test_stale_socket_file_is_replaced(launch: Launcher, sockdir: Path) -> None:
    path = sockdir / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.listen(1)
    dead.close()  # the file stays behind, nobody listens: a stale socket
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    server = launch.spawn("serve", APP, "--uds", str(path))
    wait_uds(server, path)
    assert uds_get(path).status_code == 200


def test_socket_in_use_is_refused(launch: Launcher, sockdir: Path) -> None:
    path = sockdir / "busy.sock"
    owner = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        owner.bind(str(path))
        owner.listen(8)
        server = launch.spawn("serve", APP, "--uds", str(path))
        code = wait_exit(server, 20)
        assert code is not None, f"server started on a socket in use:\n{server.output}"
        assert code != 0
        assert str(path) in server.output, server.output
        assert "Traceback" not in server.output, server.output
        # The live socket was left alone: it still exists and still reaches its owner.
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        with uds_connect(path, 5):
            owner.settimeout(5)
            conn, _ = owner.accept()
            conn.close()
    finally:
        owner.close()


# -- inherited file descriptors -----------------------------------------------------------


def test_inherited_tcp_fd(launch: Launcher) -> None:
    server = launch.fd(APP)
    scope = get_scope(server.url + "/fd")
    assert list(scope["server"]) == ["127.0.0.1", server.port]


def test_inherited_tcp_ipv6_fd(launch: Launcher) -> None:
    server = launch.fd(APP, host="::1")
    scope = get_scope(server.url + "/fd6")
    assert list(scope["server"]) == ["::1", server.port]


def test_inherited_unix_fd(launch: Launcher, sockdir: Path) -> None:
    path = sockdir / "fd.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        sock.listen(16)
        server = launch.spawn("serve", APP, "--fd", str(sock.fileno()), pass_fds=[sock.fileno()])
    finally:
        sock.close()
    wait_uds(server, path)
    scope = uds_scope(path)
    assert list(scope["server"]) == [str(path), None]


def test_two_inherited_fds_tcp_and_unix(launch: Launcher, sockdir: Path) -> None:
    path = sockdir / "mix.sock"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        unix.bind(str(path))
        unix.listen(16)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(16)
        port = tcp.getsockname()[1]
        fds = [unix.fileno(), tcp.fileno()]
        server = launch.spawn("serve", APP, "--fd", str(fds[0]), "--fd", str(fds[1]), pass_fds=fds)
    finally:
        unix.close()
        tcp.close()
    wait_uds(server, path)
    wait_tcp(server, "127.0.0.1", port)
    assert list(uds_scope(path)["server"]) == [str(path), None]
    assert list(get_scope(f"http://127.0.0.1:{port}/")["server"]) == ["127.0.0.1", port]
