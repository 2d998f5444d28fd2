"""An app that checks what asyncio promises inside a request.

Pounce steps most apps eagerly, as the connection's runner Task; these routes check
that this is invisible to the app: a real current Task that stays the same across
suspensions, working timeouts and cancellation, and a fresh context per request.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from typing import Any

import anyio

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")
released: asyncio.Event | None = None  # made lazily, on the server's loop
tail_state: dict[str, Any] = {"done": False}


async def reply(send: Any, payload: Any, status: int = 200) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


second_released: asyncio.Event | None = None


def _second() -> asyncio.Event:
    global second_released
    if second_released is None:
        second_released = asyncio.Event()
    return second_released


def _event() -> asyncio.Event:
    global released
    if released is None:
        released = asyncio.Event()
    return released


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    task = asyncio.current_task()
    if path == "/task":
        before = task
        await asyncio.sleep(0.01)
        after = asyncio.current_task()
        await reply(
            send,
            {
                "is_task": isinstance(before, asyncio.Task),
                "same_after_suspend": before is after,
                "cancelling": before.cancelling() if before is not None else None,
            },
        )
    elif path == "/no-suspend":
        await reply(send, {"is_task": isinstance(task, asyncio.Task)})
    elif path == "/timeout-fires":
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(30)
            outcome = "not fired"
        except TimeoutError:
            outcome = "timed out"
        assert task is not None
        await reply(send, {"outcome": outcome, "cancelling": task.cancelling()})
    elif path == "/timeout-quiet":
        async with asyncio.timeout(5):
            await asyncio.sleep(0)
        assert task is not None
        await reply(send, {"outcome": "ok", "cancelling": task.cancelling()})
    elif path == "/cancel-self":
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(0)
            outcome = "not cancelled"
        except asyncio.CancelledError:
            task.uncancel()
            outcome = "cancelled"
        await reply(send, {"outcome": outcome})
    elif path == "/ctx-set":
        before = VAR.get()
        VAR.set("set by an earlier request")
        await reply(send, {"before": before})
    elif path == "/ctx-get":
        await reply(send, {"value": VAR.get()})
    elif path == "/tail":
        # Answer, then go on working until /release is called on the same connection.
        await reply(send, {"answered": True})
        await asyncio.wait_for(_event().wait(), 10)
        tail_state["done"] = True
    elif path == "/release":
        _event().set()
        await reply(send, {"released": True})
    elif path == "/tail-done":
        await reply(send, {"done": tail_state["done"]})
    elif path == "/stream-wait":
        # A first chunk, then a wait that only another connection can end: the chunk
        # must reach the client while the app waits.
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-stream", b"1")]})
        await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        await asyncio.wait_for(_second().wait(), 10)
        await send({"type": "http.response.body", "body": b"second"})
    elif path == "/release-second":
        _second().set()
        await reply(send, {"released": True})
    elif path == "/stream-many":
        # 16 MiB in 1 KiB chunks, without ever suspending in the app.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"z" * 1024
        for _ in range(16 * 1024 - 1):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": chunk})
    elif path == "/anyio":
        with anyio.move_on_after(0.05) as moved:
            await anyio.sleep(30)
        try:
            with anyio.fail_after(0.05):
                await anyio.sleep(30)
            failed = False
        except TimeoutError:
            failed = True
        with anyio.move_on_after(5) as quiet:
            await anyio.sleep(0)
        await reply(
            send,
            {
                "moved_on": moved.cancelled_caught,
                "failed_after": failed,
                "quiet_cancelled": quiet.cancelled_caught,
            },
        )
    elif path == "/error-after-suspend":
        await asyncio.sleep(0)
        raise RuntimeError("boom after a suspension")
    else:
        await reply(send, {"path": path}, 404)
