"""Raw ASGI 3 WebSocket app for the WebSocket tests (``apps.ws_echo:app``).

WebSocket routes (anything not listed is ``/echo``):

``/echo``
    Accepts (choosing subprotocol ``chat`` when offered, with a response header
    ``x-extra: yes``) and echoes every message, text as text and bytes as bytes.
    The text ``close:CODE:REASON`` makes the app close with that code and reason;
    the text ``raise`` makes it raise (the server closes with 1011).
    The code of a disconnect is kept for ``GET /last-close``.
``/scope``
    Accepts and sends the scope (less ``state``) as one JSON text message.
``/deny``
    Answers with an HTTP 418 (the WebSocket Denial Response extension), body in two parts.
``/reject``
    Sends ``websocket.close`` before accepting (the server answers 403).
``/crash``
    Raises before accepting (the server answers 500).

HTTP: ``GET /last-close`` answers the last disconnect code seen (``none`` before any).
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]

_last_close: list[str] = []


async def _http(scope: Scope, receive: Any, send: Any) -> None:
    body = (_last_close[-1] if _last_close else "none").encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def _echo(scope: Scope, receive: Any, send: Any) -> None:
    message = await receive()
    assert message["type"] == "websocket.connect"
    subprotocol = "chat" if "chat" in scope["subprotocols"] else None
    await send(
        {"type": "websocket.accept", "subprotocol": subprotocol, "headers": [(b"x-extra", b"yes")]}
    )
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            _last_close.append(f"{message['code']}")
            return
        text = message.get("text")
        if text == "raise":
            raise RuntimeError("boom after accept")
        if text is not None and text.startswith("close:"):
            _, code, reason = text.split(":", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
            continue
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def _scope(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    shown = {k: v for k, v in scope.items() if k != "state"}
    shown["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
    shown["raw_path"] = scope["raw_path"].decode()
    shown["query_string"] = scope["query_string"].decode()
    await send({"type": "websocket.send", "text": json.dumps(shown)})
    await send({"type": "websocket.close"})


async def _deny(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 418,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"tea"})


async def _reject(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.close"})


async def _crash(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    raise RuntimeError("boom before accept")


_ROUTES = {"/scope": _scope, "/deny": _deny, "/reject": _reject, "/crash": _crash}


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await _http(scope, receive, send)
        return
    await _ROUTES.get(scope["path"], _echo)(scope, receive, send)
