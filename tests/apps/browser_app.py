"""ASGI app for the headless-browser test (``apps.browser_app:app``).

``GET /``  an HTML page whose script opens a WebSocket to ``/ws`` on the same
           origin (or to the ``wss://`` URL in the query parameter ``ws``), sends
           ``hello from chromium``, writes what comes back into ``#result`` and
           ``document.title`` (``echo:<text>``, or ``error:...``), then asks for the
           WebSocket scope and writes it into ``#scope``.  ``window.outcome`` is a
           promise of ``{result, scope}``, settled when the page is done.
``/ws``    WebSocket: echoes every message, text as text, bytes as bytes;
           the reply to text is prefixed ``echo:``, except the text ``scope?``,
           answered with the JSON ``{"http_version", "scheme"}`` of its scope.
``/slow``  WebSocket (flow-control test): after the text ``start`` it reads nothing
           for 1.5 s, then counts the messages up to the text ``end`` and answers
           ``got N``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

PAGE = b"""<!doctype html>
<html>
<head><meta charset="utf-8"><title>waiting</title></head>
<body>
<div id="result">waiting</div>
<div id="scope">waiting</div>
<script>
const result = document.getElementById("result");
function show(text) { result.textContent = text; document.title = text; }
window.outcome = new Promise((resolve) => {
  try {
    const target = new URLSearchParams(location.search).get("ws");
    const ws = new WebSocket(target || "wss://" + location.host + "/ws");
    ws.onopen = () => ws.send("hello from chromium");
    ws.onmessage = (event) => {
      if (result.textContent === "waiting") {
        show(String(event.data));
        ws.send("scope?");
      } else {
        document.getElementById("scope").textContent = String(event.data);
        ws.close(1000);
        resolve({result: result.textContent, scope: JSON.parse(event.data)});
      }
    };
    ws.onerror = () => { show("error:websocket"); resolve({result: "error:websocket"}); };
  } catch (e) {
    show("error:" + e);
    resolve({result: "error:" + e});
  }
});
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
        if message.get("text") == "scope?":
            seen = {"http_version": scope["http_version"], "scheme": scope["scheme"]}
            await send({"type": "websocket.send", "text": json.dumps(seen)})
        elif message.get("text") is not None:
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
