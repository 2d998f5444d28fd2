"""WebSocket clients shared by the WebSocket suites (test_websocket, test_ws_h2,
test_ws_deflate_bomb, test_ws_connections).

``upgrade_request`` and ``RawReader`` speak HTTP/1.1 WebSocket as raw bytes on a socket;
``H2WebSocketClient`` opens WebSockets over HTTP/2 (RFC 8441 extended CONNECT), written
with ``h2`` (the client side of its state machine) and wsproto's frame layer.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
from wsproto.connection import Connection, ConnectionType
from wsproto.events import Event, Message, TextMessage

from helpers.server import Server

KEY = base64.b64encode(b"0123456789abcdef").decode()


def upgrade_request(path: str = "/echo", *, extra: str = "", version: str = "13") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    ).encode()


class RawReader:
    """Reads a 101 head, then unmasked server frames, from a raw socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), self.buf
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head

    def frame(self) -> tuple[int, bytes] | None:
        """(opcode, payload), or None at EOF."""
        while True:
            if len(self.buf) >= 2:
                length = self.buf[1] & 0x7F
                assert length < 126
                if len(self.buf) >= 2 + length:
                    opcode, payload = self.buf[0] & 0x0F, self.buf[2 : 2 + length]
                    self.buf = self.buf[2 + length :]
                    return opcode, payload
            if not self._fill():
                return None


class H2WebSocketClient:
    """One HTTP/2 connection; ``open()`` starts a WebSocket stream on it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.data: dict[int, bytes] = {}
        self.ended: set[int] = set()
        self.reset: set[int] = set()
        self.after_goaway = False
        self._buffer = b""
        self.response: dict[int, dict[bytes, bytes]] = {}
        self._flush()
        self.pump_until(lambda: self.h2.remote_settings.enable_connect_protocol == 1)

    def _flush(self) -> None:
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump_until(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; events: {self.events}"
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed; events: {self.events}"
            self._receive(chunk)

    def pump_for(self, seconds: float) -> None:
        """Process what arrives for ``seconds``, without waiting past them."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return
            assert chunk, f"connection closed; events: {self.events}"
            self._receive(chunk)

    def _receive(self, chunk: bytes) -> None:
        # One frame at a time, so that the GOAWAY below can be handled before what follows.
        self._buffer += chunk
        while len(self._buffer) >= 9:
            size = 9 + int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < size:
                break
            frame, self._buffer = self._buffer[:size], self._buffer[size:]
            self._frame(frame)
        self._flush()

    def _frame(self, frame: bytes) -> None:
        for event in self.h2.receive_data(frame):
            self.events.append(event)
            if isinstance(event, h2.events.ResponseReceived):
                assert event.stream_id is not None and event.headers is not None
                self.response[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                assert event.stream_id is not None and event.data is not None
                sid = event.stream_id
                self.data[sid] = self.data.get(sid, b"") + event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length or 0, sid)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id or 0)
            elif isinstance(event, h2.events.StreamReset):
                self.reset.add(event.stream_id or 0)
            elif isinstance(event, h2.events.ConnectionTerminated) and self.after_goaway:
                # A graceful GOAWAY lets open streams finish (RFC 9113 §6.8), but h2's
                # client state machine takes no frame after one: keep it open.
                self.h2.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN

    def open(
        self, path: str, *, scheme: str = "https", extra: list[tuple[bytes, bytes]] | None = None
    ) -> H2WebSocket:
        sid = self.h2.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", scheme.encode()),
            (b":path", path.encode()),
            (b":authority", b"localhost"),
            (b"sec-websocket-version", b"13"),
            *(extra or []),
        ]
        self.h2.send_headers(sid, headers)
        self._flush()
        self.pump_until(lambda: sid in self.response or sid in self.reset)
        return H2WebSocket(self, sid)


class H2WebSocket:
    def __init__(self, client: H2WebSocketClient, stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id
        self.ws = Connection(ConnectionType.CLIENT)
        self.pending: list[Event] = []
        self._fed = 0

    @property
    def status(self) -> bytes:
        return self.client.response[self.stream_id][b":status"]

    def send(self, event: Event) -> None:
        """Send one event's frames, as far as the server's windows allow at a time."""
        conn, data = self.client.h2, self.ws.send(event)
        while data:
            self.client.pump_until(lambda: conn.local_flow_control_window(self.stream_id) > 0)
            size = min(conn.local_flow_control_window(self.stream_id), conn.max_outbound_frame_size)
            conn.send_data(self.stream_id, data[:size])
            data = data[size:]
            self.client._flush()

    def _events(self) -> None:
        data = self.client.data.get(self.stream_id, b"")
        if len(data) > self._fed:
            self.ws.receive_data(data[self._fed :])
            self._fed = len(data)
            self.pending += list(self.ws.events())

    def next(self, timeout: float = 10.0) -> Event:
        def ready() -> bool:
            self._events()
            return bool(self.pending)

        self.client.pump_until(ready, timeout)
        return self.pending.pop(0)

    def message(self) -> str | bytes:
        parts: list[Any] = []
        while True:
            event = self.next()
            assert isinstance(event, Message), event
            parts.append(event.data)
            if event.message_finished:
                return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)

    def ended(self) -> bool:
        return self.stream_id in self.client.ended


def h2c(server: Server) -> H2WebSocketClient:
    """An HTTP/2 connection with prior knowledge, in cleartext (close ``client.sock``)."""
    return H2WebSocketClient(socket.create_connection((server.host, server.port), timeout=10))
