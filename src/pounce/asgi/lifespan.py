"""The ASGI lifespan protocol: startup before serving, shutdown after."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pounce.errors import LifespanError
from pounce.types import ASGIApp, Message

logger = logging.getLogger("pounce.error")


class Lifespan:
    """Runs one app's lifespan: ``await startup()``, serve, ``await shutdown()``.

    Apps that do not support lifespan (they raise on the lifespan scope before
    sending anything) are served anyway, as the ASGI spec allows.
    """

    def __init__(self, app: ASGIApp, *, timeout: float | None = None) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.supported = True
        self._timeout = timeout
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._started = False

    async def startup(self) -> None:
        """Send ``lifespan.startup``; raise :class:`LifespanError` if the app fails it."""
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        self._task = asyncio.create_task(self._run(scope))
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._reply()
        if message is None:
            return
        if message["type"] == "lifespan.startup.failed":
            detail = message.get("message") or "no message"
            raise LifespanError(f"application startup failed: {detail}")
        self._started = True

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app to finish it."""
        if not self.supported or not self._started or self._task is None:
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        message = await self._reply()
        if message is not None and message["type"] == "lifespan.shutdown.failed":
            logger.error("application shutdown failed: %s", message.get("message") or "")
        if not self._task.done():
            self._task.cancel()

    async def _reply(self) -> Message | None:
        assert self._task is not None
        getter = asyncio.ensure_future(self._from_app.get())
        done, _ = await asyncio.wait(
            {getter, self._task}, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if not done:
            raise LifespanError("application lifespan did not answer in time")
        # The lifespan task ended without replying.
        if self._failure is not None:
            raise self._failure
        self.supported = False
        return None

    _failure: LifespanError | None = None

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            if self._started:
                logger.error("exception in lifespan shutdown", exc_info=exc)
                return
            if not self._received_any and not self._sent_any:
                # An app that does not do lifespan raises on the unknown scope type
                # before it ever asks for a message.
                logger.info(
                    "ASGI lifespan not supported by the app (%s: %s)", type(exc).__name__, exc
                )
                self.supported = False
                return
            self._failure = LifespanError(
                f"application startup failed: {type(exc).__name__}: {exc}"
            )
            logger.error("exception in lifespan startup", exc_info=exc)
        else:
            if not self._sent_any:
                self.supported = False

    _sent_any = False
    _received_any = False

    async def _receive(self) -> Message:
        self._received_any = True
        return await self._to_app.get()

    async def _send(self, message: Message) -> None:
        self._sent_any = True
        await self._from_app.put(message)
