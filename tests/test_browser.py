"""A real browser end to end: headless Chromium loads a page over HTTPS from Pounce and
the page's script echoes a WebSocket over ``wss://``.

* Page over HTTP/2 (ALPN ``h2``): Chromium carries the WebSocket in a stream of that
  connection (RFC 8441 extended CONNECT).
* Page and WebSocket over HTTP/1.1: the server offers only ALPN ``http/1.1``.
* Page over HTTP/2, WebSocket to a second server (another origin) with the default
  ALPN: Chromium opens a new connection for it, offering only ``http/1.1``.

Each case proves the version three ways: what the app saw in the WebSocket scope
(the page asks for it), the access log line, and the echo itself.

Chromium is driven over the DevTools protocol (``--remote-debugging-pipe``) and the
test waits, under a real-time deadline, for the promise the page settles when it is
done.  ``--dump-dom --virtual-time-budget`` raced: virtual time runs ahead while no
*fetch* is pending, and a WebSocket is not one, so Chromium could dump the DOM (and
close the socket, 1001) before ``onopen`` fired: a new TLS connection for an
HTTP/1.1 WebSocket lost that race most of the time.

Chromium is Debian's ``chromium`` package, apt-installed by the session fixture when
missing (as root).  The test CA and server certificate are made in a temp directory;
Chromium is told to ignore certificate errors (it does not know the test CA).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helpers.server import Server
from helpers.tls import Pki, tls_ready
from helpers.tools import require_tool

pytestmark = pytest.mark.slow

APP = "apps.browser_app:app"
ECHO = "echo:hello from chromium"


@pytest.fixture(scope="session")
def chromium() -> str:
    """/usr/bin/chromium, installed by .ci/install-tools."""
    return require_tool("chromium", "chromium")


#: Runs Chromium with the pipe ends given as fds 3 and 4, where it expects them.
_LAUNCH = (
    "import os, sys; ends = [int(fd) for fd in sys.argv[1:3]]; "
    "os.dup2(ends[0], 3); os.dup2(ends[1], 4); [os.close(fd) for fd in ends]; "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


def _high(fd: int) -> int:
    """``fd`` moved to 10 or above, clear of fds 3 and 4 (which ``_LAUNCH`` overwrites)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """Headless Chromium over ``--remote-debugging-pipe``: DevTools protocol messages
    are JSON, each ended by a NUL byte; commands go in on fd 3, answers come out on fd 4."""

    def __init__(self, binary: str, profile: str) -> None:
        commands_in, self._commands = map(_high, os.pipe())
        self._answers, answers_out = map(_high, os.pipe())
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--ignore-certificate-errors",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        launcher = [sys.executable, "-c", _LAUNCH, str(commands_in), str(answers_out)]
        self.proc = subprocess.Popen(
            [*launcher, binary, *flags],
            pass_fds=(commands_in, answers_out),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_in)
        os.close(answers_out)
        self._buffer = b""
        self._unclaimed: list[dict[str, Any]] = []
        self._last_id = 0

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Send a command; return its result once it comes, within ``timeout`` seconds."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        answer_id = self._last_id
        answer = self.wait(lambda m: m.get("id") == answer_id, timeout)
        assert "error" not in answer, f"{method}: {answer['error']}"
        result: dict[str, Any] = answer["result"]
        return result

    def wait(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first message (answer or event) that ``predicate`` accepts; the others
        are kept for later waits (an event may come before the answer awaited first)."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, _, self._buffer = self._buffer.partition(b"\0")
                self._unclaimed.append(json.loads(raw))
            for message in self._unclaimed:
                if predicate(message):
                    self._unclaimed.remove(message)
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Chromium did not answer within {timeout}s")
            readable, _, _ = select.select([self._answers], [], [], left)
            if readable:
                chunk = os.read(self._answers, 65536)
                assert chunk, f"Chromium exited: {self.proc.poll()}"
                self._buffer += chunk

    def outcome(self, url: str, timeout: float = 30.0) -> Any:
        """Load ``url`` in a new tab and return what its ``window.outcome`` settles to."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        sid = session["sessionId"]
        self.call("Page.enable", session=sid)
        navigation = self.call("Page.navigate", {"url": url}, session=sid)
        assert "errorText" not in navigation, navigation
        self.wait(
            lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == sid,
            timeout,
        )
        evaluated = self.call(
            "Runtime.evaluate",
            {"expression": "window.outcome", "awaitPromise": True, "returnByValue": True},
            session=sid,
            timeout=timeout,
        )
        assert "exceptionDetails" not in evaluated, evaluated
        return evaluated["result"]["value"]

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.call("Browser.close", timeout=5)
            self.proc.wait(10)
        except (OSError, TimeoutError, AssertionError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)
        finally:
            os.close(self._commands)
            os.close(self._answers)


@pytest.fixture
def browser(chromium: str) -> Iterator[Browser]:
    profile = tempfile.mkdtemp(prefix="pounce-chromium-")
    browser = Browser(chromium, profile)
    try:
        yield browser
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)


def tls_server(serve: Callable[..., Server], pki: Pki, **env: str) -> Server:
    server = serve(APP, env=pki.env(**env), ready=False)
    tls_ready(server, pki)
    return server


def test_chromium_page_over_h2_and_wss_echo_in_an_h2_stream(
    serve: Callable[..., Server], pki: Pki, browser: Browser
) -> None:
    server = tls_server(serve, pki)
    outcome = browser.outcome(f"https://127.0.0.1:{server.port}/")
    # Chromium opens the WebSocket over the HTTP/2 connection it already has
    # (RFC 8441: Pounce advertises SETTINGS_ENABLE_CONNECT_PROTOCOL).
    assert outcome == {"result": ECHO, "scope": {"http_version": "2", "scheme": "wss"}}, outcome
    assert server.wait_output('"GET / HTTP/2" 200', timeout=10), server.output
    assert server.wait_output('"CONNECT /ws HTTP/2" 200', timeout=10), server.output


def test_chromium_wss_echo_over_http11_when_alpn_offers_only_http11(
    serve: Callable[..., Server], pki: Pki, browser: Browser
) -> None:
    server = tls_server(serve, pki, POUNCE_TLS_ALPN="http/1.1")
    outcome = browser.outcome(f"https://127.0.0.1:{server.port}/")
    assert outcome == {"result": ECHO, "scope": {"http_version": "1.1", "scheme": "wss"}}, outcome
    assert server.wait_output('"GET / HTTP/1.1" 200', timeout=10), server.output
    assert server.wait_output('"GET /ws HTTP/1.1" 101', timeout=10), server.output
    assert " HTTP/2" not in server.output


def test_chromium_page_over_h2_and_wss_echo_over_http11_to_another_origin(
    serve: Callable[..., Server], pki: Pki, browser: Browser
) -> None:
    pages, sockets = tls_server(serve, pki), tls_server(serve, pki)  # both: ALPN h2,http/1.1
    ws = f"wss://127.0.0.1:{sockets.port}/ws"
    outcome = browser.outcome(f"https://127.0.0.1:{pages.port}/?ws={ws}")
    # No HTTP/2 connection to that origin to reuse: Chromium's WebSocket connection
    # offers ALPN http/1.1 alone, and Pounce answers the Upgrade on it.
    assert outcome == {"result": ECHO, "scope": {"http_version": "1.1", "scheme": "wss"}}, outcome
    assert pages.wait_output(' HTTP/2" 200', timeout=10), pages.output
    assert sockets.wait_output('"GET /ws HTTP/1.1" 101', timeout=10), sockets.output
