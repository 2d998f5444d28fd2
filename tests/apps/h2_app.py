"""ASGI app for the TLS and HTTP/2 tests (``apps.h2_app:app``).

``/scope``      JSON: scheme, http_version, the TLS extension (client cert chain).
``/echo``       Reads the whole body, answers it.
``/big?n=N``    Streams N bytes in 16 KiB messages (flow control: send waits for window).
``/trailers``   Body then ``http.response.trailers`` (x-checksum: ok).
``/boom``       Raises before http.response.start (500).
``/boom-late``  Raises after the first body bytes (RST_STREAM INTERNAL_ERROR).
``/hold?key=K`` Sends its head, then waits for http.disconnect; ``/held?key=K`` says
                ``disconnected`` once that happened, else ``waiting``.
``/slow?key=K`` Waits until ``/release?key=K`` is requested, then answers ``done``.
``/rr?key=K``   Counts its calls and how many run at once, then waits for
                http.disconnect (``&stubborn=1``: ignores it, runs until cancelled);
                ``/rr-stats?key=K`` answers the counts as JSON.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qsl

_events: dict[str, asyncio.Event] = {}
_state: dict[str, str] = {}
_counts: dict[str, dict[str, int]] = {}


def _event(key: str) -> asyncio.Event:
    return _events.setdefault(key, asyncio.Event())


async def _send(send: Any, status: int, body: bytes, ctype: bytes = b"text/plain") -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]}
    )
    await send({"type": "http.response.body", "body": body})


async def _read(receive: Any) -> bytes | None:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    path = scope["path"]
    query = dict(parse_qsl(scope["query_string"].decode()))
    key = query.get("key", "")
    if path == "/scope":
        tls = scope["extensions"].get("tls")
        info = {
            "scheme": scope["scheme"],
            "http_version": scope["http_version"],
            "tls": tls,
            "trailers": "http.response.trailers" in scope["extensions"],
        }
        await _send(send, 200, json.dumps(info).encode(), b"application/json")
    elif path == "/echo":
        body = await _read(receive)
        if body is not None:
            await _send(send, 200, body)
    elif path == "/big":
        n = int(query.get("n", "1000000"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 16384
        while n > 0:
            part = chunk[: min(n, len(chunk))]
            n -= len(part)
            await send({"type": "http.response.body", "body": part, "more_body": n > 0})
    elif path == "/trailers":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"trailer", b"x-checksum")],
                "trailers": True,
            }
        )
        await send({"type": "http.response.body", "body": b"with trailers"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"ok")]})
    elif path == "/boom":
        raise RuntimeError("boom")
    elif path == "/boom-late":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom late")
    elif path == "/hold":
        _state[key] = "waiting"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"held", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        _state[key] = "disconnected"
    elif path == "/held":
        await _send(send, 200, _state.get(key, "unknown").encode())
    elif path == "/slow":
        await _event(key).wait()
        await _send(send, 200, b"done")
    elif path == "/rr":
        await _rapid_reset_target(key, "stubborn" in query, receive)
    elif path == "/rr-stats":
        await _send(send, 200, json.dumps(_stats(key)).encode(), b"application/json")
    elif path == "/release":
        _event(key).set()
        await _send(send, 200, b"released")
    else:
        await _send(send, 404, b"not found")


def _stats(key: str) -> dict[str, int]:
    return _counts.setdefault(
        key, {"calls": 0, "running": 0, "max_running": 0, "disconnected": 0, "cancelled": 0}
    )


async def _rapid_reset_target(key: str, stubborn: bool, receive: Any) -> None:
    stats = _stats(key)
    stats["calls"] += 1
    stats["running"] += 1
    stats["max_running"] = max(stats["max_running"], stats["running"])
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
        stats["disconnected"] += 1
        if stubborn:
            await asyncio.Event().wait()  # never set: only a cancel ends it
    except asyncio.CancelledError:
        stats["cancelled"] += 1
        raise
    finally:
        stats["running"] -= 1
