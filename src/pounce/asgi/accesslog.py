"""The access log: one line per answered request, the same for every protocol."""

from __future__ import annotations

import logging
from typing import Any

from pounce.types import Scope

access_log = logging.getLogger("pounce.access")


def log_request(
    scope: Scope, status: int, nbytes: int, duration: float, *, method: str | None = None
) -> None:
    """``client - "METHOD /path?query HTTP/x" status bytes duration``; JSON gets the fields."""
    client = scope.get("client")
    client_str = f"{client[0]}:{client[1]}" if client else "-"
    query = scope["query_string"]
    path = scope["raw_path"].decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    method = method or scope["method"]
    extra: dict[str, Any] = {
        "client": client_str,
        "method": method,
        "path": path,
        "http_version": scope["http_version"],
        "status": status,
        "bytes": nbytes,
        "duration_ms": round(duration * 1000, 3),
    }
    access_log.info(
        '%s - "%s %s HTTP/%s" %d %d %.1fms',
        client_str,
        method,
        path,
        scope["http_version"],
        status,
        nbytes,
        duration * 1000,
        extra=extra,
    )
