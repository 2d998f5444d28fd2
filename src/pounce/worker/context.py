"""What every connection of a worker shares, and the interfaces it is typed by.

:class:`ServerState` is the per-worker context the worker (``worker/server.py``, the
composition root) builds and hands to each connection.  Connections see each other
and the worker only through the small interfaces here (:class:`Connection`,
:class:`Flushable`, :class:`Startable`, :class:`Upgradable`), so no module of
``worker/`` imports the composition root, and none imports another connection's
module to take it over.

:class:`ProtocolHooks` is the table of protocol take-overs the worker builds
(``Worker._protocol_hooks``): HTTP/2 after accept (ALPN) or on its preface, and the
``Upgrade`` tokens (``websocket``, ``h2c``) each with its handler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Protocol

from pounce.asgi.http import note_default_field
from pounce.asgi.proxy import TrustedPeers
from pounce.asgi.requestid import RequestIds
from pounce.config import Config
from pounce.metrics import Collector
from pounce.protocols.http11 import Headers, Request
from pounce.types import ASGIApp, Scope
from pounce.worker.shared import SharedLimit, WorkerSlot

log = logging.getLogger("pounce.error")


class Upgradable(Protocol):
    """What a protocol taking over needs of the HTTP/1.1 connection it takes over."""

    state: ServerState
    transport: asyncio.Transport | None
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    tls: dict[str, Any] | None
    #: Whether the peer is a trusted proxy (``[proxy] trusted``): its headers are believed.
    trusted: bool
    closing: bool

    def write(self, data: bytes) -> None: ...
    def close_transport(self) -> None: ...
    def take_buffered(self) -> bytes: ...
    def switch_protocol(self, protocol: asyncio.BaseProtocol, data: bytes = b"") -> None: ...


#: Takes the connection for an ``Upgrade`` request (True), or leaves it to HTTP (False).
UpgradeHandler = Callable[[Upgradable, Request, Scope], bool]


@dataclass(slots=True)
class ProtocolHooks:
    """Where other protocols take a connection over from HTTP/1.1: a table the worker builds.

    ``on_connect(conn)``: right after accept (TLS ALPN chose ``h2``).
    ``on_first_bytes(conn, data) -> bool``: before the first request is parsed
    (the HTTP/2 prior-knowledge preface); True when it took the connection.
    ``upgrades``: a handler per ``Upgrade`` token (``websocket``, ``h2c``), asked by
    :meth:`upgrade` in the order of the request's tokens.
    Each calls ``conn.switch_protocol(...)`` to take over.
    """

    on_connect: Callable[[Upgradable], None] | None = None
    on_first_bytes: Callable[[Upgradable, bytes], bool] | None = None
    upgrades: dict[bytes, UpgradeHandler] = field(default_factory=dict)

    def upgrade(self, conn: Upgradable, request: Request, scope: Scope) -> bool:
        """A request with an ``Upgrade`` header: True when a handler took the connection."""
        upgrades = self.upgrades
        if not upgrades:
            return False
        tried: set[bytes] = set()
        for token in upgrade_tokens(request.headers):
            handler = upgrades.get(token)
            if handler is not None and token not in tried:
                tried.add(token)
                if handler(conn, request, scope):
                    return True
        return False


def upgrade_tokens(headers: Headers) -> list[bytes]:
    """The lower-cased tokens of every ``Upgrade`` header, in order."""
    out: list[bytes] = []
    for name, value in headers:
        if name == b"upgrade":
            out += [t.lower() for piece in value.split(b",") if (t := piece.strip(b" \t"))]
    return out


class Connection(Protocol):
    """What the worker needs of any connection (HTTP/1.1, HTTP/2, WebSocket)."""

    def shutdown(self, idle_grace: float = 0.0) -> None: ...
    def abort(self) -> None: ...


class Flushable(Protocol):
    """A connection that holds output back until :meth:`flush` (see :meth:`ServerState.cork`)."""

    def flush(self) -> None: ...


class Startable(Protocol):
    """A connection with an app to start (see :meth:`ServerState.defer`)."""

    def start_app(self) -> None: ...


class WatchedConnections(set[Connection]):
    """A worker's connections while it drains: ``on_empty`` runs when the last one goes.

    Swapped in for the plain set when draining begins (connections remove themselves
    through ``state.connections``), so serving pays nothing for it.
    """

    def __init__(self, items: set[Connection], on_empty: Callable[[], object]) -> None:
        super().__init__(items)
        self.on_empty = on_empty

    def discard(self, item: object) -> None:
        super().discard(item)
        if not self:
            self.on_empty()

    def remove(self, item: Connection) -> None:
        super().remove(item)
        if not self:
            self.on_empty()


class CountedConnections(set[Connection]):
    """A worker's connections under ``[limits] max_connections``: each open transport
    holds one place of the daemon-wide :class:`~pounce.worker.shared.SharedLimit`.

    Swapped in for the plain set only when the limit is on.  The place is taken by
    admission (``HTTPConnection.connection_made``, :meth:`SharedLimit.try_acquire`)
    and given back here when the last protocol on that transport leaves the set.  A
    protocol switch (WebSocket, h2c, ALPN h2) adds the new protocol before it discards
    the old one on the same transport, so it neither counts twice nor gives the place
    back for a moment.  ``on_empty`` (set while draining) runs when the last one goes.
    """

    def __init__(self, limit: SharedLimit) -> None:
        super().__init__()
        self.limit = limit
        self.on_empty: Callable[[], object] | None = None
        self._transports: dict[object, object] = {}
        self._protocols: dict[object, int] = {}  # protocols in the set per transport

    def add(self, item: Connection) -> None:
        if item in self:
            return
        super().add(item)
        transport = getattr(item, "transport", None) or item
        self._transports[item] = transport
        self._protocols[transport] = self._protocols.get(transport, 0) + 1

    def discard(self, item: object) -> None:
        if item not in self:
            return
        super().discard(item)
        transport = self._transports.pop(item, item)
        left = self._protocols.pop(transport, 1) - 1
        if left > 0:
            self._protocols[transport] = left
        else:
            self.limit.release()
        if not self and self.on_empty is not None:
            self.on_empty()

    def remove(self, item: Connection) -> None:
        if item not in self:
            raise KeyError(item)
        self.discard(item)


class ServerState:
    """What every connection of a worker shares."""

    def __init__(
        self,
        config: Config,
        app: ASGIApp,
        loop: asyncio.AbstractEventLoop,
        slot: WorkerSlot | None = None,
    ) -> None:
        self.config = config
        self.app = app
        self.loop = loop
        self.root_path = config.server.root_path
        #: ``[proxy] trusted``, or None when nobody is trusted (the default).
        self.trusted_peers = TrustedPeers(config.proxy.trusted) or None
        #: ``[request_id]``: the worker's ID source, or None when disabled (nothing runs).
        self.request_ids: RequestIds | None = None
        if config.request_id.enabled:
            self.request_ids = RequestIds(config.request_id.header)
            note_default_field(self.request_ids.name)
        self.connections: set[Connection] = set()
        # [limits]: daemon-wide places shared by every worker (worker/shared.py), each
        # None when its limit is 0; ``slot`` is the supervisor's seat for this worker,
        # else (a worker on its own) a local table.
        limits = config.limits
        self.connection_limit: SharedLimit | None = None
        self.request_limit: SharedLimit | None = None
        if limits.max_connections or limits.max_concurrent_requests:
            self.connection_limit, self.request_limit = (slot or WorkerSlot.local()).limits(
                limits.max_connections, limits.max_concurrent_requests
            )
        if self.connection_limit is not None:
            self.connections = CountedConnections(self.connection_limit)
        self.tasks: set[asyncio.Task[None]] = set()
        self.draining = False
        # While draining, how long a kept-alive idle connection waits for one more request.
        self.drain_grace = 0.0
        self.lifespan_state: dict[str, Any] = {}
        self.metrics = Collector()
        self.special_routes: dict[str, ASGIApp] = {}
        self.hooks = ProtocolHooks()
        self._date_second = 0
        self._date = b""
        self._defaults = b""
        self._corked: list[Flushable] = []
        self._launches: list[Startable] = []
        self._round_scheduled = False

    def defer(self, conn: Startable) -> None:
        """Have ``conn.start_app()`` called once the loop is done with this round of events.

        Apps start after the loop has handled every read of the round (then their
        responses go out, see :meth:`cork`), in one callback: not one Task and one
        loop callback per request, and each phase runs for many requests in a row.
        """
        self._launches.append(conn)
        if not self._round_scheduled:
            self._round_scheduled = True
            self.loop.call_soon(self._end_of_round)

    def cork(self, conn: Flushable) -> None:
        """Have ``conn.flush()`` called once the loop is done with this round of events.

        Responses written while handling one round go out together after it: the
        client's next requests then arrive together too, and the loop handles more
        events per round.
        """
        self._corked.append(conn)
        if not self._round_scheduled:
            self._round_scheduled = True
            self.loop.call_soon(self._end_of_round)

    def _end_of_round(self) -> None:
        try:
            # (apps started here may start more: pipelined requests, answered in turn)
            while self._launches:
                launches = self._launches
                self._launches = []
                for conn in launches:
                    try:
                        conn.start_app()
                    except Exception:
                        log.exception("starting an app failed")
            corked = self._corked
            if corked:
                self._corked = []
                for corked_conn in corked:
                    try:
                        corked_conn.flush()
                    except Exception:
                        log.exception("writing a response failed")
        finally:
            self._round_scheduled = False
            if self._launches or self._corked:  # (only after KeyboardInterrupt and the like)
                self._round_scheduled = True
                self.loop.call_soon(self._end_of_round)

    def date_header(self) -> bytes:
        """The ``Date`` value, formatted at most once a second (RFC 9110 §6.6.1)."""
        now = int(time.time())
        if now != self._date_second:
            self._new_date(now)
        return self._date

    def default_lines(self, lines: list[bytes] | None = None, id_line: bytes = b"") -> bytes:
        """The ``Date`` and ``Server`` header lines of an HTTP/1.1 response.

        With ``lines`` (the app's own header lines), only those the app did not send,
        and ``id_line`` (the request ID's header line) unless the app sent that header.
        """
        now = int(time.time())
        if now != self._date_second:
            self._new_date(now)
        if lines is None:
            return self._defaults
        names = {line.partition(b":")[0].lower() for line in lines}
        out = b"" if b"date" in names else b"date: " + self._date + b"\r\n"
        if b"server" not in names:
            out += b"server: pounce\r\n"
        if id_line and self.request_ids is not None and self.request_ids.name not in names:
            out += id_line
        return out

    def _new_date(self, now: int) -> None:
        self._date_second = now
        self._date = formatdate(now, usegmt=True).encode("ascii")
        self._defaults = b"date: " + self._date + b"\r\nserver: pounce\r\n"

    def snapshot(self) -> dict[str, Any]:
        """Metrics counters plus the gauges read now."""
        return self.metrics.snapshot(len(self.tasks), len(self.connections))
