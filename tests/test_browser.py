"""A real browser end to end: headless Chromium loads a page over HTTPS (HTTP/2 by
ALPN) and its script talks to the same server over ``wss://``.

Chromium is Debian's ``chromium`` package, apt-installed by the session fixture when
missing (as root).  The test CA and server certificate are made in a temp directory;
Chromium is told to ignore certificate errors (it does not know the test CA).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator

import pytest

from apps.h2_support import Pki, ensure_apt, pki, tls_ready
from conftest import Server

__all__ = ["pki"]

APP = "apps.browser_app:app"


@pytest.fixture(scope="session")
def chromium() -> str:
    """/usr/bin/chromium; apt-installed when missing (``apt-get update`` first if needed)."""
    try:
        return ensure_apt("chromium", "chromium")
    except subprocess.CalledProcessError:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=600)
        return ensure_apt("chromium", "chromium")


@pytest.fixture
def profile() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="pounce-chromium-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def dump_dom(chromium: str, profile: str, url: str, *flags: str, timeout: float = 60.0) -> str:
    """Load ``url`` headlessly, let its scripts run, and return the DOM."""
    command = [
        chromium,
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
        *flags,
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"chromium exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def test_chromium_page_over_h2_and_wss_echo(
    serve: Callable[..., Server], pki: Pki, chromium: str, profile: str
) -> None:
    server = serve(APP, env=pki.env(), ready=False)
    tls_ready(server, pki)
    # --dump-dom fires when Chromium's virtual time budget runs out; on a busy machine
    # the WebSocket round trip can miss a short budget, so give it up to three tries.
    for budget in (5000, 15000, 30000):
        dom = dump_dom(
            chromium,
            profile,
            f"https://127.0.0.1:{server.port}/",
            f"--virtual-time-budget={budget}",
        )
        if "echo:hello from chromium" in dom:
            break
    assert '<div id="result">echo:hello from chromium</div>' in dom, dom
    assert "<title>echo:hello from chromium</title>" in dom, dom
    # The page came over HTTP/2 (ALPN h2), the WebSocket handshake was answered.
    assert server.wait_output('"GET / HTTP/2" 200', timeout=10), server.output
    # Chromium opens the WebSocket over the HTTP/2 connection it already has
    # (RFC 8441: Pounce advertises SETTINGS_ENABLE_CONNECT_PROTOCOL).
    assert server.wait_output('"CONNECT /ws HTTP/2" 200', timeout=10), server.output
