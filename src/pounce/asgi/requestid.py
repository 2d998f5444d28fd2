"""Request IDs (``[request_id]``): one per request, in the scope, the response and the logs.

A worker builds one :class:`RequestIds` (None when ``[request_id] enabled = false``:
then nothing here runs).  Each request's connection asks it for the ID when it
builds the scope (:meth:`RequestIds.take`), which goes in
``scope["extensions"]["request_id"]``; the response writers add the header line
(``RequestIds.field``, lower-case like every header Pounce writes) unless the app
sent that header itself, and the access and error logs read the ID back from the
scope (:func:`log_suffix`).

A trusted peer's (``[proxy] trusted``) ID is kept when it is 1-200 characters of
``[A-Za-z0-9._:-]``; anything else, and every untrusted peer's, is replaced by a
new one.  New IDs are 32 hex digits: 128 bits from a per-worker
:class:`random.Random` seeded from ``os.urandom`` (unique, not secret: an ID is
not a credential).  Measured on CPython 3.11, ``getrandbits(128).to_bytes(16).hex()``
takes ~100 ns, against ~215 ns for ``"%032x" % getrandbits(128)``, ~275 ns for
``os.urandom(16).hex()`` and ~1.4-1.8 us for ``uuid4()``.

Pure: no I/O after construction.
"""

from __future__ import annotations

import os
import random
import re
from typing import Any

from pounce.types import Scope

Headers = list[tuple[bytes, bytes]]

#: An incoming ID that is kept (from a trusted peer only).
_VALID = re.compile(rb"[A-Za-z0-9._:\-]{1,200}")


class RequestIds:
    """One worker's request-ID source and header name."""

    __slots__ = ("bits", "field", "name")

    def __init__(self, header: str, seed: bytes | None = None) -> None:
        #: The header's name, lower-case: read from requests, written to responses.
        self.name = header.lower().encode("ascii")
        #: The start of the HTTP/1.1 header line: ``b"x-request-id: "``.
        self.field = self.name + b": "
        self.bits = random.Random(seed if seed is not None else os.urandom(32)).getrandbits

    def new(self) -> str:
        """A fresh ID: 32 hex digits."""
        return self.bits(128).to_bytes(16).hex()

    def take(self, headers: Headers, trusted: bool) -> str:
        """The ID of a request: the trusted peer's (first header of that name) when
        valid, else a fresh one.  ``headers`` is only read, never changed."""
        if trusted:
            name = self.name
            for key, value in headers:
                if key == name:
                    if _VALID.fullmatch(value) is not None:
                        return value.decode("ascii")
                    break
        return self.bits(128).to_bytes(16).hex()

    def assign(self, headers: Headers, trusted: bool, extensions: dict[str, Any]) -> bytes:
        """:meth:`take`, put in ``extensions["request_id"]``; returns the ID as ASCII
        bytes, for the response header.  (The HTTP/1.1 connection says the untrusted
        case inline: it runs once per request.)"""
        rid = self.take(headers, True) if trusted else self.bits(128).to_bytes(16).hex()
        extensions["request_id"] = rid
        return rid.encode()

    def line(self, rid: bytes) -> bytes:
        """The HTTP/1.1 header line of the ID ``rid``: ``b"x-request-id: <id>\\r\\n"``."""
        return self.field + rid + b"\r\n"

    def pair(self, scope: Scope) -> tuple[bytes, bytes] | None:
        """The response header ``(name, id)`` of a scope's request (None without an ID)."""
        rid = scope["extensions"].get("request_id")
        return None if rid is None else (self.name, rid.encode("ascii"))


def add_header(headers: Headers, pair: tuple[bytes, bytes] | None) -> Headers:
    """``headers`` with the request-ID header appended, unless the app sent one."""
    if pair is None:
        return headers
    name = pair[0]
    for key, _ in headers:
        if key.lower() == name:
            return headers
    return [*headers, pair]


def log_suffix(scope: Scope) -> tuple[str, dict[str, Any] | None]:
    """For a log line about a request: ``" rid=<id>"`` for the text and the JSON
    ``extra`` (``{"request_id": id}``); ``("", None)`` without an ID."""
    extensions = scope.get("extensions")
    rid = extensions.get("request_id") if extensions else None
    if rid is None:
        return "", None
    return " rid=" + rid, {"request_id": rid}
