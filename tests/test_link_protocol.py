"""The worker <-> supervisor link, sans-I/O: its messages and the frame codec it shares
with the control socket.  Bytes alone, plus one real socket pair for the read loop."""

from __future__ import annotations

import ast
import asyncio
import itertools
import json
import socket
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pounce.control.protocol import FrameDecoder as ControlFrameDecoder
from pounce.control.protocol import encode_request
from pounce.errors import ControlProtocolError, FrameError, LinkProtocolError
from pounce.metrics import empty_snapshot
from pounce.protocols.link import (
    MAX_LINK_MESSAGE_SIZE,
    SUPERVISOR_MESSAGES,
    WORKER_MESSAGES,
    BootFailed,
    Bye,
    Heartbeat,
    Kind,
    LinkDecoder,
    Message,
    MetricsReply,
    MetricsRequest,
    Ready,
    SnapshotReply,
    SnapshotRequest,
    StateUpdate,
    Stop,
    decode_from_supervisor,
    decode_from_worker,
    encode,
)
from pounce.worker.link import receive

SRC = Path(__file__).resolve().parent.parent / "src" / "pounce"

FROM_WORKER: list[Message] = [
    Ready(1234),
    Heartbeat(empty_snapshot()),
    SnapshotReply(7, {"requests": {"GET 200": 3}}),
    MetricsRequest(2),
    BootFailed("cannot import app 'x:y'", 3),
    BootFailed("boom", 3, "Traceback (most recent call last):\n  ...\n"),
    Bye({"connections": 0}),
]
FROM_SUPERVISOR: list[Message] = [
    StateUpdate(ready=True, live=False),
    Stop(None),
    Stop(2.5),
    SnapshotRequest(9),
    MetricsReply(2, "# HELP pounce_requests_total ...\npounce_up 1\n"),
]


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def payload_of(data: bytes) -> bytes:
    decoder = LinkDecoder()
    decoder.feed(data)
    payload = decoder.next_frame()
    assert payload is not None
    assert decoder.buffered == 0
    return payload


# -- the vocabulary -----------------------------------------------------------------------


def test_every_kind_has_one_message_going_one_way() -> None:
    kinds = [cls.kind for cls in (*WORKER_MESSAGES, *SUPERVISOR_MESSAGES)]
    assert sorted(kinds) == sorted(Kind)
    assert {type(m) for m in FROM_WORKER} == set(WORKER_MESSAGES)
    assert {type(m) for m in FROM_SUPERVISOR} == set(SUPERVISOR_MESSAGES)


def test_no_module_but_the_link_spells_the_kind_key() -> None:
    spelled = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "protocols" / "link.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value == "t":
                spelled.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert spelled == []


# -- messages -----------------------------------------------------------------------------


@pytest.mark.parametrize("message", FROM_WORKER, ids=repr)
def test_a_worker_message_round_trips(message: Message) -> None:
    assert decode_from_worker(payload_of(encode(message))) == message


@pytest.mark.parametrize("message", FROM_SUPERVISOR, ids=repr)
def test_a_supervisor_message_round_trips(message: Message) -> None:
    assert decode_from_supervisor(payload_of(encode(message))) == message


def test_the_wire_form_is_a_json_object_named_by_t() -> None:
    assert json.loads(payload_of(encode(StateUpdate(ready=True, live=True)))) == {
        "t": "state",
        "ready": True,
        "live": True,
    }
    assert json.loads(payload_of(encode(Stop(1.0)))) == {"t": "stop", "grace": 1.0}
    assert json.loads(payload_of(encode(Ready(5)))) == {"t": "ready", "pid": 5}


def test_an_integer_grace_is_a_float() -> None:
    stop = decode_from_supervisor(b'{"t": "stop", "grace": 3}')
    assert stop == Stop(3.0)
    assert isinstance(stop, Stop) and type(stop.grace) is float


def test_an_optional_field_may_be_left_out() -> None:
    assert decode_from_worker(b'{"t": "boot_failed", "error": "x", "code": 3}') == BootFailed(
        "x", 3, None
    )


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff{}", "not UTF-8"),
        (b"[1]", "must be a JSON object, not array"),
        (b'{"t": "hb", "stats": {"x": NaN}}', "NaN is not valid JSON"),
        (b'{"pid": 1}', "unexpected message kind None"),
        (b'{"t": "nope"}', "unexpected message kind 'nope'"),
        (b'{"t": ["ready"]}', "unexpected message kind ['ready']"),
        (b'{"t": "state", "ready": true, "live": true}', "unexpected message kind 'state'"),
        (b'{"t": "ready"}', "ready: missing field 'pid'"),
        (b'{"t": "ready", "pid": "1"}', "ready: pid must be an integer, not string"),
        (b'{"t": "ready", "pid": true}', "ready: pid must be an integer, not boolean"),
        (b'{"t": "ready", "pid": 1, "x": 2}', "ready: unknown field 'x'"),
        (b'{"t": "hb", "stats": []}', "hb: stats must be an object, not array"),
        (b'{"t": "boot_failed", "error": "x", "code": 1, "traceback": 5}', "a string or null"),
    ],
)
def test_bad_worker_payloads_are_reported(payload: bytes, needle: str) -> None:
    with pytest.raises(LinkProtocolError) as info:
        decode_from_worker(payload)
    assert needle in str(info.value)
    assert not info.value.fatal


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b'{"t": "hb", "stats": {}}', "unexpected message kind 'hb'"),
        (b'{"t": "state", "ready": 1, "live": true}', "state: ready must be a boolean"),
        (b'{"t": "stop", "grace": "soon"}', "stop: grace must be a number or null"),
        (b'{"t": "metrics", "id": 1}', "metrics: missing field 'text'"),
    ],
)
def test_bad_supervisor_payloads_are_reported(payload: bytes, needle: str) -> None:
    with pytest.raises(LinkProtocolError) as info:
        decode_from_supervisor(payload)
    assert needle in str(info.value)


def test_a_message_that_is_not_json_able_is_refused() -> None:
    with pytest.raises(LinkProtocolError, match="not JSON-able"):
        encode(Heartbeat({"duration_sum": float("nan")}))


# -- framing ------------------------------------------------------------------------------


def test_the_link_and_the_control_socket_share_one_frame_codec() -> None:
    control = ControlFrameDecoder()
    control.feed(encode(Ready(1)))
    assert control.next_frame() == b'{"t":"ready","pid":1}'
    request = encode_request("status")
    assert payload_of(request) == request[4:]
    assert issubclass(LinkProtocolError, FrameError)
    assert issubclass(ControlProtocolError, FrameError)


def test_partial_frames_wait_for_the_rest() -> None:
    data = encode(MetricsRequest(1))
    decoder = LinkDecoder()
    for byte in data[:-1]:
        decoder.feed(bytes([byte]))
        assert decoder.next_frame() is None
    decoder.feed(data[-1:])
    assert decode_from_worker(decoder.next_frame() or b"") == MetricsRequest(1)
    assert decoder.next_frame() is None


def test_an_oversized_header_is_fatal_before_the_body_arrives() -> None:
    decoder = LinkDecoder()
    decoder.feed(struct.pack(">I", MAX_LINK_MESSAGE_SIZE + 1))
    with pytest.raises(LinkProtocolError, match="too large") as info:
        decoder.next_frame()
    assert info.value.fatal


def test_an_oversized_message_is_refused_when_encoding() -> None:
    with pytest.raises(LinkProtocolError, match="too large"):
        encode(MetricsReply(1, "x" * MAX_LINK_MESSAGE_SIZE))


@given(
    picks=st.lists(st.integers(min_value=0, max_value=len(FROM_WORKER) - 1), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=20),
)
def test_any_chunking_yields_the_same_messages(picks: list[int], cuts: list[int]) -> None:
    messages = [FROM_WORKER[i] for i in picks]
    stream = b"".join(encode(m) for m in messages)
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    decoder = LinkDecoder()
    out: list[Message] = []
    for start, end in itertools.pairwise(points):
        decoder.feed(stream[start:end])
        while (payload := decoder.next_frame()) is not None:
            out.append(decode_from_worker(payload))
    assert out == messages
    assert decoder.buffered == 0


# -- the read loop, over a real socket pair -----------------------------------------------


async def _read_all(data: bytes) -> list[Message]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    out: list[Message] = []
    try:
        with theirs:
            theirs.setblocking(False)

            async def write() -> None:
                await asyncio.get_running_loop().sock_sendall(theirs, data)
                theirs.shutdown(socket.SHUT_WR)

            async with asyncio.timeout(10), asyncio.TaskGroup() as tasks:
                tasks.create_task(write())
                async for message in receive(reader, decode_from_worker, "test"):
                    out.append(message)
    finally:
        writer.close()
        await writer.wait_closed()
    return out


def test_the_read_loop_skips_a_malformed_message_and_reads_on() -> None:
    data = encode(Ready(1)) + frame(b'{"t": "nope"}') + frame(b"garbage") + encode(Bye({}))
    assert asyncio.run(_read_all(data)) == [Ready(1), Bye({})]


def test_the_read_loop_ends_when_the_framing_breaks() -> None:
    data = encode(Ready(1)) + struct.pack(">I", MAX_LINK_MESSAGE_SIZE + 1) + encode(Bye({}))
    assert asyncio.run(_read_all(data)) == [Ready(1)]


def test_a_message_larger_than_a_stream_buffer_passes() -> None:
    # JSON lines read with readline() stopped at asyncio's 64 KiB stream limit.
    big = Heartbeat({"requests": {f"GET {i}": i for i in range(20_000)}})
    assert len(encode(big)) > 256 * 1024
    assert asyncio.run(_read_all(encode(big) + encode(Ready(2)))) == [big, Ready(2)]
