"""An app whose requests make the event loop report errors outside any request.

``GET /?n=N`` schedules N (default 0) callbacks that raise (asyncio reports each one as
"Exception in callback ...") and answers 200; the callbacks run right after.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

MARKER = "loop-error-marker-5521"


def _fail(i: int) -> None:
    raise RuntimeError(f"{MARKER} #{i}")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    n = int(parse_qs(scope["query_string"].decode()).get("n", ["0"])[0])
    loop = asyncio.get_running_loop()
    for i in range(n):
        loop.call_soon(_fail, i)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"scheduled"})
