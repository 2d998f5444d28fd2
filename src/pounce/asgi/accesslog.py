"""The access log: one line per answered request, the same for every protocol."""

from __future__ import annotations

import logging
from typing import Any

from pounce.types import Scope

access_log = logging.getLogger("pounce.access")

_LINE = '%s - "%s %s HTTP/%s" %d %d %.1fms'
_LINE_ID = _LINE + " rid=%s"  # [request_id]


def log_request(
    scope: Scope, status: int, nbytes: int, duration: float, *, method: str | None = None
) -> None:
    """``client - "METHOD /path?query HTTP/x" status bytes duration [rid=ID]``; JSON gets
    the fields (``request_id`` with an ID)."""
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
    args = (client_str, method, path, scope["http_version"], status, nbytes, duration * 1000)
    rid = scope["extensions"].get("request_id")
    if rid is None:
        access_log.info(_LINE, *args, extra=extra)
    else:
        extra["request_id"] = rid
        access_log.info(_LINE_ID, *args, rid, extra=extra)
