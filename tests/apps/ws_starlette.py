"""A Starlette app with a WebSocket route (``apps.ws_starlette:app``).

``/ws/{name}`` greets ``hello NAME``, then answers each JSON ``{"n": N}`` with
``{"n": N + 1}`` until the client closes.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def greet(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(f"hello {websocket.path_params['name']}")
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"n": data["n"] + 1})
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[WebSocketRoute("/ws/{name}", greet)])
