"""The app of the deployment tests: shows what the server and any proxy passed on.

``/`` answers JSON with the scope's scheme, client, server, root_path, path and headers
(so a test can see a proxy's X-Forwarded-* headers arrive); ``/slow?seconds=S``
answers after S seconds (a request still in flight while the server drains).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        query = parse_qs(scope.get("query_string", b"").decode())
        await asyncio.sleep(float(query.get("seconds", ["1"])[0]))
    body = json.dumps(
        {
            "scheme": scope["scheme"],
            "client": scope.get("client"),
            "server": scope.get("server"),
            "root_path": scope.get("root_path", ""),
            "path": scope["path"],
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
