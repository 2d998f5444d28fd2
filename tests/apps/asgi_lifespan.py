"""ASGI apps exercising the lifespan protocol: markers, failures, no support."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any


async def _http(scope: dict[str, Any], receive: Any, send: Any, text: bytes) -> None:
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return
        more = message.get("more_body", False)
    state = scope.get("state")
    body = json.dumps(
        {"text": text.decode(), "state": dict(state) if isinstance(state, dict) else None}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Prints LIFESPAN-STARTUP-OK / LIFESPAN-SHUTDOWN-OK and sets state."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["db"] = "connected-db-token"
                scope["state"]["counter"] = 7
                print("LIFESPAN-STARTUP-OK", flush=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                print("LIFESPAN-SHUTDOWN-OK", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    await _http(scope, receive, send, b"lifespan-app")


async def slow_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Startup waits until the file named by $ASGI_TEST_RELEASE exists."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                print("SLOW-STARTUP-WAITING", flush=True)
                release = os.environ["ASGI_TEST_RELEASE"]
                deadline = time.monotonic() + 30
                while not os.path.exists(release) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                scope["state"]["db"] = "ready-after-slow-startup"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await _http(scope, receive, send, b"slow-startup-app")


async def startup_failed(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reports lifespan.startup.failed with a message."""
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed", "message": "database-unreachable-5150"})
        return
    await _http(scope, receive, send, b"should-not-serve")


async def startup_raises(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Raises an exception during lifespan startup."""
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        raise RuntimeError("startup-exploded-6021")
    await _http(scope, receive, send, b"should-not-serve")


async def no_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Does not support lifespan: raises on the lifespan scope, as the spec allows."""
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope type {scope['type']!r}")
    await _http(scope, receive, send, b"no-lifespan-app")
