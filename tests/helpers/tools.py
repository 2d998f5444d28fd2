"""The system tools some tests drive (Chromium, testssl.sh, h2load, wrk, systemd's).

They are installed by one declared step, ``.ci/install-tools`` (which ``.ci/run`` calls
before the suite), never from inside a test: a test only looks them up and fails with
what to run when one is missing."""

from __future__ import annotations

import shutil

import pytest

INSTALL = ".ci/install-tools"


def require_tool(binary: str, package: str) -> str:
    """The path of ``binary``; the test fails, naming the remedy, when it is absent."""
    found = shutil.which(binary) or shutil.which(binary, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if found is None:
        pytest.fail(f"{binary} is missing: run {INSTALL} (apt-get install {package})")
    return found
