"""Which peers are trusted to speak for the client, and what their headers say.

:class:`TrustedPeers` (``[proxy] trusted``) answers, once per connection, whether its
peer is a proxy whose forwarding headers (and request ID) are believed.
:func:`apply_forwarding` applies such a peer's ``Forwarded`` (RFC 7239) or
``X-Forwarded-For``/``-Proto``/``-Host``/``-Port`` headers to a request's scope: the
connections call it once per request, only when their peer is trusted.

Pure: no I/O; malformed values are ignored, nothing raises on any input.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

from pounce.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedPeers:
    """The ``[proxy] trusted`` list: IP addresses, CIDR networks, ``"unix"``, ``"*"``."""

    __slots__ = ("_networks", "any", "unix")

    def __init__(self, entries: Iterable[str]) -> None:
        self.any = False
        self.unix = False
        networks: list[Network] = []
        for entry in entries:
            if entry == "*":
                self.any = True
            elif entry == "unix":
                self.unix = True
            else:
                networks.append(ipaddress.ip_network(entry, strict=False))
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return self.any or self.unix or bool(self._networks)

    def trusts(self, client: tuple[str, int] | None) -> bool:
        """Whether a connection's peer is trusted; ``client`` None is a Unix-socket peer."""
        if client is None:
            return self.any or self.unix
        if self.any:
            return True
        return self.trusts_address(client[0])

    def trusts_address(self, host: str) -> bool:
        """Whether the IP address ``host`` (a hop named in a forwarding header) is trusted."""
        if self.any:
            return True
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)


# -- forwarding headers ---------------------------------------------------------------

#: At most this many hops of a forwarding header are read, counted from the right.
MAX_HOPS = 64
#: A hop (one X-Forwarded-For entry, one Forwarded element) longer than this is malformed.
MAX_HOP_LENGTH = 512

_FORWARDED = b"forwarded"
_XFF = b"x-forwarded-for"
_XFPROTO = b"x-forwarded-proto"
_XFHOST = b"x-forwarded-host"
_XFPORT = b"x-forwarded-port"
_NAMES = frozenset({_FORWARDED, _XFF, _XFPROTO, _XFHOST, _XFPORT})

#: The schemes a proxy may forward, as the ``http`` scope's scheme.
_SCHEMES = {"http": "http", "ws": "http", "https": "https", "wss": "https"}
_DEFAULT_PORTS = {"http": 80, "https": 443}

# RFC 7239 §4: a parameter is token "=" (token / quoted-string).  Values of for/host/
# proto never hold "," or ";", so an element with one inside quotes is malformed
# (this keeps the split on "," safe against a client's unbalanced quote).
_PAIR_RE = re.compile(r'[ \t]*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)=("[^",;]*"|[^",; \t]*)[ \t]*')
# RFC 7239 §6: obfnode / obfport.
_OBFUSCATED_RE = re.compile(r"_[A-Za-z0-9._-]+")
# RFC 9110 §7.2 Host: uri-host [ ":" port ]; a reg-name kept to its usual characters.
_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(?::([0-9]{1,5}))?")


class Forwarding(NamedTuple):
    """What a trusted peer's forwarding headers say; None: not said (or malformed)."""

    client: tuple[str, int] | None
    scheme: str | None
    host: str | None
    port: int | None


def _ip(text: str) -> str | None:
    """``text`` as a normalised IP address, or None when it is not one."""
    if not text or len(text) > 64:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _port(text: str) -> int | None:
    if not (0 < len(text) <= 5 and text.isascii() and text.isdigit()):
        return None
    port = int(text)
    return port if 0 < port <= 65535 else None


def _xff_hop(text: str) -> tuple[str, int] | None:
    """One X-Forwarded-For entry: ``IP``, ``IPv4:port``, ``[IPv6]`` or ``[IPv6]:port``."""
    text = text.strip(" \t")
    if text[:1] == "[":
        address, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and rest[:1] != ":"):
            return None
        port = _port(rest[1:]) if rest else 0
        if ":" not in address:
            return None  # only IPv6 goes in brackets
    elif text.count(":") == 1:
        address, _, rest = text.partition(":")
        port = _port(rest)
    else:
        address, port = text, 0
    ip = _ip(address)
    if ip is None or port is None:
        return None
    return ip, port


def _node(value: str) -> tuple[str, int, bool] | None:
    """An RFC 7239 §6 node (the value of ``for=``): (name, port, is an IP), or None.

    The name is a normalised IP address, ``unknown`` or an obfuscated ``_identifier``.
    """
    if value[:1] == "[":  # "[2001:db8::1]:4711"
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and rest[:1] != ":"):
            return None
        ip = _ip(name)
        if ip is None or ":" not in ip:
            return None
        port_text = rest[1:] if rest else None
    else:
        name, colon, port_text_ = value.partition(":")
        port_text = port_text_ if colon else None
        ip = _ip(name)
        if ip is None:
            if name.lower() == "unknown":
                name = "unknown"
            elif not _OBFUSCATED_RE.fullmatch(name):
                return None
    if port_text is None:
        port: int | None = 0
    elif _OBFUSCATED_RE.fullmatch(port_text):
        port = 0
    else:
        port = _port(port_text)
    if port is None:
        return None
    return (ip or name), port, ip is not None


def _element(text: str) -> dict[str, str] | None:
    """One ``Forwarded`` element: its parameters (names lower-cased), or None."""
    params: dict[str, str] = {}
    for pair in text.split(";"):
        m = _PAIR_RE.fullmatch(pair)
        if m is None:
            return None
        name = m.group(1).lower()
        if name in params:
            return None  # RFC 7239 §4: each parameter at most once per element
        value = m.group(2)
        params[name] = value[1:-1] if value[:1] == '"' else value
    return params


def _host(text: str) -> tuple[str, int | None] | None:
    """A validated ``host[:port]``: the host (IPv6 without brackets) and port, or None."""
    if len(text) > 260:
        return None
    m = _HOST_RE.fullmatch(text)
    if m is None:
        return None
    host, port_text = m.group(1), m.group(2)
    if host[:1] == "[":
        host = host[1:-1]
        ip = _ip(host)
        if ip is None or ":" not in ip:
            return None
    if port_text is None:
        return host, None
    port = _port(port_text)
    return None if port is None else (host, port)


def _scheme(text: str) -> str | None:
    return _SCHEMES.get(text.strip(" \t").lower())


def _hops(value: str) -> list[str]:
    """The right-most :data:`MAX_HOPS` entries of a comma-separated list (the left-most
    part holds the rest, commas and all, and never parses)."""
    return value.rsplit(",", MAX_HOPS)


def _aligned(value: str | None, count: int, index: int | None) -> str | None:
    """The entry of list ``value`` that goes with hop ``index`` of ``count`` hops, else
    its right-most entry (lists of other lengths cannot be lined up)."""
    if value is None:
        return None
    entries = _hops(value)
    if index is not None and len(entries) == count:
        return entries[index].strip(" \t")
    return entries[-1].strip(" \t")


def walk(
    hops: list[str], parse: Callable[[str], tuple[str, int, bool] | None], peers: TrustedPeers
) -> tuple[int | None, tuple[str, int] | None]:
    """Choose the client among ``hops`` (left to right, the connection's peer after them).

    From the right, skip the hops ``peers`` trusts; the first one it does not trust
    (an unknown or obfuscated node never is) is the client; if all are trusted, the
    left-most.  A malformed hop stops the walk: the client is then the last hop read,
    or none (the peer stays the client) when the right-most is malformed.  Returns the
    chosen hop's index and its (address, port).
    """
    chosen: tuple[int | None, tuple[str, int] | None] = (None, None)
    for index in range(len(hops) - 1, -1, -1):
        text = hops[index]
        node = parse(text) if len(text) <= MAX_HOP_LENGTH else None
        if node is None:
            break
        name, port, is_ip = node
        chosen = index, (name, port)
        if not is_ip or not peers.trusts_address(name):
            break
    return chosen


def _xff_node(text: str) -> tuple[str, int, bool] | None:
    hop = _xff_hop(text)
    return None if hop is None else (hop[0], hop[1], True)


def _forwarded(value: str, peers: TrustedPeers) -> Forwarding:
    """RFC 7239 ``Forwarded``: the client, proto and host of the element chosen."""
    elements = _hops(value)
    read: list[tuple[dict[str, str], tuple[str, int, bool]]] = []  # right to left

    def parse(text: str) -> tuple[str, int, bool] | None:
        params = _element(text)
        if params is None:
            return None
        node = params.get("for")
        # An element that does not name its client (no for=) is an unknown node.
        found = ("", 0, False) if node is None else _node(node)
        if found is not None:
            read.append((params, found))
        return found

    index, client = walk(elements, parse, peers)
    if index is None:
        return Forwarding(None, None, None, None)
    params = read[-1][0]
    if client is not None and client[0] == "":
        # No for=: the client is the last hop read before it (the peer if none).
        client = (read[-2][1][0], read[-2][1][1]) if len(read) > 1 else None
    proto = params.get("proto")
    host = params.get("host")
    return Forwarding(
        client,
        _scheme(proto) if proto is not None else None,
        host if host is not None and _host(host) is not None else None,
        None,
    )


def _x_forwarded(values: dict[bytes, str], peers: TrustedPeers) -> Forwarding:
    """``X-Forwarded-For``/``-Proto``/``-Host``/``-Port``, lined up by hop when they can be."""
    xff = values.get(_XFF)
    index: int | None = None
    client: tuple[str, int] | None = None
    count = 0
    if xff is not None:
        hops = _hops(xff)
        count = len(hops)
        index, client = walk(hops, _xff_node, peers)
    proto = _aligned(values.get(_XFPROTO), count, index)
    host = _aligned(values.get(_XFHOST), count, index)
    port = _aligned(values.get(_XFPORT), count, index)
    return Forwarding(
        client,
        _scheme(proto) if proto is not None else None,
        host if host is not None and _host(host) is not None else None,
        _port(port) if port is not None else None,
    )


def forwarding(headers: Iterable[tuple[bytes, bytes]], peers: TrustedPeers) -> Forwarding | None:
    """What the forwarding headers of a trusted peer's request say; None without any.

    ``Forwarded`` (RFC 7239) wins: when it is there, the ``X-Forwarded-*`` headers are
    not read.  Repeated header lines are one comma-separated list.  Malformed values
    are ignored; nothing here raises on any input.
    """
    values: dict[bytes, str] | None = None
    for name, value in headers:
        if name in _NAMES:
            if values is None:
                values = {}
            text = value.decode("latin-1")
            values[name] = values[name] + "," + text if name in values else text
    if values is None:
        return None
    forwarded = values.get(_FORWARDED)
    if forwarded is not None:
        return _forwarded(forwarded, peers)
    return _x_forwarded(values, peers)


def apply_forwarding(scope: Scope, peers: TrustedPeers) -> None:
    """Apply a trusted peer's forwarding headers to an ``http`` scope, in place.

    ``client`` becomes the chosen hop's (address, port or 0); ``scheme`` the forwarded
    proto (``http``/``https``; a WebSocket scope derived from it gets ``ws``/``wss``);
    a forwarded host replaces the ``host`` header (a new header list: the request's is
    not changed) and ``server`` becomes (that host, the host's own port, else
    X-Forwarded-Port, else the scheme's default port); X-Forwarded-Port alone sets the
    port of a TCP ``server``.  The forwarding headers themselves stay in ``headers``.
    """
    found = forwarding(scope["headers"], peers)
    if found is None:
        return
    client, scheme, host, port = found
    if client is not None:
        scope["client"] = client
    if scheme is not None:
        scope["scheme"] = scheme
    if host is not None:
        name, host_port = _host(host) or (host, None)
        encoded = host.encode("ascii")
        headers: list[tuple[bytes, bytes]] = []
        for header in scope["headers"]:
            if header[0] != b"host":
                headers.append(header)
            elif encoded:  # the first host header's place; any other is dropped
                headers.append((b"host", encoded))
                encoded = b""
        if encoded:
            headers.insert(0, (b"host", encoded))
        scope["headers"] = headers
        scope["server"] = (name, host_port or port or _DEFAULT_PORTS.get(scope["scheme"], 80))
    elif port is not None:
        server = scope.get("server")
        if server is not None and server[1] is not None:
            scope["server"] = (server[0], port)
