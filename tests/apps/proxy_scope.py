"""The scope as the app sees it, for every kind of request (the proxy-header tests).

HTTP requests (HTTP/1.1 and HTTP/2) get ``apps.asgi_scope``'s JSON answer (decode with
``helpers.asgi.scope_of``); a WebSocket on ``/scope`` gets ``apps.ws_echo``'s: its scope
as one JSON text message, then a close.
"""

from __future__ import annotations

from typing import Any

from apps import asgi_scope, ws_echo


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await ws_echo.app(scope, receive, send)
    else:
        await asgi_scope.app(scope, receive, send)
