"""An ASGI 3 app with one route per behaviour the ASGI / shutdown tests need.

Coordination with the test process goes through files whose paths arrive in the
query string (``release=``, ``marker=``, ``progress=``) and through marker lines
printed to stdout, so no test ever has to sleep to wait for the app.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from typing import Any
from urllib.parse import parse_qs


def _query(scope: dict[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}


async def _wait_file(path: str, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        await asyncio.sleep(0.01)
    return False


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


async def _read_body(receive: Any, tag: str | None = None) -> tuple[bytes, list[dict[str, Any]]]:
    body = b""
    messages: list[dict[str, Any]] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            messages.append({"type": message["type"]})
            break
        chunk = message.get("body", b"")
        more = bool(message.get("more_body", False))
        messages.append({"type": message["type"], "len": len(chunk), "more_body": more})
        body += chunk
        if tag is not None and chunk:
            print(f"CHUNK-{tag}-{len(messages)}-{len(body)}", flush=True)
    return body, messages


async def _respond(send: Any, status: int, body: bytes, ctype: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            print("BEHAVE-STARTUP", flush=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            print("BEHAVE-SHUTDOWN", flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path = scope["path"]
    q = _query(scope)
    handler = ROUTES.get(path)
    if handler is None:
        await _read_body(receive)
        await _respond(send, 200, b"ok")
        return
    await handler(scope, receive, send, q)


async def echo_chunks(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    body, messages = await _read_body(receive, q.get("tag", "x"))
    payload = {
        "messages": messages,
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    await _respond(send, 200, json.dumps(payload).encode(), b"application/json")


async def wait_disconnect(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    await _read_body(receive)
    _write(q["ready"], "waiting")
    message = await receive()
    _write(q["marker"], message["type"])


async def upload_disconnect(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    """Reads the body; records the message that ended the read (client left mid-body)."""
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            _write(q["marker"], message["type"])
            return
        received += len(message.get("body", b""))
        print(f"UPLOAD-{q.get('tag', 'x')}-{received}", flush=True)
        if not message.get("more_body", False):
            _write(q["marker"], "complete")
            await _respond(send, 200, b"complete")
            return


async def stream_out(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    await _read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"part-1;", "more_body": True})
    await _wait_file(q["release"], 30)
    await send({"type": "http.response.body", "body": b"part-2;", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def flood(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    await _read_body(receive)
    total = int(q["total"])
    chunk = b"f" * int(q.get("chunk", "65536"))
    progress = q["progress"]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(total).encode())],
        }
    )
    sent = 0
    _write(progress, "0")
    while sent < total:
        piece = chunk[: total - sent]
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        sent += len(piece)
        _write(progress, str(sent))
    await send({"type": "http.response.body", "body": b""})


async def raise_before(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    await _read_body(receive)
    raise RuntimeError("boom-before-start-7431")


async def raise_after(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    await _read_body(receive)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]}
    )
    await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
    raise RuntimeError("boom-after-start-7432")


async def raise_after_chunked(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    await _read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"y" * 10, "more_body": True})
    raise RuntimeError("boom-after-start-chunked-7433")


async def receive_after_response(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    """ASGI: receive() after the response was sent returns http.disconnect."""
    await _read_body(receive)
    await _respond(send, 200, b"done")
    message = await receive()
    _write(q["marker"], message["type"])


async def no_response(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    await _read_body(receive)


async def partial_return(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    await _read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})


async def slow(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    await _read_body(receive)
    print(f"SLOW-STARTED-{q.get('id', '0')}", flush=True)
    await _wait_file(q["release"], float(q.get("limit", "60")))
    await _respond(send, 200, b"slow-done-" + b"s" * 1000)


async def hang(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    """Never responds and never calls receive(): only a cancellation ends it."""
    print("HANG-STARTED", flush=True)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        print("HANG-CANCELLED", flush=True)
        raise


async def too_long(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    """Declares a Content-Length of 5, then sends 11 bytes."""
    await _read_body(receive)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
    )
    await send({"type": "http.response.body", "body": b"hello world"})


async def echo_stream_first(scope: Any, receive: Any, send: Any, q: dict[str, str]) -> None:
    """Starts a streamed response, then reads the request body; prints what it got."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first;", "more_body": True})
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            print("ECHO-STREAM-FIRST http.disconnect", flush=True)
            return
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.body", "body": b"done", "more_body": False})


ROUTES = {
    "/echo-stream-first": echo_stream_first,
    "/hang": hang,
    "/too-long": too_long,
    "/echo-chunks": echo_chunks,
    "/wait-disconnect": wait_disconnect,
    "/upload-disconnect": upload_disconnect,
    "/stream-out": stream_out,
    "/flood": flood,
    "/raise-before": raise_before,
    "/raise-after": raise_after,
    "/raise-after-chunked": raise_after_chunked,
    "/receive-after-response": receive_after_response,
    "/no-response": no_response,
    "/partial-return": partial_return,
    "/slow": slow,
}
