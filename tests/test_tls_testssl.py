"""testssl.sh against a TLS listener: no SSLv2/SSLv3/TLS 1.0/TLS 1.1, no weak
cipher category, TLS 1.2 and 1.3 offered, ALPN h2 and http/1.1.

testssl.sh comes from apt (Debian ``testssl.sh``), installed by ``.ci/install-tools``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.server import Server
from helpers.tls import APP, Pki, tls_ready
from helpers.tools import require_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NOT_OFFERED = [
    "SSLv2",
    "SSLv3",
    "TLS1",
    "TLS1_1",
    "cipherlist_NULL",
    "cipherlist_aNULL",
    "cipherlist_EXPORT",
    "cipherlist_LOW",
    "cipherlist_3DES_IDEA",
    "cipherlist_AVERAGE",  # obsolete CBC suites
]


def test_testssl_finds_no_weak_protocol_or_cipher(
    serve: Callable[..., Server], pki: Pki, tmp_path: Path
) -> None:
    testssl = require_tool("testssl", "testssl.sh")
    server = serve(APP, env=pki.env(), ready=False)
    tls_ready(server, pki)
    report = tmp_path / "testssl.json"
    result = subprocess.run(
        [
            testssl,
            "--quiet",
            "--warnings",
            "off",
            "--color",
            "0",
            "--protocols",
            "--std",
            "--jsonfile",
            str(report),
            f"127.0.0.1:{server.port}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    # (testssl's exit code counts findings; the JSON report is what is checked.)
    assert report.exists(), result.stdout + result.stderr
    findings = {item["id"]: item for item in json.loads(report.read_text())}
    summary = "\n".join(f"{k}: {v['severity']} {v['finding']}" for k, v in findings.items())
    for key in NOT_OFFERED:
        assert findings[key]["finding"].startswith("not offered"), summary
    assert findings["TLS1_2"]["finding"] == "offered", summary
    assert findings["TLS1_3"]["finding"].startswith("offered"), summary
    assert findings["ALPN_HTTP2"]["finding"] == "h2", summary
    assert findings["cipherlist_STRONG"]["finding"] == "offered", summary
    bad = [k for k, v in findings.items() if v["severity"] in ("LOW", "MEDIUM", "HIGH", "CRITICAL")]
    assert not bad, summary
