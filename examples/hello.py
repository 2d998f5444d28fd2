"""The bundled example: a raw ASGI 3 app with a lifespan, a JSON route and an echo route.

    pounce serve examples.hello:app
    curl http://127.0.0.1:8000/
"""

from __future__ import annotations

import json
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "Hello, world!"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/json":
        body = json.dumps({"message": scope["state"].get("greeting", "Hello, world!")}).encode()
        content_type = b"application/json"
    elif path == "/echo":
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        content_type = b"application/octet-stream"
    else:
        body = scope["state"].get("greeting", "Hello, world!").encode() + b"\n"
        content_type = b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
