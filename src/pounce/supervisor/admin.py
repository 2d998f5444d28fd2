"""The optional admin listener, served by the supervisor itself: health and metrics.

Probes and scrapes need not share the public port, and they keep working while
workers are being replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from pounce.config import Config
from pounce.errors import ProtocolError
from pounce.protocols import http11

log = logging.getLogger("pounce.error")
PROMETHEUS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class AdminServer:
    """Answers ``[health]`` and ``[metrics]`` paths on ``[admin] host:port``."""

    def __init__(
        self,
        config: Config,
        *,
        is_ready: Callable[[], bool],
        is_live: Callable[[], bool] = lambda: True,
        state: Callable[[], str],
        metrics: Callable[[], Awaitable[str]],
    ) -> None:
        self.config = config
        self.is_ready = is_ready
        self.is_live = is_live
        self.state = state
        self.metrics = metrics
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        admin = self.config.admin
        self.server = await asyncio.start_server(self._serve, admin.host, admin.port)
        sock = self.server.sockets[0]
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)

    async def route(self, path: str) -> tuple[int, bytes, bytes]:
        health, metrics = self.config.health, self.config.metrics
        if path == health.live_path:
            if self.is_live():
                return 200, b'{"status": "alive"}', b"application/json"
            return 503, b'{"status": "cannot start workers"}', b"application/json"
        if path == health.ready_path:
            if self.is_ready():
                return 200, b'{"status": "ready"}', b"application/json"
            body = json.dumps({"status": "not ready", "state": self.state()}).encode()
            return 503, body, b"application/json"
        if metrics.enabled and path == metrics.path:
            return 200, (await self.metrics()).encode(), PROMETHEUS_TYPE
        return 404, b'{"status": "not found"}', b"application/json"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = http11.RequestParser(max_header_size=16384, max_body_size=0)
        try:
            while True:
                event = parser.next_event()
                if event is http11.NEED_DATA:
                    data = await asyncio.wait_for(reader.read(65536), 30.0)
                    if not data:
                        return
                    parser.feed(data)
                    continue
                if not isinstance(event, http11.Request):
                    if event is http11.PAUSED:
                        parser.start_next_cycle()
                    continue
                path = event.target.partition(b"?")[0].decode("latin-1")
                status, body, ctype = await self.route(path)
                headers = [(b"content-type", ctype), (b"content-length", b"%d" % len(body))]
                if not event.keep_alive:
                    headers.append((b"connection", b"close"))
                head = http11.serialize_head(status, headers)
                writer.write(head + (b"" if event.method == b"HEAD" else body))
                await writer.drain()
                if not event.keep_alive:
                    return
        except ProtocolError as exc:
            writer.write(http11.error_response(exc.status, exc.message))
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
