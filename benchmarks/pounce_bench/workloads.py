"""The workloads: which route of the benchmark app wrk hits, and how."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pounce.errors import UsageError


@dataclass(frozen=True, slots=True)
class Workload:
    """One workload.  ``body_size`` makes wrk POST that many bytes (through a Lua
    script); ``idle`` holds that many idle keep-alive connections open during the load."""

    name: str
    path: str
    description: str
    body_size: int = 0
    idle: bool = False


WORKLOADS: tuple[Workload, ...] = (
    Workload("hello", "/hello", "GET, 13-byte text/plain answer"),
    Workload("json", "/json", "GET, small JSON object serialised per request"),
    Workload("echo-1k", "/echo", "POST 1 KiB, the app reads it and echoes it back", 1024),
    Workload("echo-64k", "/echo", "POST 64 KiB, read in full and echoed back", 65536),
    Workload("stream", "/stream", "GET, 10 chunks of 1 KiB (chunked transfer-encoding)"),
    Workload("download-1m", "/download", "GET, one 1 MiB body with Content-Length"),
    Workload(
        "idle-1k",
        "/hello",
        "hello, while a helper process holds idle keep-alive connections open (1000 by default)",
        idle=True,
    ),
)
BY_NAME = {w.name: w for w in WORKLOADS}


def select_workloads(names: Sequence[str] | None) -> list[Workload]:
    """The named workloads in the order given, or all of them; unknown names raise."""
    if not names:
        return list(WORKLOADS)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise UsageError(
            f"unknown workload(s): {', '.join(unknown)}",
            hint=f"choose from {', '.join(BY_NAME)}",
        )
    return [BY_NAME[n] for n in dict.fromkeys(names)]
