"""A real ControlServer on a real Unix socket, a fake supervisor, the real blocking client.

The server runs on an event loop in a background thread, as it will in the
daemon; the tests are the operator, calling from the main thread.  Every wait is
bounded by a timeout; nothing sleeps.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from helpers.control import STATUS, WAIT, Daemon, FakeSupervisor, make_event
from helpers.daemon import other_user
from helpers.server import wait_for
from pounce.control import ControlServer as LazyControlServer
from pounce.control.client import ControlClient
from pounce.control.handler import AfterReply
from pounce.control.protocol import COMMANDS, MAX_MESSAGE_SIZE, encode_error, encode_request
from pounce.control.server import DISPATCH, ControlServer
from pounce.errors import (
    ControlCommandError,
    ControlCommandFailed,
    ControlError,
    DaemonNotRunning,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory under /tmp (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="pounce-ctl-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_daemon(sock_dir: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def make(path: Path | None = None, handler: FakeSupervisor | None = None, **kw: Any) -> Daemon:
        daemon = Daemon(str(path or sock_dir / "pounce.sock"), handler or FakeSupervisor(), **kw)
        started.append(daemon)
        return daemon.start()

    yield make
    for daemon in started:
        daemon.shutdown()


@pytest.fixture
def daemon(make_daemon: Callable[..., Daemon]) -> Daemon:
    return make_daemon()


def raw_connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect(path)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes, or fewer if the server closes the connection."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_reply(sock: socket.socket) -> dict[str, Any] | None:
    """One reply from a raw socket, or None on EOF."""
    header = recv_exactly(sock, 4)
    if not header:
        return None
    (length,) = struct.unpack(">I", header)
    body = recv_exactly(sock, length)
    assert len(body) == length, f"connection closed mid-reply after {header + body!r}"
    reply: dict[str, Any] = json.loads(body)
    return reply


def raw_exchange(sock: socket.socket, payload: bytes) -> dict[str, Any] | None:
    sock.sendall(struct.pack(">I", len(payload)) + payload)
    return read_reply(sock)


# -- commands -----------------------------------------------------------------------------


def test_dispatch_covers_every_command() -> None:
    assert set(DISPATCH) == set(COMMANDS)


def test_the_package_exports_the_server_lazily() -> None:
    assert LazyControlServer is ControlServer


def test_every_command_reaches_the_handler_with_its_arguments(daemon: Daemon) -> None:
    with daemon.client() as client:
        assert client.call("status") == STATUS
        assert client.call("reload") == {
            "generation": 3,
            "duration": 1.5,
            "workers": 1,
            "needs_restart": [],
        }
        assert client.call("drain") == {"state": "draining", "connections": 0}
        assert client.call("drain", wait=True, timeout=2) == {"state": "drained", "connections": 0}
        assert client.call("resume") == {"state": "running"}
        assert client.call("scale", workers=4) == {"previous": 1, "workers": 4, "configured": 1}
        assert client.call("workers") == {"generation": 2, "workers": STATUS["workers"]}
        assert client.call("stop", now=True) == {"state": "stopping"}
    assert daemon.handler.calls == [
        ("status", {}),
        ("reload", {}),
        ("drain", {"wait": False, "timeout": None}),
        ("drain", {"wait": True, "timeout": 2.0}),
        ("resume", {}),
        ("scale", {"workers": 4}),
        ("workers", {}),
        ("stop", {"now": True}),
    ]


def test_pipelined_requests_on_one_connection_are_answered_in_order(daemon: Daemon) -> None:
    with raw_connect(daemon.path) as sock:
        sock.sendall(encode_request("resume") + encode_request("scale", {"workers": 2}))
        assert read_reply(sock) == {"v": 1, "ok": True, "result": {"state": "running"}}
        assert read_reply(sock) == {
            "v": 1,
            "ok": True,
            "result": {"previous": 1, "workers": 2, "configured": 1},
        }


def test_a_failing_command_is_an_error_reply_with_details(daemon: Daemon) -> None:
    with daemon.client() as client:
        with pytest.raises(ControlCommandFailed) as info:
            client.call("scale", workers=100)
        assert info.value.message == "too many workers"
        assert info.value.details == ("the limit is 64",)
        assert info.value.exit_code == 1
        assert client.call("resume") == {"state": "running"}


def test_a_failed_reload_sends_its_cause_and_details(daemon: Daemon) -> None:
    daemon.handler.reload_error = ControlCommandError(
        "pounce.toml: invalid configuration (2 errors)", ["server.workers: must be >= 1", "x"]
    )
    with pytest.raises(ControlCommandFailed) as info, daemon.client() as client:
        client.call("reload")
    assert info.value.message == "pounce.toml: invalid configuration (2 errors)"
    assert info.value.details == ("server.workers: must be >= 1", "x")


def test_an_unexpected_exception_is_logged_and_answered(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    daemon.handler.status_raises = RuntimeError("boom")
    with caplog.at_level(logging.ERROR, logger="pounce.error"), daemon.client() as client:
        with pytest.raises(ControlCommandFailed, match=r"internal error in status: RuntimeError"):
            client.call("status")
        assert client.call("resume") == {"state": "running"}
    [record] = [r for r in caplog.records if r.name == "pounce.error"]
    assert record.exc_info is not None
    assert "status" in record.getMessage()


def test_another_pounce_error_is_answered_with_its_message(daemon: Daemon) -> None:
    daemon.handler.status_raises = ControlError("not now", hint="try later")
    with pytest.raises(ControlCommandFailed, match=r"^not now \(try later\)$"):
        daemon.call("status")


@pytest.mark.parametrize(
    ("returned", "needle"),
    [
        ({"x": object()}, "not JSON-able"),
        ({"x": float("inf")}, "not JSON-able"),
        ({"blob": "x" * MAX_MESSAGE_SIZE}, "too large"),
        (["not", "a", "mapping"], "TypeError: the handler returned list"),
    ],
)
def test_a_reply_that_cannot_be_sent_becomes_an_error(
    daemon: Daemon, returned: object, needle: str
) -> None:
    daemon.handler.status_returns = returned
    with daemon.client() as client:
        with pytest.raises(ControlCommandFailed, match="internal error in status") as info:
            client.call("status")
        assert needle in info.value.message
        daemon.handler.status_returns = None
        assert client.call("status") == STATUS


def test_status_answers_while_a_reload_is_running(daemon: Daemon) -> None:
    gate = daemon.run(make_event())
    daemon.handler.reload_gate = gate
    with ThreadPoolExecutor(1) as pool:
        reload: Future[dict[str, Any]] = pool.submit(daemon.call, "reload", None)
        assert daemon.handler.reload_started.wait(WAIT)
        assert daemon.call("status") == STATUS
        assert not reload.done()
        daemon.loop.call_soon_threadsafe(gate.set)
        assert reload.result(WAIT)["generation"] == 3


def test_the_client_gives_up_after_its_timeout(daemon: Daemon) -> None:
    gate = daemon.run(make_event())
    daemon.handler.reload_gate = gate
    with pytest.raises(ControlError, match=r"no reply from the daemon within 0.2s"):
        daemon.call("reload", timeout=0.2)
    daemon.loop.call_soon_threadsafe(gate.set)
    assert daemon.call("resume") == {"state": "running"}


# -- bad clients --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"{nope", "message is not valid JSON"),
        (b"\xc3\x28", "message is not UTF-8"),
        (b"[]", "message must be a JSON object, not array"),
        (b'{"v": 2, "cmd": "status"}', "unsupported protocol version 2"),
        (b'{"v": 1, "cmd": "explode"}', "unknown command 'explode'"),
        (b'{"v": 1, "cmd": "scale", "args": {"workers": "many"}}', "scale: workers must be int"),
    ],
)
def test_a_malformed_request_gets_an_error_and_the_connection_goes_on(
    daemon: Daemon, payload: bytes, needle: str
) -> None:
    with raw_connect(daemon.path) as sock:
        reply = raw_exchange(sock, payload)
        assert reply is not None
        assert reply["v"] == 1
        assert reply["ok"] is False
        assert needle in reply["error"]
        assert reply["details"] == []
        good = raw_exchange(sock, json.dumps({"v": 1, "cmd": "resume"}).encode())
        assert good == {"v": 1, "ok": True, "result": {"state": "running"}}
    assert daemon.handler.calls == [("resume", {})]


def test_an_oversized_message_is_refused_and_the_connection_closed(daemon: Daemon) -> None:
    with raw_connect(daemon.path) as sock:
        sock.sendall(struct.pack(">I", MAX_MESSAGE_SIZE + 1) + b"{")
        reply = read_reply(sock)
        assert reply is not None
        assert reply["ok"] is False
        assert f"message too large: {MAX_MESSAGE_SIZE + 1} bytes" in reply["error"]
        assert read_reply(sock) is None
    assert daemon.call("status") == STATUS


def test_a_client_that_hangs_up_mid_message_does_not_disturb_the_server(daemon: Daemon) -> None:
    with raw_connect(daemon.path) as sock:
        sock.sendall(encode_request("status")[:6])
    with raw_connect(daemon.path) as sock:
        sock.sendall(encode_request("reload"))  # and leave without reading the reply
    assert daemon.handler.reload_started.wait(WAIT)
    assert daemon.call("status") == STATUS


def test_an_idle_connection_is_closed(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(idle_timeout=0.1)
    with raw_connect(daemon.path) as sock:
        assert sock.recv(1) == b""
    assert daemon.call("status") == STATUS


def test_a_request_not_whole_within_the_frame_timeout_is_dropped(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon(frame_timeout=0.2)
    with raw_connect(daemon.path) as sock:
        sock.sendall(encode_request("status")[:3])  # and never the rest
        assert sock.recv(1) == b""
    # A connection that sends nothing is dropped the same way.
    with raw_connect(daemon.path) as sock:
        assert sock.recv(1) == b""
    assert daemon.handler.calls == []
    assert daemon.call("status") == STATUS


def test_connections_past_the_cap_are_refused_at_once(
    make_daemon: Callable[..., Daemon], caplog: pytest.LogCaptureFixture
) -> None:
    daemon = make_daemon(max_connections=2)
    with caplog.at_level(logging.WARNING, logger="pounce.error"):
        held = [raw_connect(daemon.path) for _ in range(2)]
        try:
            for sock in held:  # both served: each answers a request
                assert raw_exchange(sock, b'{"v": 1, "cmd": "status"}') == {
                    "v": 1,
                    "ok": True,
                    "result": STATUS,
                }
            with raw_connect(daemon.path) as third:
                assert read_reply(third) == {
                    "v": 1,
                    "ok": False,
                    "error": "too many control connections",
                    "details": [],
                }
                assert third.recv(1) == b""
            with pytest.raises(ControlCommandFailed, match="too many control connections"):
                daemon.call("status")
        finally:
            for sock in held:
                sock.close()
    assert any("more than 2 connections at once" in r.getMessage() for r in caplog.records)
    # Once the held connections are gone, their places are free again.
    assert wait_for(lambda: _answers(daemon), WAIT)


def _answers(daemon: Daemon) -> bool:
    try:
        return daemon.call("status") == STATUS
    except ControlCommandFailed:
        return False


# -- the socket file ----------------------------------------------------------------------


def test_the_socket_is_0600_in_a_created_0700_directory(
    make_daemon: Callable[..., Daemon], sock_dir: Path
) -> None:
    path = sock_dir / "run" / "pounce" / "pounce.sock"
    make_daemon(path)
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_an_existing_directory_keeps_its_mode(
    make_daemon: Callable[..., Daemon], sock_dir: Path
) -> None:
    sock_dir.chmod(0o755)
    make_daemon(sock_dir / "pounce.sock")
    assert stat.S_IMODE(sock_dir.stat().st_mode) == 0o755


def test_a_directory_of_another_user_is_refused(
    make_daemon: Callable[..., Daemon], sock_dir: Path
) -> None:
    intruder = other_user()
    os.chown(sock_dir, intruder.pw_uid, intruder.pw_gid)
    with pytest.raises(ControlError, match=f"belongs to uid {intruder.pw_uid}") as caught:
        make_daemon(sock_dir / "pounce.sock")
    assert caught.value.hint is not None and "[control] socket" in caught.value.hint
    assert not (sock_dir / "pounce.sock").exists()


def test_a_directory_writable_by_others_is_refused_unless_sticky(
    make_daemon: Callable[..., Daemon], sock_dir: Path
) -> None:
    sock_dir.chmod(0o777)
    with pytest.raises(ControlError, match="writable by other users"):
        make_daemon(sock_dir / "pounce.sock")
    sock_dir.chmod(0o1777)  # as /tmp: no one may remove or rename another's file
    assert make_daemon(sock_dir / "pounce.sock").call("status") == STATUS


def test_a_configured_directory_writable_by_others_is_warned_about(
    make_daemon: Callable[..., Daemon], sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Kubernetes emptyDir is 0777: a configured directory may be, with a warning."""
    sock_dir.chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="pounce.error"):
        daemon = make_daemon(sock_dir / "pounce.sock", strict_directory=False)
    assert daemon.call("status") == STATUS
    assert any("writable by other users (mode 0777)" in r.getMessage() for r in caplog.records)
    # Its owner is still checked.
    intruder = other_user()
    os.chown(sock_dir, intruder.pw_uid, intruder.pw_gid)
    with pytest.raises(ControlError, match=f"belongs to uid {intruder.pw_uid}"):
        make_daemon(sock_dir / "other.sock", strict_directory=False)


def test_the_client_refuses_a_server_of_another_user(sock_dir: Path) -> None:
    """ctl checks who serves the socket (SO_PEERCRED) before it sends anything."""
    intruder = other_user()
    sock_dir.chmod(0o711)
    fake_dir = sock_dir / "intruder"
    fake_dir.mkdir()
    os.chown(fake_dir, intruder.pw_uid, intruder.pw_gid)
    path = str(fake_dir / "pounce.sock")
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:  # the intruder's process: listens (as the intruder) and serves
        try:
            os.close(ready_r)
            os.setgid(intruder.pw_gid)
            os.setuid(intruder.pw_uid)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen(1)
            os.write(ready_w, b"1")
            conn, _ = listener.accept()
            conn.settimeout(WAIT)
            os._exit(0 if conn.recv(1) == b"" else 1)  # not a byte may arrive
        finally:
            os._exit(2)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"1"
        with (
            pytest.raises(ControlError, match=f"of uid {intruder.pw_uid}.*refusing to talk"),
            ControlClient(path, timeout=WAIT) as client,
        ):
            client.call("stop", now=False)
    finally:
        os.close(ready_r)
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_close_unlinks_the_socket_and_clients_see_no_daemon(daemon: Daemon) -> None:
    assert daemon.server.serving
    daemon.run(daemon.server.close())
    assert not daemon.server.serving
    assert not os.path.exists(daemon.path)
    with pytest.raises(DaemonNotRunning, match="no socket there") as info:
        daemon.call("status")
    assert info.value.exit_code == 3
    daemon.run(daemon.server.close())  # closing twice is harmless


def test_a_stale_socket_is_replaced(make_daemon: Callable[..., Daemon], sock_dir: Path) -> None:
    path = sock_dir / "pounce.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # a daemon that died without cleaning up
    with pytest.raises(DaemonNotRunning, match="connection refused"):
        ControlClient(str(path)).call("status")  # fails: nothing to close
    daemon = make_daemon(path)
    assert daemon.call("status") == STATUS


def test_a_live_socket_is_refused(make_daemon: Callable[..., Daemon], daemon: Daemon) -> None:
    with pytest.raises(ControlError, match="another process is listening on"):
        make_daemon(Path(daemon.path))
    assert daemon.call("status") == STATUS


def test_a_file_that_is_not_a_socket_is_left_alone(
    make_daemon: Callable[..., Daemon], sock_dir: Path
) -> None:
    path = sock_dir / "pounce.sock"
    path.write_text("precious")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        make_daemon(path)
    assert path.read_text() == "precious"


def test_an_unbindable_path_is_a_control_error(make_daemon: Callable[..., Daemon]) -> None:
    with pytest.raises(ControlError, match="cannot bind the control socket"):
        make_daemon(Path("/tmp/" + "x" * 200 + ".sock"))


def test_starting_twice_is_refused(daemon: Daemon) -> None:
    with pytest.raises(ControlError, match="already started"):
        daemon.run(daemon.server.start())


def test_close_ends_commands_in_flight(daemon: Daemon) -> None:
    daemon.handler.reload_gate = daemon.run(make_event())
    with ThreadPoolExecutor(1) as pool:
        reload = pool.submit(daemon.call, "reload", None)
        assert daemon.handler.reload_started.wait(WAIT)
        daemon.run(daemon.server.close())
        with pytest.raises(ControlError, match="closed the connection without a reply"):
            reload.result(WAIT)


def test_a_stop_command_may_close_the_server_and_still_reply(daemon: Daemon) -> None:
    daemon.handler.on_stop = daemon.server.close
    assert daemon.call("stop") == {"state": "stopping"}
    assert not os.path.exists(daemon.path)


def test_an_after_reply_hook_runs_once_the_reply_is_written(daemon: Daemon) -> None:
    # The handler acts only through the hook: the client has its answer first, even
    # though the hook closes the server (as the daemon's stop does).
    ran: list[bool] = []

    def then() -> None:
        ran.append(daemon.server.serving)
        daemon.loop.create_task(daemon.server.close())

    async def stop(now: bool) -> AfterReply:
        return AfterReply({"state": "stopping", "now": now}, then)

    daemon.handler.stop = stop  # type: ignore[method-assign]
    with daemon.client() as client:
        assert client.call("stop", now=True) == {"state": "stopping", "now": True}
    assert wait_for(lambda: not os.path.exists(daemon.path))
    assert ran == [True]


# -- who may connect ----------------------------------------------------------------------

# The interpreter may live where `nobody` cannot read it (e.g. under /root), so the
# child starts as root, imports the client, then drops to nobody before connecting:
# SO_PEERCRED reports the credentials of the process at connect() time.
AS_NOBODY = """
import os, sys
from pounce.control.client import ControlClient
from pounce.errors import ControlError
uid, gid = int(sys.argv[2]), int(sys.argv[3])
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
try:
    with ControlClient(sys.argv[1], timeout=10) as client:
        client.call("status")
except ControlError as exc:
    print(type(exc).__name__, exc.message)
else:
    print("allowed")
"""


def run_as_nobody(path: str) -> str:
    nobody = pwd.getpwnam("nobody")
    result = subprocess.run(
        [sys.executable, "-c", AS_NOBODY, path, str(nobody.pw_uid), str(nobody.pw_gid)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_another_user_gets_permission_denied_from_the_peer_check(
    daemon: Daemon, sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert os.geteuid() == 0, "this test drops privileges to nobody"
    sock_dir.chmod(0o711)
    os.chmod(daemon.path, 0o666)  # let nobody past the file mode, up to SO_PEERCRED
    with caplog.at_level(logging.WARNING, logger="pounce.error"):
        assert run_as_nobody(daemon.path) == "ControlCommandFailed permission denied"
    assert daemon.handler.calls == []
    assert any("permission denied" in r.getMessage() for r in caplog.records)
    assert daemon.call("status") == STATUS


def test_another_user_is_stopped_by_the_socket_mode(daemon: Daemon, sock_dir: Path) -> None:
    sock_dir.chmod(0o711)
    assert run_as_nobody(daemon.path) == (
        f"ControlError permission denied on control socket {daemon.path}"
    )
    assert daemon.handler.calls == []


def test_a_reply_sent_before_hanging_up_is_still_read(sock_dir: Path) -> None:
    """The daemon may answer and close before reading the request ("permission denied"):
    the client's send then fails, and it reads the reply that is already there."""
    path = str(sock_dir / "early.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        client = ControlClient(path, timeout=WAIT)
        client._connect()
        conn, _ = listener.accept()
        with conn:
            conn.sendall(encode_error("permission denied"))
        with pytest.raises(ControlCommandFailed, match=r"^permission denied$"), client:
            client.call("status", padding="x" * 500_000)


def test_a_garbled_reply_is_a_control_error(sock_dir: Path) -> None:
    path = str(sock_dir / "garbled.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        with ControlClient(path, timeout=WAIT) as client:
            client._connect()
            conn, _ = listener.accept()
            with conn:
                conn.sendall(struct.pack(">I", 5) + b"hello")
                with pytest.raises(ControlError, match="message is not valid JSON"):
                    client.call("status")
