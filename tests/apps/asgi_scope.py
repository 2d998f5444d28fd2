"""An ASGI 3 app that answers every HTTP request with its own scope as JSON.

Bytes and tuples do not survive plain JSON, so they are tagged
(``{"__bytes__": latin-1 text}``, ``{"__tuple__": [...]}``) and
``helpers.asgi.decode_tagged`` turns them back into Python values, letting the
tests check the exact types the server put in the scope.

Lifespan: startup stores ``{"answer": 42, "name": "scope-app"}`` in ``scope["state"]``.
``GET /mutate-state`` changes the request's copy of the state, so a later request
can show that each request gets its own copy.
"""

from __future__ import annotations

import json
import os
from typing import Any


def tag(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__bytes__": value.decode("latin-1")}
    if isinstance(value, tuple):
        return {"__tuple__": [tag(v) for v in value]}
    if isinstance(value, list):
        return [tag(v) for v in value]
    if isinstance(value, dict):
        return {str(k): tag(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return {"__repr__": repr(value)}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["answer"] = 42
                scope["state"]["name"] = "scope-app"
                print("SCOPE-APP-STARTUP", flush=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                print("SCOPE-APP-SHUTDOWN", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    # Drain the request body so the connection can be reused.
    more = True
    body = b""
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
    state = scope.get("state")
    state_before = dict(state) if isinstance(state, dict) else None
    if scope["path"].endswith("/mutate-state") and isinstance(state, dict):
        state["answer"] = "mutated"
        state["added-by-request"] = True
    payload = {
        "scope": tag({k: v for k, v in scope.items()}),
        "state_before": tag(state_before),
        "types": {
            "state": type(state).__name__,
            "extensions": type(scope.get("extensions")).__name__,
            "headers": type(scope.get("headers")).__name__,
        },
        "body_length": len(body),
        "pid": os.getpid(),
    }
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
