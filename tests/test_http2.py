"""HTTP/2 end to end: curl, httpx and h2load over TLS (ALPN) and cleartext (prior
knowledge, Upgrade: h2c); flow control both ways, trailers, errors per stream,
limits, special routes and a graceful GOAWAY on shutdown."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
from hyperframe.frame import DataFrame, PingFrame

from helpers.server import Server
from helpers.tls import APP, Peer, Pki, tls_ready
from helpers.tools import require_tool

pytestmark = pytest.mark.slow


def _serve_tls(serve: Callable[..., Server], pki: Pki, **env: str) -> Server:
    server = serve(APP, env=pki.env(**env), ready=False)
    tls_ready(server, pki)
    return server


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", *args], capture_output=True, text=True, timeout=30
    )


# -- clients -------------------------------------------------------------------------


def test_curl_http2_over_tls(serve: Callable[..., Server], pki: Pki) -> None:
    server = _serve_tls(serve, pki)
    result = _curl(
        "-k",
        "--http2",
        "-w",
        "\n%{http_version} %{http_code}",
        f"https://127.0.0.1:{server.port}/scope",
    )
    assert result.returncode == 0, result.stderr
    text, _, version = result.stdout.rpartition("\n")
    assert version == "2 200"
    body = json.loads(text)
    assert body["scheme"] == "https"
    assert body["http_version"] == "2"
    assert body["tls"]["tls_version"] in (0x0303, 0x0304)
    assert body["trailers"] is True
    assert server.wait_output('"GET /scope HTTP/2" 200'), server.output  # access log


def test_curl_prior_knowledge(serve: Callable[..., Server]) -> None:
    server = serve(APP)
    result = _curl("--http2-prior-knowledge", "-i", "--data-binary", "hello", f"{server.url}/echo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/2 200")
    assert result.stdout.endswith("hello")


def test_curl_upgrade_h2c(serve: Callable[..., Server]) -> None:
    server = serve(APP)
    result = _curl("--http2", "-v", "-w", "\n%{http_version} %{http_code}", f"{server.url}/scope")
    assert result.returncode == 0, result.stderr
    assert "HTTP/1.1 101 Switching Protocols" in result.stderr
    text, _, version = result.stdout.rpartition("\n")
    assert version == "2 200"
    body = json.loads(text)
    assert body == {"scheme": "http", "http_version": "2", "tls": None, "trailers": True}


def test_h2c_can_be_turned_off(serve: Callable[..., Server]) -> None:
    server = serve(APP, env={"POUNCE_HTTP2_H2C": "false"})
    result = _curl("--http2", "-i", f"{server.url}/scope")
    assert result.stdout.startswith("HTTP/1.1 200")
    result = _curl("--http2-prior-knowledge", f"{server.url}/scope")
    assert result.returncode != 0


def test_http2_disabled_keeps_alpn_to_http11(serve: Callable[..., Server], pki: Pki) -> None:
    server = _serve_tls(serve, pki, POUNCE_HTTP2_ENABLED="false")
    result = _curl("-k", "--http2", "-i", f"https://127.0.0.1:{server.port}/scope")
    assert result.stdout.startswith("HTTP/1.1 200"), result.stdout + result.stderr


def test_httpx_http2_over_tls(serve: Callable[..., Server], pki: Pki) -> None:
    server = _serve_tls(serve, pki, POUNCE_HEALTH_PUBLIC="true")
    base = f"https://localhost:{server.port}"
    with httpx.Client(http2=True, verify=pki.client_context()) as client:
        replies = [client.get(f"{base}/scope") for _ in range(5)]
        assert all(r.http_version == "HTTP/2" for r in replies)
        assert replies[0].json()["http_version"] == "2"
        big = client.get(f"{base}/big", params={"n": 3_000_000})
        assert big.status_code == 200 and len(big.content) == 3_000_000
        upload = b"u" * 2_000_000
        echo = client.post(f"{base}/echo", content=upload)
        assert echo.content == upload
        assert client.get(f"{base}/health/live").status_code == 200
        boom = client.get(f"{base}/boom")
        assert boom.status_code == 500 and boom.http_version == "HTTP/2"
        assert client.get(f"{base}/scope").status_code == 200  # the connection lives on


def test_h2load(serve: Callable[..., Server], pki: Pki) -> None:
    h2load = require_tool("h2load", "nghttp2-client")
    server = _serve_tls(serve, pki, POUNCE_LOGGING_ACCESS_LOG="false")
    result = subprocess.run(
        [h2load, "-n", "2000", "-c", "4", "-m", "10", f"https://127.0.0.1:{server.port}/scope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Application protocol: h2" in result.stdout
    assert re.search(r"2000 succeeded, 0 failed, 0 errored", result.stdout), result.stdout
    assert "status codes: 2000 2xx" in result.stdout


# -- a raw h2 client -------------------------------------------------------------------


class Client:
    """An ``h2`` client on a blocking socket; every read has a deadline."""

    def __init__(self, server: Server, *, window: int | None = None) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        if window is not None:
            self.conn.local_settings.initial_window_size = window
        self.conn.initiate_connection()
        self.flush()
        self.events: list[h2.events.Event] = []
        self.closed = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, *, method: str = "GET", end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":scheme", "http"), (":path", path), (":authority", "x")]
        self.conn.send_headers(sid, headers, end_stream=end)
        self.flush()
        return sid

    def pump(self, until: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return until()
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                continue
            self.events += self.conn.receive_data(data)
            self.flush()
        return True

    def of(self, kind: type, stream_id: int | None = None) -> list[h2.events.Event]:
        return [
            e
            for e in self.events
            if isinstance(e, kind)
            and (stream_id is None or getattr(e, "stream_id", None) == stream_id)
        ]

    def body(self, stream_id: int) -> bytes:
        return b"".join(e.data for e in self.of(h2.events.DataReceived, stream_id))  # type: ignore[attr-defined]

    def ended(self, stream_id: int) -> bool:
        return bool(
            self.of(h2.events.StreamEnded, stream_id) or self.of(h2.events.StreamReset, stream_id)
        )


@pytest.fixture
def client(serve: Callable[..., Server]) -> Iterator[Client]:
    c = Client(serve(APP))
    yield c
    c.sock.close()


def test_slow_reader_holds_the_server_to_the_window(serve: Callable[..., Server]) -> None:
    server = serve(APP)
    c = Client(server)
    sid = c.request("/big?n=1000000")
    # The client never acknowledges: the server may send one initial window (65535).
    assert c.pump(lambda: len(c.body(sid)) >= 65535)
    assert not c.pump(lambda: len(c.body(sid)) > 65535, timeout=1.0)
    # Opening the windows lets the rest through.
    received = len(c.body(sid))
    c.conn.increment_flow_control_window(1_000_000)
    c.conn.increment_flow_control_window(1_000_000, stream_id=sid)
    c.flush()
    assert c.pump(lambda: c.ended(sid))
    assert len(c.body(sid)) == 1_000_000 > received
    c.sock.close()


def test_trailers(client: Client) -> None:
    sid = client.request("/trailers")
    assert client.pump(lambda: client.ended(sid))
    assert client.body(sid) == b"with trailers"
    trailers = client.of(h2.events.TrailersReceived, sid)
    assert trailers and list(trailers[0].headers) == [(b"x-checksum", b"ok")]  # type: ignore[attr-defined]


def test_app_failure_after_start_resets_only_its_stream(client: Client) -> None:
    late = client.request("/boom-late")
    assert client.pump(lambda: client.ended(late))
    reset = client.of(h2.events.StreamReset, late)
    assert reset and reset[0].error_code == 2  # type: ignore[attr-defined]  # INTERNAL_ERROR
    ok = client.request("/scope")
    assert client.pump(lambda: client.ended(ok))
    assert json.loads(client.body(ok))["http_version"] == "2"


def test_body_over_the_limit_is_413(serve: Callable[..., Server]) -> None:
    server = serve(APP, env={"POUNCE_HTTP_MAX_BODY_SIZE": "1000"})
    c = Client(server)
    sid = c.conn.get_next_available_stream_id()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/echo"),
        (":authority", "x"),
        ("content-length", "5000"),
    ]
    c.conn.send_headers(sid, headers)
    c.flush()
    assert c.pump(lambda: bool(c.of(h2.events.ResponseReceived, sid)))
    response = c.of(h2.events.ResponseReceived, sid)[0]
    assert dict(response.headers)[b":status"] == b"413"  # type: ignore[attr-defined]
    # Without a content-length, going over the limit resets the stream.
    sid2 = c.request("/echo", method="POST", end=False)
    c.conn.send_data(sid2, b"x" * 1500)
    c.flush()
    assert c.pump(lambda: bool(c.of(h2.events.StreamReset, sid2)))
    c.sock.close()


def test_concurrent_streams_interleave(client: Client) -> None:
    slow = client.request("/slow?key=interleave")
    fast = client.request("/scope")
    assert client.pump(lambda: client.ended(fast))
    assert not client.ended(slow)
    release = client.request("/release?key=interleave")
    assert client.pump(lambda: client.ended(slow) and client.ended(release))
    assert client.body(slow) == b"done"


def test_shutdown_sends_goaway_and_finishes_streams_in_flight(
    serve: Callable[..., Server],
) -> None:
    server = serve(APP)
    peer = Peer(server)  # frame level: an h2 client stops sending once it sees GOAWAY
    peer.start()
    peer.send(peer.headers(1, "/echo"), PingFrame(0, opaque_data=b"in-fligh"))
    peer.wait_for(PingFrame, flags={"ACK"})  # the stream is open on the server
    server.signal(signal.SIGTERM)
    goaway = peer.goaway()
    assert (goaway.error_code, goaway.last_stream_id) == (0, 1)
    peer.send(DataFrame(1, b"finish me", flags=["END_STREAM"]))
    data = peer.wait_for(DataFrame, stream_id=1)
    assert isinstance(data, DataFrame) and data.data == b"finish me"
    list(peer.frames(10))
    assert peer.closed
    peer.close()
    assert server.proc.wait(20) == 0


def test_idle_connection_gets_goaway(serve: Callable[..., Server]) -> None:
    server = serve(APP, "--keep-alive-timeout", "0.5")
    c = Client(server)
    sid = c.request("/scope")
    assert c.pump(lambda: c.ended(sid))
    assert c.pump(lambda: bool(c.of(h2.events.ConnectionTerminated)), timeout=10)
    assert c.pump(lambda: c.closed)
    c.sock.close()


def test_tls_client_without_alpn_gets_http11(serve: Callable[..., Server], pki: Pki) -> None:
    server = _serve_tls(serve, pki)
    ctx = pki.client_context()
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as s,
    ):
        assert s.selected_alpn_protocol() is None
        s.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert s.recv(12) == b"HTTP/1.1 200"
