"""ASGI apps for the supervisor daemon suites.

``app`` answers JSON naming the worker that served it (pid, thread) and has routes
for the behaviours the daemon tests need: a slow request held until a file
exists, an event loop blocked by ``time.sleep``, a worker that exits.  The other
apps misbehave on purpose: they crash after startup, crash on every request or
fail their lifespan startup.

Coordination with the test goes through files named in the query string and
marker lines printed to stdout, so no test sleeps to wait for the app.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from typing import Any
from urllib.parse import parse_qs


def _query(scope: dict[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}


async def _drain_body(receive: Any) -> None:
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return
        more = bool(message.get("more_body", False))


async def _respond(send: Any, status: int, body: bytes, ctype: bytes = b"application/json") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _who(scope: dict[str, Any], **extra: Any) -> bytes:
    data = {
        "app": "daemon-app",
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "path": scope["path"],
        **extra,
    }
    return json.dumps(data).encode()


async def _lifespan(receive: Any, send: Any, on_startup: Any = None) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            print(f"DAEMON-APP-STARTUP pid={os.getpid()}", flush=True)
            await send({"type": "lifespan.startup.complete"})
            if on_startup is not None:
                on_startup()
        elif message["type"] == "lifespan.shutdown":
            print(f"DAEMON-APP-SHUTDOWN pid={os.getpid()}", flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    await _drain_body(receive)
    path = scope["path"]
    q = _query(scope)
    if path == "/slow":
        await slow_request(scope, send, q)
    elif path == "/hang":
        hang_the_event_loop(float(q.get("seconds", "30")))
        await _respond(send, 200, _who(scope, hung=True))
    elif path == "/exit":
        os._exit(int(q.get("code", "1")))
    elif path == "/orphan":
        await _respond(send, 200, _who(scope, orphan=spawn_orphan(q["release"])))
    else:
        await _respond(send, 200, _who(scope))


async def slow_request(scope: dict[str, Any], send: Any, q: dict[str, str]) -> None:
    """Answer only once the file ``release`` exists (or after ``limit`` seconds)."""
    print(f"SLOW-STARTED-{q.get('id', 'x')} pid={os.getpid()}", flush=True)
    deadline = time.monotonic() + float(q.get("limit", "60"))
    released = False
    while time.monotonic() < deadline:
        if os.path.exists(q["release"]):
            released = True
            break
        await asyncio.sleep(0.01)
    body = _who(scope, slow="done" if released else "timed-out")
    await _respond(send, 200 if released else 504, body)


def spawn_orphan(release: str) -> int:
    """Start a grandchild whose parent exits at once (``cmd &`` in a subprocess).

    The orphan waits for the file ``release`` (at most a minute); returns its pid.
    """
    script = (
        '(i=0; while [ ! -e "$1" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done) '
        "</dev/null >/dev/null 2>&1 & echo $!"
    )
    out = subprocess.run(
        ["sh", "-c", script, "sh", release], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def hang_the_event_loop(seconds: float) -> None:
    """Block the worker's event loop (a blocking call in an async app)."""
    print(f"HANG-STARTED pid={os.getpid()}", flush=True)
    time.sleep(seconds)


def _exit_soon() -> None:
    asyncio.get_running_loop().call_later(0.3, os._exit, 1)


async def crash_after_start(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Starts fine, then the process exits with status 1 a moment later."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, on_startup=_exit_soon)
        return
    await _drain_body(receive)
    await _respond(send, 200, _who(scope))


async def crash_on_request(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Starts fine; every request makes the process exit with status 1."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await _drain_body(receive)
    print(f"CRASHING-ON-REQUEST pid={os.getpid()}", flush=True)
    os._exit(1)


async def lifespan_refuses(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Lifespan startup fails with a recognisable message."""
    if scope["type"] == "lifespan":
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send(
                {"type": "lifespan.startup.failed", "message": "daemon-lifespan-refused-5521"}
            )
        return
    await _drain_body(receive)
    await _respond(send, 200, _who(scope))
