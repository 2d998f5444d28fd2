"""Raw ASGI 3 app for the HTTP/1.1 conformance tests (``apps.http_echo:app``).

Routes (anything not listed is ``/echo``):

``/echo``
    Reads the whole request body and answers 200 with it, with a content-length.
    Response headers describe what the app saw: ``x-method``, ``x-path``, ``x-query``,
    ``x-http-version``, ``x-body-length``, ``x-client-port``, ``x-host``,
    ``x-more-body-messages`` (number of ``http.request`` messages received).
``/fixed``
    Answers ``hello world`` with ``content-length: 11`` whatever the method, without
    reading the body (also for HEAD: the server must drop the body bytes).
``/stream?n=N&length=0|1``
    Streams N parts ``part-<i>;`` with ``more_body=True``; with ``length=1`` it declares
    the total content-length, otherwise none (so HTTP/1.1 needs chunked).
``/noread``
    Answers 200 ``no-read`` without ever calling ``receive()``.
``/gate?key=K``
    Waits until ``/open?key=K`` was requested (in any order), then reads the body and
    echoes it.  ``/gate-state?key=K`` answers ``waiting``, ``released`` or ``unknown``.
``/inject?n=NAME&v=VALUE``
    Answers 200 with a response header NAME: VALUE (percent-decoded bytes, default name
    ``x-test``), to check that CR/LF/NUL in response headers are refused.
``/status?code=N``
    Answers with status N and an empty body.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

Scope = dict[str, Any]
Message = dict[str, Any]

_gates: dict[str, asyncio.Event] = {}
_gate_state: dict[str, str] = {}


def _query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))


def _raw_query(scope: Scope) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for part in scope.get("query_string", b"").split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        out[name.decode("latin-1")] = unquote_to_bytes(value)
    return out


async def _read_body(receive: Any) -> tuple[bytes, int, bool]:
    """Return (body, number of http.request messages, disconnected)."""
    body = bytearray()
    messages = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body), messages, True
        messages += 1
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body), messages, False


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _echo(scope: Scope, receive: Any, send: Any) -> None:
    body, messages, disconnected = await _read_body(receive)
    if disconnected:
        return
    host = b""
    for name, value in scope.get("headers", []):
        if name.lower() == b"host":
            host = value
    client = scope.get("client") or ("", 0)
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"x-method", scope["method"].encode("latin-1")),
        (b"x-path", scope["path"].encode("utf-8", "replace")),
        (b"x-query", scope.get("query_string", b"")),
        (b"x-http-version", scope.get("http_version", "").encode("latin-1")),
        (b"x-body-length", str(len(body)).encode()),
        (b"x-client-port", str(client[1]).encode()),
        (b"x-host", host),
        (b"x-more-body-messages", str(messages).encode()),
    ]
    await _respond(send, 200, body, headers)


async def _stream(scope: Scope, receive: Any, send: Any) -> None:
    query = _query(scope)
    n = int(query.get("n", "3"))
    parts = [f"part-{i};".encode() for i in range(n)]
    headers = [(b"content-type", b"text/plain")]
    if query.get("length") == "1":
        headers.append((b"content-length", str(sum(map(len, parts))).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for part in parts:
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _gate(scope: Scope, receive: Any, send: Any) -> None:
    key = _query(scope).get("key", "")
    event = _gates.setdefault(key, asyncio.Event())
    _gate_state[key] = "waiting"
    await event.wait()
    _gate_state[key] = "released"
    await _echo(scope, receive, send)


async def _open(scope: Scope, receive: Any, send: Any) -> None:
    key = _query(scope).get("key", "")
    _gates.setdefault(key, asyncio.Event()).set()
    await _respond(send, 200, b"opened", [])


async def _gate_state_route(scope: Scope, receive: Any, send: Any) -> None:
    key = _query(scope).get("key", "")
    await _respond(send, 200, _gate_state.get(key, "unknown").encode(), [])


async def _inject(scope: Scope, receive: Any, send: Any) -> None:
    query = _raw_query(scope)
    name = query.get("n", b"x-test")
    value = query.get("v", b"ok")
    body = b"should-not-be-sent"
    headers = [(name, value), (b"content-length", str(len(body)).encode())]
    # If the server refuses the header, send() raises and the exception propagates:
    # the server must answer 500 and log it.
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _fixed(scope: Scope, receive: Any, send: Any) -> None:
    await _respond(send, 200, b"hello world", [(b"content-type", b"text/plain")])


async def _noread(scope: Scope, receive: Any, send: Any) -> None:
    await _respond(send, 200, b"no-read", [(b"content-type", b"text/plain")])


async def _status(scope: Scope, receive: Any, send: Any) -> None:
    query = _query(scope)
    code = int(query.get("code", "200"))
    headers = []
    if "length" in query:  # e.g. a 304 giving the length of what a GET would send
        headers.append((b"content-length", query["length"].encode()))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


_ROUTES = {
    "/fixed": _fixed,
    "/stream": _stream,
    "/noread": _noread,
    "/gate": _gate,
    "/open": _open,
    "/gate-state": _gate_state_route,
    "/inject": _inject,
    "/status": _status,
}


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    handler = _ROUTES.get(scope["path"], _echo)
    await handler(scope, receive, send)
