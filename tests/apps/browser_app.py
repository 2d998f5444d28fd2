"""ASGI app for the headless-browser test (``apps.browser_app:app``).

``GET /``  an HTML page whose script opens a WebSocket to ``/ws`` on the same
           origin, sends ``hello from chromium``, and writes what comes back into
           ``#result`` and ``document.title`` (``echo:<text>``, or ``error:...``).
``/ws``    WebSocket: echoes every message, text as text, bytes as bytes;
           the reply to text is prefixed ``echo:``.
``/slow``  WebSocket (flow-control test): after the text ``start`` it reads nothing
           for 1.5 s, then counts the messages up to the text ``end`` and answers
           ``got N``.
"""

from __future__ import annotations

import asyncio
from typing import Any

PAGE = b"""<!doctype html>
<html>
<head><meta charset="utf-8"><title>waiting</title></head>
<body>
<div id="result">waiting</div>
<script>
const result = document.getElementById("result");
function show(text) { result.textContent = text; document.title = text; }
try {
  const ws = new WebSocket("wss://" + location.host + "/ws");
  ws.onopen = () => ws.send("hello from chromium");
  ws.onmessage = (event) => { show(String(event.data)); ws.close(1000); };
  ws.onerror = () => show("error:websocket");
} catch (e) {
  show("error:" + e);
}
</script>
</body>
</html>
"""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "http":
        found = scope["path"] == "/"
        await send(
            {
                "type": "http.response.start",
                "status": 200 if found else 404,
                "headers": [(b"content-type", b"text/html; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": PAGE if found else b"not found"})
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    if scope["path"] == "/slow":
        await _slow(receive, send)
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": "echo:" + message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def _slow(receive: Any, send: Any) -> None:
    assert (await receive()).get("text") == "start"
    await asyncio.sleep(1.5)
    count = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "end":
            break
        count += 1
    await send({"type": "websocket.send", "text": f"got {count}"})
