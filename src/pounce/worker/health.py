"""Health and metrics endpoints answered by a worker before the app.

``/health/live``: the supervisor is alive and can start workers, and this worker's loop
runs (it answers).
``/health/ready``: a generation is ready and the daemon is not draining.
``/metrics``: Prometheus text, added up over all workers by the supervisor.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pounce.config import Config
from pounce.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from pounce.worker.context import ServerState
    from pounce.worker.link import SupervisorLink

PROMETHEUS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


async def respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", b"%d" % len(body)),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    await respond(send, status, json.dumps(payload).encode(), b"application/json")


def special_routes(config: Config, state: ServerState, link: SupervisorLink) -> dict[str, ASGIApp]:
    """The paths a worker answers itself, from ``[health]`` and ``[metrics]``."""

    async def live(scope: Scope, receive: Receive, send: Send) -> None:
        if not link.supervisor_alive:
            await respond_json(send, 503, {"status": "supervisor not answering"})
        elif not link.supervisor_can_spawn:
            await respond_json(send, 503, {"status": "cannot start workers"})
        else:
            await respond_json(send, 200, {"status": "alive"})

    async def ready(scope: Scope, receive: Receive, send: Send) -> None:
        if link.ready_for_traffic and not state.draining:
            await respond_json(send, 200, {"status": "ready"})
        else:
            await respond_json(send, 503, {"status": "draining" if state.draining else "not ready"})

    async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            text = await link.fetch_metrics()
        except TimeoutError:
            await respond_json(send, 503, {"status": "metrics unavailable"})
            return
        await respond(send, 200, text.encode(), PROMETHEUS_TYPE)

    routes: dict[str, ASGIApp] = {}
    if config.health.public:
        routes[config.health.live_path] = live
        routes[config.health.ready_path] = ready
    if config.metrics.enabled and config.metrics.public:
        routes[config.metrics.path] = metrics
    return routes
