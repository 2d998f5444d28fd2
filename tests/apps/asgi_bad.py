"""Objects that are not ASGI 3 applications, for the CLI import-error tests."""

from __future__ import annotations

from typing import Any

not_callable = {"i am": "a dict, not an app"}


class Asgi2App:
    """ASGI 2 style: instantiated with the scope, then awaited with receive/send."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2"})


def single_arg(scope: dict[str, Any]) -> Any:
    """ASGI 2 style function: one argument, returns the instance coroutine."""

    async def instance(receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2"})

    return instance
