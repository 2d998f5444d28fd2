"""The ASGI app every server in the benchmark runs, one route per workload.

Raw ASGI 3 and the standard library only, and no import of pounce: the runner copies
this file into its work directory as ``pounce_bench_app.py`` so that every server,
whatever its virtual environment, imports the very same code.

    GET  /hello      13 bytes of text
    GET  /json       a small JSON object, serialised per request
    POST /echo       the request body, read in full, sent back
    GET  /stream     10 chunks of 1 KiB (chunked transfer-encoding)
    GET  /download   1 MiB in one body (Content-Length)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO = b"Hello, world!"
CHUNK = b"x" * 1024
CHUNKS = 10
DOWNLOAD = b"d" * (1024 * 1024)
TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
BINARY = [(b"content-type", b"application/octet-stream")]


def _head(status: int, headers: list[tuple[bytes, bytes]], length: int | None) -> Message:
    if length is not None:
        headers = [*headers, (b"content-length", str(length).encode())]
    return {"type": "http.response.start", "status": status, "headers": headers}


async def _send_body(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send(_head(status, headers, len(body)))
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(parts)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The benchmark application."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/hello":
        await _send_body(send, 200, TEXT, HELLO)
    elif path == "/json":
        body = json.dumps({"message": "Hello, world!", "id": 42, "tags": ["a", "b"]}).encode()
        await _send_body(send, 200, [(b"content-type", b"application/json")], body)
    elif path == "/echo":
        await _send_body(send, 200, BINARY, await _read_body(receive))
    elif path == "/stream":
        await send(_head(200, BINARY, None))
        for _ in range(CHUNKS - 1):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": CHUNK})
    elif path == "/download":
        await _send_body(send, 200, BINARY, DOWNLOAD)
    else:
        await _send_body(send, 404, TEXT, b"Not Found")
