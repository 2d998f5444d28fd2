"""Where HTTP/2 takes a connection over from HTTP/1.1 (RFC 9113 §3).

* TLS: ALPN selected ``h2`` (``on_connect``).
* Cleartext, prior knowledge: the first bytes are the connection preface
  (``on_first_bytes``).
* Cleartext, ``Upgrade: h2c`` with ``HTTP2-Settings`` (RFC 7540 §3.2; dropped
  by RFC 9113 but still sent by curl): ``on_h2c_upgrade``, the handler of the
  ``h2c`` token in the worker's table (:class:`~pounce.worker.context.ProtocolHooks`).

``h2`` is an optional dependency (``pounce[h2]``): without it the worker puts none
of these in its table and ALPN does not offer ``h2``.
"""

from __future__ import annotations

import base64
import importlib.util
import re
from typing import Any

from pounce.protocols.http11 import Request
from pounce.types import Scope
from pounce.worker.context import Upgradable

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"


def h2_available() -> bool:
    """Whether the ``h2`` library is installed."""
    return importlib.util.find_spec("h2") is not None


def _new_h2(conn: Upgradable, upgrade: tuple[bytes, Scope] | None = None) -> Any:
    from pounce.worker.h2connection import H2Connection

    return H2Connection(
        conn.state,
        client=conn.client,
        server=conn.server,
        scheme="https" if conn.tls is not None else "http",
        extensions={"tls": conn.tls} if conn.tls is not None else {},
        upgrade=upgrade,
        trusted=conn.trusted,
    )


def on_connect(conn: Upgradable) -> None:
    transport = conn.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
        conn.switch_protocol(_new_h2(conn))


def on_first_bytes(conn: Upgradable, data: bytes) -> bool:
    if conn.tls is not None:
        return False  # over TLS only ALPN selects HTTP/2 (RFC 9113 §3.3)
    head = data[:16]  # "PRI * HTTP/2.0\r\n"
    if len(head) < 3 or not PREFACE.startswith(head):
        return False
    # The preface may arrive split: its start is enough to commit ("PRI * HTTP/2.0"
    # is no HTTP/1.1 request), h2 checks the rest (a bad one: GOAWAY PROTOCOL_ERROR).
    conn.switch_protocol(_new_h2(conn), data)
    return True


def on_h2c_upgrade(conn: Upgradable, request: Request, scope: Scope) -> bool:
    """``Upgrade: h2c`` (cleartext only): True when HTTP/2 took the connection."""
    return (
        _upgrade_token(request) == b"h2c"
        and conn.tls is None
        and _take_upgrade(conn, request, scope)
    )


def _upgrade_token(request: Request) -> bytes | None:
    for name, value in request.headers:
        if name == b"upgrade":
            return value.strip().lower()
    return None


_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*=*")


def _take_upgrade(conn: Upgradable, request: Request, scope: Scope) -> bool:
    settings = None
    for name, value in request.headers:
        if name == b"http2-settings":
            settings = value.strip()
        elif name in (b"content-length", b"transfer-encoding") and value.strip() not in (b"0",):
            return False  # a request body would have to be read first: stay on HTTP/1.1
    if settings is None or _BASE64URL.fullmatch(settings) is None:
        return False  # (RFC 7540 §3.2.1: base64url; base64 would skip a stray byte)
    padded = settings + b"=" * (-len(settings) % 4)
    try:
        decoded = base64.urlsafe_b64decode(padded)
    except ValueError:
        return False
    if len(decoded) % 6:
        return False  # not a SETTINGS payload (RFC 9113 §6.5.1)
    conn.write(SWITCHING)
    rest = conn.take_buffered()
    conn.switch_protocol(_new_h2(conn, (padded, scope)), rest)
    return True
