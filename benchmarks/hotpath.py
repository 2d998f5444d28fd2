"""CPU cost of one keep-alive request through the HTTP/1.1 path, without sockets.

    python benchmarks/hotpath.py [--parser fast|h11] [--n 50000]

Feeds canned requests to an HTTPConnection over a fake transport, one at a time from
a loop callback (as a transport calls data_received), and reports the
best of 5 runs in microseconds per request (lower is better).  It isolates the
Python work per request from the kernel and the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from pounce.asgi.app import import_app
from pounce.config import load_config
from pounce.worker.connection import HTTPConnection
from pounce.worker.server import ServerState

REQUEST = b"GET /hello HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


async def run(parser: str, n: int, app_spec: str) -> float:
    config = load_config(
        None, env={}, overrides={"logging.access_log": False, "http.parser": parser}
    )
    state = ServerState(config, import_app(app_spec), asyncio.get_running_loop())
    conn = HTTPConnection(state, None)
    transport = FakeTransport()
    conn.connection_made(transport)
    start = time.process_time()
    loop = asyncio.get_running_loop()
    for _ in range(n):
        before = transport.written
        # From a loop callback, as a transport calls it (not from inside a Task).
        loop.call_soon(conn.data_received, REQUEST)
        while transport.written == before:
            await asyncio.sleep(0)
    elapsed = time.process_time() - start
    assert transport.written > 0 and not transport.closed
    return elapsed / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parser", default="fast", choices=["fast", "h11"])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--app", default="benchmarks.apps:app")
    ns = ap.parse_args()
    best = min(asyncio.run(run(ns.parser, ns.n, ns.app)) for _ in range(5))
    print(f"{ns.parser}: {best:.2f} us/request ({1e6 / best:,.0f} requests/s of CPU)")


if __name__ == "__main__":
    main()
