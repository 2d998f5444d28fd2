"""The sans-I/O WebSocket layer, with bytes alone (a wsproto client is the peer)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate

from pounce.protocols import http11
from pounce.protocols.websocket import (
    Closed,
    Message,
    Session,
    UpgradeError,
    check_upgrade,
    is_websocket_upgrade,
    negotiate_extensions,
    offers,
)
from pounce.protocols.ws_deflate import BoundedPerMessageDeflate

RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3


def request(
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    method: bytes = b"GET",
    version: str = "1.1",
    drop: tuple[bytes, ...] = (),
) -> http11.Request:
    base = [
        (b"host", b"x"),
        (b"upgrade", b"WebSocket"),
        (b"connection", b"keep-alive, Upgrade"),
        (b"sec-websocket-key", RFC_KEY),
        (b"sec-websocket-version", b"13"),
    ]
    all_headers = [h for h in base if h[0] not in drop] + (headers or [])
    return http11.Request(method, b"/chat", version, all_headers, True, False, None, False)


def test_accept_token_subprotocols_and_headers() -> None:
    handshake = check_upgrade(request([(b"sec-websocket-protocol", b"chat, superchat")]))
    assert handshake.subprotocols == ["chat", "superchat"]
    assert handshake.extension_offers == []
    head = handshake.accept(
        "chat", [(b"x-a", b"1"), (b"upgrade", b"no")], extensions=None, date=b"D"
    )
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    assert b"sec-websocket-protocol: chat\r\n" in head
    assert b"x-a: 1\r\n" in head
    assert b"upgrade: no" not in head
    assert b"sec-websocket-extensions" not in head


def test_deflate_negotiated_only_when_offered() -> None:
    offer = [(b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")]
    handshake = check_upgrade(request(offer))
    agreed, extensions = negotiate_extensions(handshake.extension_offers, max_message_size=10)
    assert agreed is not None and agreed.startswith(b"permessage-deflate")
    assert [type(e) for e in extensions] == [BoundedPerMessageDeflate]
    head = handshake.accept(None, [], extensions=agreed, date=b"D")
    assert b"sec-websocket-extensions: permessage-deflate" in head
    assert negotiate_extensions([], max_message_size=10) == (None, [])
    assert negotiate_extensions(["x-unknown"], max_message_size=10) == (None, [])


def test_offers_from_headers() -> None:
    headers = [
        (b"sec-websocket-protocol", b"p1, ,p2"),
        (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits, x-y"),
        (b"sec-websocket-protocol", b"p\xe9"),  # not ASCII: no exception
    ]
    assert offers(headers) == (
        ["p1", "p2", "p\xe9"],
        ["permessage-deflate; client_max_window_bits", "x-y"],
    )


@pytest.mark.parametrize(
    ("req", "status"),
    [
        (request(version="1.0"), 400),
        (request(method=b"POST"), 400),
        (request(drop=(b"connection",)), 400),
        (request(drop=(b"sec-websocket-key",)), 400),
        (request(drop=(b"sec-websocket-version",)), 426),
        (request([(b"sec-websocket-key", RFC_KEY)]), 400),  # two keys
    ],
)
def test_invalid_upgrade_requests(req: http11.Request, status: int) -> None:
    with pytest.raises(UpgradeError) as info:
        check_upgrade(req)
    assert info.value.status == status
    response = info.value.response()
    assert response.startswith(b"HTTP/1.1 %d " % status)
    if status == 426:
        assert b"sec-websocket-version: 13\r\n" in response


def test_bad_key_and_upgrade_detection() -> None:
    bad = request([(b"sec-websocket-key", b"not base64 at all")], drop=(b"sec-websocket-key",))
    with pytest.raises(UpgradeError):
        check_upgrade(bad)
    assert is_websocket_upgrade([(b"upgrade", b"websocket")])
    assert not is_websocket_upgrade([(b"upgrade", b"h2c")])


def pair(max_size: int = 1 << 20, deflate: bool = False) -> tuple[Session, Connection]:
    if not deflate:
        return Session([], max_size), Connection(ConnectionType.CLIENT, [])
    _, server_ext = negotiate_extensions(["permessage-deflate"], max_message_size=max_size)
    client_ext = PerMessageDeflate()
    client_ext.finalize("permessage-deflate")
    return Session(server_ext, max_size), Connection(ConnectionType.CLIENT, [client_ext])


@pytest.mark.parametrize("deflate", [False, True])
def test_messages_both_ways(deflate: bool) -> None:
    session, client = pair(deflate=deflate)
    wire = client.send(TextMessage("hé", message_finished=False))
    wire += client.send(TextMessage("llo"))
    wire += client.send(BytesMessage(b"\x00" * 1000))
    events, out = session.receive(wire)
    assert events == [Message("héllo"), Message(b"\x00" * 1000)]
    assert out == b""
    client.receive_data(session.send("back") + session.send(b"bin"))
    got = list(client.events())
    assert [e.data for e in got] == ["back", b"bin"]


def test_ping_is_answered_and_pongs_are_kept() -> None:
    session, client = pair()
    events, out = session.receive(client.send(Ping(b"p1")) + client.send(Pong(b"p2")))
    assert events == []
    client.receive_data(out)
    assert [type(e) for e in client.events()] == [Pong]
    assert session.pong_payloads == [b"p2"]


def test_message_too_big_closes_1009() -> None:
    session, client = pair(max_size=10)
    events, out = session.receive(client.send(TextMessage("x" * 11)))
    assert events == [Closed(1009, "message too big", by_peer=False)]
    assert session.done
    client.receive_data(out)
    (close,) = client.events()
    assert isinstance(close, CloseConnection) and close.code == 1009


def test_close_by_peer_is_answered() -> None:
    session, client = pair()
    events, out = session.receive(client.send(CloseConnection(4000, "bye")))
    assert events == [Closed(4000, "bye")]
    assert session.done
    client.receive_data(out)
    (close,) = client.events()
    assert isinstance(close, CloseConnection) and close.code == 4000
    assert session.send("late") == b""


def test_close_by_server_waits_for_the_reply() -> None:
    session, client = pair()
    client.receive_data(session.close(1001, "going away"))
    (close,) = client.events()
    assert isinstance(close, CloseConnection) and close.code == 1001
    assert not session.done
    events, _ = session.receive(client.send(close.response()))
    assert events == []  # the closer already knows
    assert session.done


def test_invalid_utf8_fails_1007() -> None:
    session, _ = pair()
    frame = b"\x81\x82" + b"\x00\x00\x00\x00" + b"\xc3\x28"  # masked, zero mask
    events, out = session.receive(frame)
    assert len(events) == 1 and isinstance(events[0], Closed)
    assert (events[0].code, events[0].by_peer) == (1007, False)
    assert out[0] == 0x88 and out[2:4] == b"\x03\xef"  # a close frame with 1007
    assert session.done


@given(
    messages=st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300)), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=10),
    deflate=st.booleans(),
)
def test_any_split_of_the_bytes_gives_the_same_messages(
    messages: list[str | bytes], cuts: list[int], deflate: bool
) -> None:
    session, client = pair(deflate=deflate)
    wire = b"".join(
        client.send(TextMessage(m) if isinstance(m, str) else BytesMessage(m)) for m in messages
    )
    got: list[Message | Closed] = []
    start = 0
    for cut in [*sorted(c for c in cuts if c < len(wire)), len(wire)]:
        events, out = session.receive(wire[start:cut])
        got += events
        assert out == b""
        start = cut
    assert got == [Message(m) for m in messages]


# -- permessage-deflate: inflation bounded by the message size (ws_deflate) ------------


def _peak_bytes_allocated(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_compressed_bomb_is_refused_1009_without_inflating_it() -> None:
    session, client = pair(max_size=1 << 20, deflate=True)
    wire = client.send(BytesMessage(bytes(32 << 20)))  # 32 MiB of zeros: ~32 KiB on the wire
    assert len(wire) < 64 << 10
    got: list[tuple[list[Message | Closed], bytes]] = []
    peak = _peak_bytes_allocated(lambda: got.append(session.receive(wire)))
    ((events, out),) = got
    assert events == [Closed(1009, "message too big", by_peer=False)]
    assert session.done
    client.receive_data(out)
    (close,) = client.events()
    assert isinstance(close, CloseConnection) and close.code == 1009
    # At most max_size + 1 bytes inflated (and a copy or two of them), not 32 MiB.
    assert peak < 6 << 20, peak


def test_the_bound_covers_all_the_fragments_of_a_message() -> None:
    session, client = pair(max_size=100_000, deflate=True)
    wire = b"".join(
        client.send(BytesMessage(bytes(40_000), message_finished=i == 2)) for i in range(3)
    )
    events, _ = session.receive(wire)
    assert events == [Closed(1009, "message too big", by_peer=False)]


def test_a_message_of_exactly_max_size_inflates_and_context_carries_on() -> None:
    session, client = pair(max_size=100_000, deflate=True)
    for _ in range(3):  # context takeover: each message is compressed with the last in mind
        events, _ = session.receive(client.send(BytesMessage(bytes(100_000))))
        assert events == [Message(bytes(100_000))]
    events, _ = session.receive(client.send(TextMessage("x" * 100_001)))
    assert events == [Closed(1009, "message too big", by_peer=False)]


def test_pings_between_compressed_fragments_and_messages() -> None:
    # wsproto's own PerMessageDeflate forgets the message is compressed after the ping.
    session, client = pair(deflate=True)
    wire = client.send(TextMessage("hello " * 50, message_finished=False))
    wire += client.send(Ping(b"x"))
    wire += client.send(TextMessage("world " * 50))
    wire += client.send(Ping(b"y"))  # and one between two messages
    wire += client.send(TextMessage("again " * 50))
    events, out = session.receive(wire)
    assert events == [Message("hello " * 50 + "world " * 50), Message("again " * 50)]
    client.receive_data(out)
    assert [type(e) for e in client.events()] == [Pong, Pong]


def test_corrupt_compressed_data_fails_1007() -> None:
    session, _ = pair(deflate=True)
    frame = b"\xc2\x84" + b"\x00\x00\x00\x00" + b"\xff\xff\xff\xff"  # RSV1, masked, zero mask
    events, _ = session.receive(frame)
    assert len(events) == 1 and isinstance(events[0], Closed)
    assert events[0].code == 1007
