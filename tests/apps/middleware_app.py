"""An app and ASGI middleware classes for the middleware, ``pounce.run`` and ``pounce.testing``
tests (``apps.middleware_app``).

``app``: HTTP answers JSON ``{"seen": [...], "state": {...}, "http": "1.1"|"2"}``:
``seen`` lists the middleware that handled the request, in the order they saw it,
``state`` the lifespan state (startup sets ``started`` and, when middleware wrapped
the lifespan too, ``lifespan_seen``).  A WebSocket is accepted and gets the same JSON
as one text message, then each text it sends is echoed.

``Outer`` and ``Inner`` add their name to ``scope["seen"]`` on the way in and a
response header ``x-layer: <name>`` on the way out (HTTP ``http.response.start``
and ``websocket.accept``).  So ``["...:Outer", "...:Inner"]`` gives
``seen == ["outer", "inner"]`` and headers ``x-layer: inner`` then ``x-layer: outer``.

Bad middleware: ``NOT_CALLABLE``, ``Raises`` (its constructor raises), ``Sync``
(an instance that is not an ASGI 3 app).  ``failing_startup`` fails lifespan startup.
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                if scope.get("seen"):
                    scope["state"]["lifespan_seen"] = list(scope["seen"])
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    info = {
        "seen": scope.get("seen", []),
        "state": dict(scope.get("state") or {}),
        "http": scope.get("http_version"),
        "path": scope["path"],
    }
    body = json.dumps(info).encode()
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": body.decode()})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Layer:
    name = ""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        scope = {**scope, "seen": [*scope.get("seen", []), self.name]}

        async def send_with_header(message: dict[str, Any]) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                headers = [*message.get("headers", []), (b"x-layer", self.name.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)


class Outer(_Layer):
    name = "outer"


class Inner(_Layer):
    name = "inner"


NOT_CALLABLE = 42


class Raises:
    def __init__(self, app: Any) -> None:
        raise RuntimeError("middleware constructor broke")


class Sync:
    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope: Scope) -> None:
        pass


async def failing_startup(scope: Scope, receive: Any, send: Any) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no database"})
