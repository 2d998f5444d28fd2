"""``[limits] max_connections`` in one worker over fake transports: admission on
connection_made, the refusal's answers (503 after the request head, GOAWAY on the
HTTP/2 preface, 503 on a client that sends nothing), the shed counter, and the place
given back when an admitted connection closes."""

from __future__ import annotations

from typing import Any

from hyperframe.frame import Frame, GoAwayFrame, SettingsFrame

from helpers.fakes import Bridge, FakeTransport, run_loop, wait_until
from pounce.types import Receive, Scope, Send
from pounce.worker import h2hooks
from pounce.worker.connection import HTTPConnection
from pounce.worker.refusal import H2_PREFACE, Refusal


async def hello_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


LIMIT = {"limits.max_connections": 1, "limits.retry_after": 9}


def _connect(bridge: Bridge) -> tuple[HTTPConnection, FakeTransport]:
    conn = HTTPConnection(bridge.state, None)
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport


def _frames(data: bytes) -> list[Any]:
    frames = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


def test_a_connection_over_the_limit_gets_503_after_its_request_head() -> None:
    async def main() -> None:
        bridge = Bridge(hello_app, **LIMIT)  # admitted: it holds the one place
        assert bridge.conn in bridge.state.connections
        conn, transport = _connect(bridge)
        refusal = transport.protocol
        assert isinstance(refusal, Refusal)
        assert conn not in bridge.state.connections  # not counted
        assert bridge.state.metrics.shed == {"max_connections": 1}
        refusal.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert transport.data == b""  # the head is not in yet
        refusal.data_received(b"\r\n")
        head, _, body = transport.data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"\r\nretry-after: 9\r\n" in head + b"\r\n"
        assert b"\r\nconnection: close" in head
        assert body == b"Service Unavailable: too many connections\n"
        assert transport.eof_written and not transport.closed  # FIN, then the client's
        refusal.data_received(b"more")  # dropped
        assert refusal.eof_received() is None
        assert transport.closed
        refusal.connection_lost(None)

    run_loop(main)


def test_the_http2_preface_over_the_limit_gets_settings_and_goaway() -> None:
    async def main() -> None:
        bridge = Bridge(hello_app, **LIMIT)
        bridge.state.hooks.on_first_bytes = h2hooks.on_first_bytes  # (h2c on, as in a worker)
        _, transport = _connect(bridge)
        refusal = transport.protocol
        assert isinstance(refusal, Refusal)
        refusal.data_received(H2_PREFACE[:10])
        frames = _frames(transport.data)
        assert isinstance(frames[0], SettingsFrame) and not frames[0].settings
        goaway = frames[1]
        assert isinstance(goaway, GoAwayFrame)
        assert (goaway.last_stream_id, goaway.error_code) == (0, 0)
        assert transport.eof_written
        refusal.connection_lost(None)

    run_loop(main)


def test_a_silent_client_over_the_limit_still_gets_503() -> None:
    async def main() -> None:
        bridge = Bridge(hello_app, **LIMIT, **{"http.header_timeout": 0.01})
        _, transport = _connect(bridge)
        await wait_until(lambda: transport.eof_written, "503 to a silent client")
        assert transport.data.startswith(b"HTTP/1.1 503 ")
        refusal = transport.protocol
        assert isinstance(refusal, Refusal)
        refusal.eof_received()  # the client read it and closed
        assert transport.closed
        refusal.connection_lost(None)

    run_loop(main)


def test_a_closed_connection_gives_its_place_back() -> None:
    async def main() -> None:
        bridge = Bridge(hello_app, **LIMIT)
        limit = bridge.state.connection_limit
        assert limit is not None and limit.held == 1
        bridge.close()  # connection_lost
        assert limit.held == 0
        conn, transport = _connect(bridge)
        assert conn in bridge.state.connections and transport.protocol is None
        assert limit.held == 1
        transport.closed = True
        conn.connection_lost(None)
        assert limit.held == 0

    run_loop(main)
