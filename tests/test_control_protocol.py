"""The control protocol, sans-I/O: framing, message checks, argument validation."""

from __future__ import annotations

import itertools
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pounce.control.protocol import (
    COMMANDS,
    HEADER_SIZE,
    MAX_MESSAGE_SIZE,
    PROTOCOL_VERSION,
    FrameDecoder,
    Reply,
    Request,
    decode_payload,
    decode_reply,
    decode_request,
    encode_error,
    encode_frame,
    encode_request,
    encode_result,
)
from pounce.errors import ControlError, ControlProtocolError


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def payload_of(data: bytes) -> bytes:
    decoder = FrameDecoder()
    decoder.feed(data)
    payload = decoder.next_frame()
    assert payload is not None
    assert decoder.buffered == 0
    return payload


def request(message: object) -> Request:
    return decode_request(json.dumps(message).encode())


# -- framing ------------------------------------------------------------------------------


def test_a_frame_is_a_big_endian_length_then_utf8_json() -> None:
    data = encode_frame({"v": 1, "text": "été"})
    (length,) = struct.unpack(">I", data[:4])
    assert HEADER_SIZE == 4
    assert length == len(data) - 4
    assert json.loads(data[4:].decode("utf-8")) == {"v": 1, "text": "été"}


def test_the_error_is_a_control_error_with_an_exit_code() -> None:
    assert issubclass(ControlProtocolError, ControlError)
    assert ControlProtocolError("x").exit_code == 1


def test_encoding_refuses_what_is_not_strict_json() -> None:
    with pytest.raises(ControlProtocolError, match="not JSON-able"):
        encode_frame({"x": float("nan")})
    with pytest.raises(ControlProtocolError, match="not JSON-able"):
        encode_frame({"x": object()})


def test_encoding_refuses_an_oversized_message() -> None:
    with pytest.raises(ControlProtocolError, match="too large"):
        encode_frame({"blob": "x" * MAX_MESSAGE_SIZE})


def test_a_message_exactly_at_the_limit_passes() -> None:
    overhead = len(json.dumps({"b": ""}, separators=(",", ":")))
    data = encode_frame({"b": "x" * (MAX_MESSAGE_SIZE - overhead)})
    assert len(data) == HEADER_SIZE + MAX_MESSAGE_SIZE
    assert len(payload_of(data)) == MAX_MESSAGE_SIZE


def test_partial_frames_wait_for_the_rest() -> None:
    data = encode_request("status")
    decoder = FrameDecoder()
    for byte in data[:-1]:
        decoder.feed(bytes([byte]))
        assert decoder.next_frame() is None
    decoder.feed(data[-1:])
    assert decoder.next_frame() == data[4:]
    assert decoder.next_frame() is None


def test_several_frames_in_one_chunk_come_out_in_order() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_request("status") + encode_request("workers") + frame(b"")[:2])
    assert decode_request(decoder.next_frame() or b"").cmd == "status"
    assert decode_request(decoder.next_frame() or b"").cmd == "workers"
    assert decoder.next_frame() is None
    assert decoder.buffered == 2


def test_an_empty_frame_is_an_empty_payload() -> None:
    assert payload_of(frame(b"")) == b""


def test_an_oversized_header_is_fatal_before_the_body_arrives() -> None:
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", MAX_MESSAGE_SIZE + 1))
    with pytest.raises(ControlProtocolError, match="too large") as info:
        decoder.next_frame()
    assert info.value.fatal


def test_the_limit_is_per_decoder() -> None:
    decoder = FrameDecoder(max_size=8)
    decoder.feed(frame(b"123456789"))
    with pytest.raises(ControlProtocolError, match="limit 8"):
        decoder.next_frame()


@given(
    payloads=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=20),
)
def test_any_chunking_yields_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(p) for p in payloads)
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    decoder = FrameDecoder()
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        decoder.feed(stream[start:end])
        while (payload := decoder.next_frame()) is not None:
            out.append(payload)
    assert out == payloads
    assert decoder.buffered == 0


# -- payloads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object, not array"),
        (b'"status"', "must be a JSON object, not string"),
        (b'{"v": 1, "x": NaN}', "NaN is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"cmd": "status"}', 'no protocol version ("v")'),
        (b'{"v": 2, "cmd": "status"}', "unsupported protocol version 2 (this side speaks 1)"),
        (b'{"v": "1", "cmd": "status"}', "unsupported protocol version '1'"),
        (b'{"v": true, "cmd": "status"}', "unsupported protocol version True"),
    ],
)
def test_bad_payloads_are_reported(payload: bytes, needle: str) -> None:
    with pytest.raises(ControlProtocolError) as info:
        decode_payload(payload)
    assert needle in str(info.value)
    assert not info.value.fatal


def test_a_request_round_trips() -> None:
    data = encode_request("scale", {"workers": 4})
    assert json.loads(payload_of(data)) == {"v": 1, "cmd": "scale", "args": {"workers": 4}}
    assert decode_request(payload_of(data)) == Request("scale", {"workers": 4})


def test_every_command_decodes_with_its_defaults() -> None:
    required = {"scale": {"workers": 2}}
    for cmd in COMMANDS:
        req = decode_request(payload_of(encode_request(cmd, required.get(cmd))))
        assert req.cmd == cmd
    assert request({"v": 1, "cmd": "drain"}).args == {"wait": False, "timeout": None}
    assert request({"v": 1, "cmd": "stop", "args": None}).args == {"now": False}
    assert request({"v": 1, "cmd": "status", "id": 7}).args == {}


def test_float_arguments_take_integers() -> None:
    args = request({"v": 1, "cmd": "drain", "args": {"wait": True, "timeout": 5}}).args
    assert args == {"wait": True, "timeout": 5.0}
    assert isinstance(args["timeout"], float)


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        ({"v": 1}, 'request has no command ("cmd" must be a string)'),
        ({"v": 1, "cmd": 3}, "request has no command"),
        ({"v": 1, "cmd": "stauts"}, "unknown command 'stauts' (did you mean 'status'?)"),
        ({"v": 1, "cmd": "zzz"}, "unknown command 'zzz' (expected one of: status, reload"),
        ({"v": 1, "cmd": "status", "args": []}, '"args" must be a JSON object, not array'),
        ({"v": 1, "cmd": "status", "args": {"x": 1}}, "status takes no arguments, got 'x'"),
        ({"v": 1, "cmd": "stop", "args": {"nwo": True}}, "unknown argument 'nwo' (did you mean"),
        ({"v": 1, "cmd": "scale"}, "scale: missing argument 'workers'"),
        ({"v": 1, "cmd": "scale", "args": {"workers": "4"}}, "must be int, not string '4'"),
        ({"v": 1, "cmd": "scale", "args": {"workers": True}}, "must be int, not boolean"),
        ({"v": 1, "cmd": "scale", "args": {"workers": 2.5}}, "must be int, not number"),
        ({"v": 1, "cmd": "scale", "args": {"workers": 0}}, "must be at least 1, not 0"),
        ({"v": 1, "cmd": "scale", "args": {"workers": None}}, "must not be null"),
        ({"v": 1, "cmd": "stop", "args": {"now": 1}}, "stop: now must be bool, not number 1"),
        ({"v": 1, "cmd": "drain", "args": {"timeout": -1}}, "must be at least 0"),
        ({"v": 1, "cmd": "drain", "args": {"timeout": "5"}}, "must be float, not string"),
    ],
)
def test_bad_requests_are_reported(message: object, needle: str) -> None:
    with pytest.raises(ControlProtocolError) as info:
        request(message)
    assert needle in str(info.value)


def test_an_infinite_timeout_is_refused() -> None:
    payload = b'{"v": 1, "cmd": "drain", "args": {"timeout": 1e999}}'
    with pytest.raises(ControlProtocolError, match="must be float"):
        decode_request(payload)


# -- replies ------------------------------------------------------------------------------


def test_replies_round_trip() -> None:
    ok = payload_of(encode_result({"generation": 2}))
    assert json.loads(ok) == {"v": PROTOCOL_VERSION, "ok": True, "result": {"generation": 2}}
    assert decode_reply(ok) == Reply(True, result={"generation": 2})
    failed = payload_of(encode_error("reload failed", ["server.workers: must be >= 1"]))
    assert decode_reply(failed) == Reply(
        False, error="reload failed", details=("server.workers: must be >= 1",)
    )


def test_an_error_too_large_to_send_is_cut_down() -> None:
    data = encode_error("e" * 10_000, ["d" * 1000] * 2000)
    reply = decode_reply(payload_of(data))
    assert reply.error == "e" * 4096
    assert reply.details == ()


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        ({"v": 1}, 'reply has no "ok" flag'),
        ({"v": 1, "ok": True, "result": [1]}, '"result" must be a JSON object'),
        ({"v": 1, "ok": False}, 'error reply has no "error" text'),
        ({"v": 1, "ok": False, "error": "x", "details": [1]}, '"details" must be a list'),
        ({"v": 9, "ok": True}, "unsupported protocol version 9"),
    ],
)
def test_bad_replies_are_reported(message: object, needle: str) -> None:
    with pytest.raises(ControlProtocolError) as info:
        decode_reply(json.dumps(message).encode())
    assert needle in str(info.value)
