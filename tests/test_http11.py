"""HTTP/1.1 conformance on real sockets: keep-alive, pipelining, chunked bodies,
``Expect: 100-continue``, HEAD, HTTP/1.0 and ``Connection: close``.

Well-formed traffic goes through httpx where it is enough; exact wire behaviour is checked
with raw sockets (``helpers.wire.Wire``).  References: RFC 9112, RFC 9110.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator

import httpx
import pytest

from helpers.server import Server, start_server, wait_for
from helpers.wire import Wire, chunked, request

pytestmark = pytest.mark.slow

APP = "apps.http_echo:app"


class _Shared:
    """A server shared by the tests of this module; restarted if a test killed it."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.server: Server | None = None

    def get(self) -> Server:
        if self.server is None or self.server.proc.poll() is not None:
            self.server = start_server(APP, *self.args)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            if self.server.proc.stdout is not None:
                self.server.proc.stdout.close()


@pytest.fixture(scope="module")
def _shared() -> Iterator[_Shared]:
    # One worker: the /gate and /open routes share state in the app module.
    shared = _Shared("--workers", "1")
    yield shared
    shared.stop()


@pytest.fixture
def server(_shared: _Shared) -> Server:
    return _shared.get()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as c:
        yield c


def wire_to(server: Server) -> Wire:
    return Wire.open(server.host, server.port)


def gate_state(server: Server, key: str) -> str:
    with httpx.Client(trust_env=False, timeout=10) as c:
        return c.get(f"{server.url}/gate-state", params={"key": key}).text


def open_gate(server: Server, key: str) -> None:
    with httpx.Client(trust_env=False, timeout=10) as c:
        assert c.get(f"{server.url}/open", params={"key": key}).status_code == 200


# -- keep-alive -------------------------------------------------------------------------


def test_keep_alive_several_requests_on_one_connection(server: Server) -> None:
    with wire_to(server) as wire:
        ports = set()
        for i in range(3):
            wire.send(request("POST", f"/echo?i={i}", body=f"body-{i}".encode()))
            response = wire.read_response()
            assert response.status_line.startswith("HTTP/1.1 200")
            assert response.body == f"body-{i}".encode()
            assert response.header("x-query") == f"i={i}"
            assert "close" not in response.connection_tokens()
            ports.add(response.header("x-client-port"))
        assert len(ports) == 1
        # still open: one more request works after the loop
        wire.send(request("GET", "/fixed"))
        assert wire.read_response().body == b"hello world"


def test_keep_alive_with_httpx_reuses_the_connection(server: Server, client: httpx.Client) -> None:
    ports = {
        client.get(f"{server.url}/echo", params={"i": i}).headers["x-client-port"] for i in range(4)
    }
    assert len(ports) == 1


def test_scope_sees_method_path_query_and_version(server: Server, client: httpx.Client) -> None:
    response = client.request("PUT", f"{server.url}/some/path?a=1&b=2", content=b"xyz")
    assert response.status_code == 200
    assert response.headers["x-method"] == "PUT"
    assert response.headers["x-path"] == "/some/path"
    assert response.headers["x-query"] == "a=1&b=2"
    assert response.headers["x-http-version"] == "1.1"
    assert response.content == b"xyz"


# -- pipelining -------------------------------------------------------------------------


def test_pipelined_requests_answered_in_order(server: Server) -> None:
    batch = (
        request("GET", "/echo?n=1")
        + request("POST", "/echo?n=2", body=b"second body")
        + request("GET", "/fixed")
        + request(
            "POST", "/echo?n=4", headers=[("Transfer-Encoding", "chunked")], content_length=False
        )
        + chunked(b"fourth", b" body")
        + request("GET", "/stream?n=2")
        + request("GET", "/echo?n=6")
    )
    with wire_to(server) as wire:
        wire.send(batch)
        responses = [wire.read_response() for _ in range(6)]
    assert [r.status for r in responses] == [200] * 6
    assert responses[0].header("x-query") == "n=1"
    assert responses[0].body == b""
    assert (responses[1].header("x-query"), responses[1].body) == ("n=2", b"second body")
    assert responses[2].body == b"hello world"
    assert (responses[3].header("x-query"), responses[3].body) == ("n=4", b"fourth body")
    assert responses[4].body == b"part-0;part-1;"
    assert responses[5].header("x-query") == "n=6"


def test_pipelined_requests_byte_by_byte(server: Server) -> None:
    """The parser copes with requests split at every possible byte boundary."""
    batch = request("POST", "/echo?n=1", body=b"ab") + request("GET", "/echo?n=2")
    with wire_to(server) as wire:
        for i in range(len(batch)):
            wire.send(batch[i : i + 1])
        first = wire.read_response()
        second = wire.read_response()
    assert (first.status, first.body, first.header("x-query")) == (200, b"ab", "n=1")
    assert (second.status, second.header("x-query")) == (200, "n=2")


def test_pipelined_slow_first_request_keeps_response_order(server: Server) -> None:
    key = "pipeline-order"
    with wire_to(server) as wire:
        wire.send(request("POST", f"/gate?key={key}", body=b"first") + request("GET", "/echo?n=2"))
        assert wait_for(lambda: gate_state(server, key) == "waiting", timeout=10)
        # The second request must not be answered before the first one.
        assert wire.pending() == b""
        open_gate(server, key)
        first = wire.read_response()
        second = wire.read_response()
    assert (first.status, first.body) == (200, b"first")
    assert (second.status, second.header("x-query")) == (200, "n=2")


# -- chunked request bodies ---------------------------------------------------------------


def test_chunked_request_body(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(
            request(
                "POST", "/echo", headers=[("Transfer-Encoding", "chunked")], content_length=False
            )
            + chunked(b"hello", b", ", b"world" * 100)
        )
        response = wire.read_response()
    assert response.status == 200
    assert response.body == b"hello, " + b"world" * 100
    assert response.header("x-body-length") == str(7 + 500)


def test_chunked_request_body_sent_in_pieces(server: Server) -> None:
    body = chunked(b"a" * 10, b"b" * 300, b"c")
    with wire_to(server) as wire:
        wire.send(
            request(
                "POST", "/echo", headers=[("Transfer-Encoding", "chunked")], content_length=False
            )
        )
        for i in range(0, len(body), 7):
            wire.send(body[i : i + 7])
        response = wire.read_response()
    assert response.status == 200
    assert response.body == b"a" * 10 + b"b" * 300 + b"c"


def test_chunked_request_with_extensions_and_trailers(server: Server) -> None:
    body = b'5;name=value\r\nhello\r\n6;a;b="q"\r\n world\r\n0;last\r\nX-Trailer: yes\r\n\r\n'
    with wire_to(server) as wire:
        wire.send(
            request(
                "POST", "/echo", headers=[("Transfer-Encoding", "chunked")], content_length=False
            )
            + body
        )
        response = wire.read_response()
        assert response.status == 200
        assert response.body == b"hello world"
        # framing stayed correct: the connection is reusable
        wire.send(request("GET", "/fixed"))
        assert wire.read_response().body == b"hello world"


def test_chunked_request_uppercase_hex_and_empty_body(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(
            request(
                "POST", "/echo", headers=[("Transfer-Encoding", "chunked")], content_length=False
            )
            + b"A\r\n0123456789\r\n0\r\n\r\n"
            + request(
                "POST",
                "/echo?empty",
                headers=[("Transfer-Encoding", "chunked")],
                content_length=False,
            )
            + b"0\r\n\r\n"
        )
        first = wire.read_response()
        second = wire.read_response()
    assert first.body == b"0123456789"
    assert (second.status, second.body, second.header("x-query")) == (200, b"", "empty")


def test_chunked_request_body_with_httpx(server: Server, client: httpx.Client) -> None:
    def parts() -> Iterator[bytes]:
        yield b"one,"
        yield b"two,"
        yield b"three"

    response = client.post(f"{server.url}/echo", content=parts())
    assert response.status_code == 200
    assert response.content == b"one,two,three"


# -- chunked response bodies --------------------------------------------------------------


def test_streaming_response_without_length_is_chunked(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(request("GET", "/stream?n=3"))
        response = wire.read_response()
        assert response.status == 200
        assert response.chunked, response.raw
        assert response.header("transfer-encoding").lower() == "chunked"
        assert response.header("content-length") is None
        assert response.body == b"part-0;part-1;part-2;"
        # the connection stays usable after the terminating chunk
        wire.send(request("GET", "/fixed"))
        assert wire.read_response().body == b"hello world"


def test_streaming_response_with_length_is_not_chunked(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(request("GET", "/stream?n=3&length=1"))
        response = wire.read_response()
    assert response.status == 200
    assert response.header("transfer-encoding") is None
    assert response.header("content-length") == "21"
    assert response.body == b"part-0;part-1;part-2;"


def test_streaming_response_with_httpx(server: Server, client: httpx.Client) -> None:
    with client.stream("GET", f"{server.url}/stream", params={"n": 50}) as response:
        body = b"".join(response.iter_bytes())
    assert response.headers["transfer-encoding"] == "chunked"
    assert body == b"".join(f"part-{i};".encode() for i in range(50))


# -- Expect: 100-continue ---------------------------------------------------------------


def test_expect_100_continue_then_final_response(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(
            request(
                "POST",
                "/echo",
                headers=[("Expect", "100-continue"), ("Content-Length", "5")],
                content_length=False,
            )
        )
        interim = wire.read_response()
        assert interim.status_line.startswith("HTTP/1.1 100"), interim.raw
        wire.send(b"hello")
        final = wire.read_response()
        assert (final.status, final.body) == (200, b"hello")
        # the connection continues normally
        wire.send(request("GET", "/fixed"))
        assert wire.read_response().body == b"hello world"


def test_expect_100_continue_only_when_the_app_reads(server: Server) -> None:
    key = "expect-continue"
    with wire_to(server) as wire:
        wire.send(
            request(
                "POST",
                f"/gate?key={key}",
                headers=[("Expect", "100-continue"), ("Content-Length", "4")],
                content_length=False,
            )
        )
        assert wait_for(lambda: gate_state(server, key) == "waiting", timeout=10)
        # The app is running but has not called receive(): no 100 Continue yet.
        assert wire.pending() == b""
        open_gate(server, key)
        interim = wire.read_response()
        assert interim.status_line.startswith("HTTP/1.1 100"), interim.raw
        wire.send(b"data")
        final = wire.read_response()
    assert (final.status, final.body) == (200, b"data")


def test_expect_100_continue_not_sent_when_app_does_not_read(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(
            request(
                "POST",
                "/noread",
                headers=[("Expect", "100-continue"), ("Content-Length", "5")],
                content_length=False,
            )
        )
        response = wire.read_response()
    assert response.status == 200, response.raw
    assert response.body == b"no-read"


def test_expect_100_continue_with_body_sent_immediately(server: Server) -> None:
    """A client may send the body without waiting for 100 (RFC 9110 §10.1.1)."""
    with wire_to(server) as wire:
        wire.send(request("POST", "/echo", headers=[("Expect", "100-continue")], body=b"eager"))
        response = wire.read_response(skip_interim=True)
        assert (response.status, response.body) == (200, b"eager")
        wire.send(request("GET", "/fixed"))
        assert wire.read_response(skip_interim=True).body == b"hello world"


# -- HEAD -------------------------------------------------------------------------------


def test_head_has_no_body_but_keeps_content_length(server: Server) -> None:
    with wire_to(server) as wire:
        # pipelined: any body byte after the HEAD response would corrupt the next one
        wire.send(request("HEAD", "/fixed") + request("GET", "/echo?after=head"))
        head = wire.read_response(head=True)
        assert head.status == 200
        assert head.header("content-length") == "11"
        after = wire.read_response()
        assert after.status_line.startswith("HTTP/1.1 200"), after.raw
        assert after.header("x-query") == "after=head"


def test_head_of_streaming_response_has_no_body(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(request("HEAD", "/stream?n=3") + request("GET", "/echo?after=head"))
        head = wire.read_response(head=True)
        assert head.status == 200
        after = wire.read_response()
        assert after.status_line.startswith("HTTP/1.1 200"), after.raw
        assert after.header("x-query") == "after=head"


def test_head_with_httpx(server: Server, client: httpx.Client) -> None:
    response = client.head(f"{server.url}/fixed")
    assert response.status_code == 200
    assert response.headers["content-length"] == "11"
    assert response.content == b""


# -- HTTP/1.0 ---------------------------------------------------------------------------


def test_http10_response_then_close(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(request("GET", "/echo?v=10", host=None, version="HTTP/1.0"))
        response = wire.read_response()
        assert response.version in ("HTTP/1.1", "HTTP/1.0")
        assert response.status == 200
        assert response.header("x-http-version") == "1.0"
        assert response.header("x-query") == "v=10"
        assert response.close_delimited or wire.wait_closed()


def test_http10_post_with_content_length(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(request("POST", "/echo", host=None, version="HTTP/1.0", body=b"old client"))
        response = wire.read_response()
        assert (response.status, response.body) == (200, b"old client")
        assert response.close_delimited or wire.wait_closed()


def test_http10_keep_alive_requested(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(
            request(
                "GET",
                "/fixed",
                host=None,
                version="HTTP/1.0",
                headers=[("Connection", "keep-alive")],
            )
        )
        first = wire.read_response()
        assert first.status == 200
        assert first.body == b"hello world"
        assert first.header("content-length") == "11"
        assert "close" not in first.connection_tokens()
        wire.send(
            request(
                "GET",
                "/echo?second",
                host=None,
                version="HTTP/1.0",
                headers=[("Connection", "keep-alive")],
            )
        )
        second = wire.read_response()
        assert second.status == 200
        assert second.header("x-query") == "second"


def test_http10_streaming_body_is_delimited_by_close(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(request("GET", "/stream?n=3", host=None, version="HTTP/1.0"))
        response = wire.read_response()
    assert response.status == 200
    assert not response.chunked
    assert response.header("transfer-encoding") is None
    assert response.close_delimited
    assert response.body == b"part-0;part-1;part-2;"


def test_http10_keep_alive_streaming_without_length_still_closes(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(
            request(
                "GET",
                "/stream?n=3",
                host=None,
                version="HTTP/1.0",
                headers=[("Connection", "keep-alive")],
            )
        )
        response = wire.read_response()
    assert response.status == 200
    assert not response.chunked
    assert response.close_delimited
    assert response.body == b"part-0;part-1;part-2;"


# -- Connection: close ------------------------------------------------------------------


def test_client_connection_close(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(request("POST", "/echo", headers=[("Connection", "close")], body=b"bye"))
        response = wire.read_response()
        assert (response.status, response.body) == (200, b"bye")
        assert response.close_delimited or wire.wait_closed()


def test_client_connection_close_on_streaming_response(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(request("GET", "/stream?n=4", headers=[("Connection", "close")]))
        response = wire.read_response()
        assert response.body == b"part-0;part-1;part-2;part-3;"
        assert response.close_delimited or wire.wait_closed()


def test_client_connection_close_token_in_list(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(request("GET", "/fixed", headers=[("Connection", "foo, Close")]))
        response = wire.read_response()
        assert response.body == b"hello world"
        assert response.close_delimited or wire.wait_closed()


def test_client_connection_close_stops_pipelined_requests(server: Server) -> None:
    """Requests after the one carrying ``Connection: close`` are not answered."""
    with wire_to(server) as wire:
        wire.send(
            request("GET", "/echo?n=1", headers=[("Connection", "close")])
            + request("GET", "/echo?n=2")
        )
        response = wire.read_response()
        assert response.header("x-query") == "n=1"
        assert response.close_delimited or wire.wait_closed()


def test_http10_expect_100_continue_is_ignored(server: Server) -> None:
    """RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored."""
    with wire_to(server) as wire:
        wire.send(
            request(
                "POST",
                "/echo",
                host=None,
                version="HTTP/1.0",
                headers=[("Expect", "100-continue")],
                body=b"legacy",
            )
        )
        response = wire.read_response()
        assert response.status == 200, response.raw
        assert response.body == b"legacy"


def test_absolute_form_request_target(server: Server) -> None:
    """RFC 9112 §3.2.2: a server MUST accept the absolute-form."""
    with wire_to(server) as wire:
        wire.send(request("GET", "http://x/echo?q=1"))
        response = wire.read_response()
    assert response.status == 200, response.raw
    assert response.header("x-path") == "/echo"
    assert response.header("x-query") == "q=1"


def test_large_bodies_on_one_connection(server: Server, client: httpx.Client) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB

    def parts() -> Iterator[bytes]:
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    first = client.post(f"{server.url}/echo", content=big)
    second = client.post(f"{server.url}/echo", content=parts())
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.content == big
    assert second.content == big
    assert first.headers["x-client-port"] == second.headers["x-client-port"]


def test_empty_response_statuses_have_no_body(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(request("GET", "/status?code=204") + request("GET", "/echo?after=204"))
        first = wire.read_response()
        second = wire.read_response()
    assert first.status == 204
    assert first.body == b""
    assert (second.status, second.header("x-query")) == (200, "after=204")


# -- Date, Server and bodiless statuses (RFC 9110 §6.6.1, §8.6, §15.3.5, §15.4.5) --------


def test_every_response_has_one_date_and_one_server(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(request("GET", "/fixed"))
        response = wire.read_response()
    assert response.status == 200
    [date] = response.header_all("date")
    assert email.utils.parsedate_to_datetime(date).tzname() == "UTC"
    assert date.endswith(" GMT")
    assert response.header_all("server") == ["pounce"]


@pytest.mark.parametrize("name", ["server", "Server", "SERVER"])
def test_the_apps_own_server_header_replaces_pounces(server: Server, name: str) -> None:
    with wire_to(server) as wire:
        wire.send(request("GET", f"/inject?n={name}&v=my-app"))
        response = wire.read_response()
    assert response.status == 200
    assert response.header_all("server") == ["my-app"]
    assert len(response.header_all("date")) == 1


def test_the_apps_own_date_header_replaces_pounces(server: Server) -> None:
    date = "Tue,%2001%20Jan%202030%2000:00:00%20GMT"
    with wire_to(server) as wire:
        wire.send(request("GET", f"/inject?n=date&v={date}"))
        response = wire.read_response()
    assert response.status == 200
    assert response.header_all("date") == ["Tue, 01 Jan 2030 00:00:00 GMT"]
    assert response.header_all("server") == ["pounce"]


def test_204_has_no_content_length_and_no_body(server: Server) -> None:
    with wire_to(server) as wire:
        # pipelined: a stray body byte would corrupt the next response
        wire.send(request("GET", "/status?code=204") + request("GET", "/echo?after=204"))
        first = wire.read_response()
        assert first.status == 204
        assert first.header("content-length") is None
        assert first.header("transfer-encoding") is None
        after = wire.read_response()
    assert after.status == 200, after.raw
    assert after.header("x-query") == "after=204"


def test_304_keeps_the_apps_content_length_without_a_body(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(request("GET", "/status?code=304&length=5") + request("GET", "/echo?after=304"))
        first = wire.read_response()
        assert first.status == 304
        assert first.header("content-length") == "5"
        after = wire.read_response()
    assert after.status == 200, after.raw
    assert after.header("x-query") == "after=304"
