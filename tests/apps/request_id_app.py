"""An ASGI 3 app that shows the request ID the server gave it (tests/test_request_id.py).

HTTP: answers JSON ``{"request_id": ..., "has_key": ..., "headers": [[name, value], ...]}``
(``scope["extensions"]``'s ``request_id``, whether that key is there at all, and the
request headers as the app got them, latin-1).  ``/own-id`` also sends its own
``X-Request-ID: app-chosen`` header; ``/boom`` raises before answering.

WebSocket: ``/deny`` denies the handshake with a 403; any other path accepts, sends
the same JSON as one text message and closes.
"""

from __future__ import annotations

import json
from typing import Any


def _shown(scope: dict[str, Any]) -> bytes:
    extensions = scope.get("extensions") or {}
    return json.dumps(
        {
            "request_id": extensions.get("request_id"),
            "has_key": "request_id" in extensions,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        }
    ).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        if scope["path"] == "/deny":
            await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b"denied"})
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": _shown(scope).decode()})
        await send({"type": "websocket.close"})
        return
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return
        more = message.get("more_body", False)
    if scope["path"] == "/boom":
        raise RuntimeError("boom in the app")
    headers = [(b"content-type", b"application/json")]
    if scope["path"] == "/own-id":
        headers.append((b"X-Request-ID", b"app-chosen"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _shown(scope)})
