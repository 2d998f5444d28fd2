"""Forwarding headers of trusted proxies (asgi/proxy.py): values in, values out.

``Forwarded`` (RFC 7239) and ``X-Forwarded-*`` are parsed and the client chosen by
walking the hops from the right, skipping the trusted ones; malformed values are
ignored and nothing raises.  The servers that apply it are in test_proxy_serve.py.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pounce.asgi.proxy import (
    MAX_HOPS,
    Forwarding,
    TrustedPeers,
    apply_forwarding,
    forwarding,
)
from pounce.asgi.scope import connection_template, http_scope, websocket_scope

PEERS = TrustedPeers(["10.0.0.0/8", "127.0.0.1", "2001:db8:ffff::/48"])
NOBODY_ELSE = TrustedPeers(["127.0.0.1"])
PEER = ("127.0.0.1", 5000)
SERVER = ("127.0.0.1", 8000)


def headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode("latin-1")) for name, value in pairs]


def found(*pairs: tuple[str, str], peers: TrustedPeers = PEERS) -> Forwarding | None:
    return forwarding(headers(*pairs), peers)


def scope_after(*pairs: tuple[str, str], peers: TrustedPeers = PEERS) -> dict[str, Any]:
    template = connection_template("http", PEER, SERVER, "")
    scope = http_scope(template, "1.1", b"GET", b"/", headers(*pairs), {}, {})
    apply_forwarding(scope, peers)
    return dict(scope)


# -- TrustedPeers -----------------------------------------------------------------------


def test_trusted_peers() -> None:
    assert not TrustedPeers([])
    assert PEERS.trusts(("10.1.2.3", 1)) and not PEERS.trusts(("11.0.0.1", 1))
    assert PEERS.trusts_address("::ffff:10.0.0.1")  # IPv4-mapped
    assert not PEERS.trusts(None) and TrustedPeers(["unix"]).trusts(None)
    assert TrustedPeers(["*"]).trusts(("203.0.113.9", 1)) and TrustedPeers(["*"]).trusts(None)
    assert not PEERS.trusts_address("not-an-ip")


# -- X-Forwarded-For: the walk ------------------------------------------------------------


def test_no_forwarding_headers() -> None:
    assert found(("host", "x"), ("user-agent", "y")) is None


def test_the_right_most_untrusted_hop_is_the_client() -> None:
    # A client's own (spoofed) entry left of the real one is never reached.
    got = found(("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2, 10.0.0.1"))
    assert got == Forwarding(("203.0.113.7", 0), None, None, None)


def test_when_every_hop_is_trusted_the_left_most() -> None:
    got = found(("x-forwarded-for", "10.0.0.3, 10.0.0.2"))
    assert got is not None and got.client == ("10.0.0.3", 0)


def test_only_the_peer_trusted_takes_the_right_most() -> None:
    got = found(("x-forwarded-for", "203.0.113.7, 10.0.0.2"), peers=NOBODY_ELSE)
    assert got is not None and got.client == ("10.0.0.2", 0)


def test_repeated_lines_are_one_list() -> None:
    got = found(("x-forwarded-for", "203.0.113.7"), ("x-forwarded-for", "10.0.0.2"))
    assert got is not None and got.client == ("203.0.113.7", 0)


def test_ipv6_and_ports_in_x_forwarded_for() -> None:
    assert found(("x-forwarded-for", "2001:DB8::1")) == Forwarding(
        ("2001:db8::1", 0), None, None, None
    )
    got = found(("x-forwarded-for", "[2001:db8::1]:4711, 192.0.2.1:80, 10.0.0.1"))
    assert got is not None and got.client == ("192.0.2.1", 80)
    got = found(("x-forwarded-for", "[2001:db8::1]:4711, 2001:db8:ffff::5"))
    assert got is not None and got.client == ("2001:db8::1", 4711)


def test_a_malformed_hop_stops_the_walk() -> None:
    # Right-most malformed: nothing is known, the peer stays the client.
    got = found(("x-forwarded-for", "203.0.113.7, garbage"))
    assert got is not None and got.client is None
    # Behind trusted hops: the last hop read.
    got = found(("x-forwarded-for", "garbage, 10.0.0.2, 10.0.0.1"))
    assert got is not None and got.client == ("10.0.0.2", 0)
    # Left of the client: never read.
    got = found(("x-forwarded-for", "garbage, 203.0.113.7"))
    assert got is not None and got.client == ("203.0.113.7", 0)
    for bad in ("1.2.3.4:99999", "[::1", "::1]:80", "1.2.3", "", " , ", "1.2.3.4:", "[1.2.3.4]"):
        got = found(("x-forwarded-for", bad))
        assert got is not None and got.client is None, bad


def test_at_most_max_hops_are_walked() -> None:
    chain = ", ".join(["10.0.0.9"] * (MAX_HOPS + 10))
    got = found(("x-forwarded-for", "203.0.113.7, " + chain))
    assert got is not None and got.client == ("10.0.0.9", 0)  # the walk stops, bounded
    # A client padding its own header cannot push the real hop out of reach.
    padded = ", ".join(["6.6.6.6"] * 1000) + ", 203.0.113.7, 10.0.0.1"
    got = found(("x-forwarded-for", padded))
    assert got is not None and got.client == ("203.0.113.7", 0)


# -- X-Forwarded-Proto / -Host / -Port ------------------------------------------------------


def test_proto_is_lined_up_with_the_chosen_hop() -> None:
    got = found(("x-forwarded-for", "203.0.113.7, 10.0.0.2"), ("x-forwarded-proto", "https, http"))
    assert got is not None and got.scheme == "https"
    # The second hop is the client when only the peer is trusted.
    got = found(
        ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
        ("x-forwarded-proto", "https, http"),
        peers=NOBODY_ELSE,
    )
    assert got is not None and got.scheme == "http"
    # Lists of other lengths: the right-most value.
    got = found(("x-forwarded-for", "203.0.113.7, 10.0.0.2"), ("x-forwarded-proto", "https"))
    assert got is not None and got.scheme == "https"


def test_proto_values() -> None:
    for value, scheme in [
        ("https", "https"),
        ("HTTPS", "https"),
        ("wss", "https"),
        ("ws", "http"),
        (" http ", "http"),
        ("ftp", None),
        ("", None),
        ("https;x", None),
    ]:
        got = found(("x-forwarded-proto", value))
        assert got is not None and got.scheme == scheme, value


def test_host_and_port_values() -> None:
    for value, host in [
        ("example.com", "example.com"),
        ("example.com:8443", "example.com:8443"),
        ("[2001:db8::1]:8443", "[2001:db8::1]:8443"),
        ("ex ample.com", None),
        ("example.com:0", None),
        ("example.com:99999", None),
        ("example.com/x", None),
        ("[zz]", None),
        ("a" * 300, None),
        ("h\u00e9", None),
    ]:
        got = found(("x-forwarded-host", value))
        assert got is not None and got.host == host, value
    for text, port in [("443", 443), ("1", 1), ("65535", 65535), ("0", None), ("65536", None)]:
        got = found(("x-forwarded-port", text))
        assert got is not None and got.port == port, text
    assert found(("x-forwarded-port", "+80")) == Forwarding(None, None, None, None)


# -- Forwarded (RFC 7239) -----------------------------------------------------------------


def test_forwarded_elements_and_quoted_ipv6() -> None:
    got = found(
        (
            "forwarded",
            'for="[2001:db8:cafe::17]:4711";proto=https;host=example.com, for=10.0.0.1',
        )
    )
    assert got == Forwarding(("2001:db8:cafe::17", 4711), "https", "example.com", None)


def test_forwarded_case_insensitive_names_and_quoted_values() -> None:
    got = found(("forwarded", 'For="192.0.2.60";PROTO="http";By=203.0.113.43;HOST="a.b:81"'))
    assert got == Forwarding(("192.0.2.60", 0), "http", "a.b:81", None)


def test_forwarded_proto_and_host_come_from_the_chosen_element() -> None:
    value = "for=192.0.2.60;proto=https;host=public.example, for=10.0.0.2;proto=http;host=lb"
    assert found(("forwarded", value)) == Forwarding(
        ("192.0.2.60", 0), "https", "public.example", None
    )
    assert found(("forwarded", value), peers=NOBODY_ELSE) == Forwarding(
        ("10.0.0.2", 0), "http", "lb", None
    )


def test_forwarded_obfuscated_and_unknown_nodes() -> None:
    # Never trusted, so the walk stops there; the client is the identifier itself.
    got = found(("forwarded", "for=_hidden, for=10.0.0.1"))
    assert got is not None and got.client == ("_hidden", 0)
    got = found(("forwarded", 'for="_x.y-z:_port";proto=https'))
    assert got is not None and got.client == ("_x.y-z", 0) and got.scheme == "https"
    got = found(("forwarded", "for=192.0.2.1, for=unknown, for=10.0.0.1"))
    assert got is not None and got.client == ("unknown", 0)
    got = found(("forwarded", 'for="UNKNOWN:80"'))
    assert got is not None and got.client == ("unknown", 80)


def test_forwarded_without_for_keeps_the_last_known_client() -> None:
    assert found(("forwarded", "proto=https;host=a.b")) == Forwarding(None, "https", "a.b", None)
    got = found(("forwarded", "proto=https, for=10.0.0.2"))
    assert got == Forwarding(("10.0.0.2", 0), "https", None, None)


def test_forwarded_wins_over_x_forwarded() -> None:
    got = found(
        ("x-forwarded-for", "198.51.100.1"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-port", "8443"),
        ("forwarded", "for=192.0.2.60"),
    )
    assert got == Forwarding(("192.0.2.60", 0), None, None, None)
    # Even a malformed Forwarded: the X-Forwarded-* headers are not read.
    got = found(("x-forwarded-for", "198.51.100.1"), ("forwarded", "garbage"))
    assert got == Forwarding(None, None, None, None)


def test_forwarded_malformed_elements() -> None:
    for bad in [
        "for=[2001:db8::1]x",
        "for=2001:db8::1",  # IPv6 must be bracketed
        'for="[2001:db8::1]:99999"',
        "for=1.2.3.4;for=5.6.7.8",  # a parameter twice
        "for=",
        "for",
        "=x",
        "for=1.2.3.4;",
        'for="1.2.3.4',
        'for="a;b"',
        "for=-bad",
        "",
    ]:
        got = found(("forwarded", bad))
        assert got == Forwarding(None, None, None, None), bad


def test_forwarded_a_clients_unbalanced_quote_does_not_swallow_the_proxys_element() -> None:
    # The client sent `Forwarded: for="abc` and the proxy appended its element.
    got = found(("forwarded", 'for="abc, for="[2001:db8::9]";proto=https'))
    assert got == Forwarding(("2001:db8::9", 0), "https", None, None)


# -- applied to a scope ------------------------------------------------------------------


def test_applied_to_the_scope() -> None:
    scope = scope_after(
        ("host", "internal:8000"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "example.com"),
        ("accept", "*/*"),
    )
    assert scope["client"] == ("203.0.113.7", 0)
    assert scope["scheme"] == "https"
    assert scope["server"] == ("example.com", 443)
    assert scope["headers"][0] == (b"host", b"example.com")
    assert (b"x-forwarded-for", b"203.0.113.7") in scope["headers"]  # kept for the app
    assert [name for name, _ in scope["headers"]].count(b"host") == 1


def test_applied_host_port_and_x_forwarded_port() -> None:
    scope = scope_after(("x-forwarded-host", "[2001:db8::1]:8443"))
    assert scope["server"] == ("2001:db8::1", 8443)
    assert scope["headers"] == [
        (b"host", b"[2001:db8::1]:8443"),
        *headers(("x-forwarded-host", "[2001:db8::1]:8443")),
    ]
    scope = scope_after(("x-forwarded-host", "a.b"), ("x-forwarded-port", "8080"))
    assert scope["server"] == ("a.b", 8080)
    scope = scope_after(("x-forwarded-host", "a.b:81"), ("x-forwarded-port", "8080"))
    assert scope["server"] == ("a.b", 81)  # the host's own port first
    scope = scope_after(("x-forwarded-port", "8080"))
    assert scope["server"] == ("127.0.0.1", 8080) and scope["client"] == PEER
    scope = scope_after(("x-forwarded-host", "a.b"))
    assert scope["server"] == ("a.b", 80)


def test_port_alone_leaves_a_unix_server_alone() -> None:
    template = connection_template("http", None, ("/run/p.sock", None), "")
    scope = http_scope(template, "1.1", b"GET", b"/", headers(("x-forwarded-port", "81")), {}, {})
    apply_forwarding(scope, TrustedPeers(["unix"]))
    assert scope["server"] == ("/run/p.sock", None)


def test_the_request_headers_list_is_not_changed() -> None:
    template = connection_template("http", PEER, SERVER, "")
    request_headers = headers(("host", "in"), ("x-forwarded-host", "out.example"))
    before = list(request_headers)
    scope = http_scope(template, "1.1", b"GET", b"/", request_headers, {}, {})
    apply_forwarding(scope, PEERS)
    assert request_headers == before and scope["headers"] is not request_headers
    assert dict(scope["headers"])[b"host"] == b"out.example"


def test_malformed_values_change_nothing() -> None:
    scope = scope_after(
        ("x-forwarded-for", "nonsense"),
        ("x-forwarded-proto", "gopher"),
        ("x-forwarded-host", "bad host"),
        ("x-forwarded-port", "http"),
    )
    assert (scope["client"], scope["scheme"], scope["server"]) == (PEER, "http", SERVER)


def test_the_websocket_scheme_follows_the_proxied_scheme() -> None:
    for proto, scheme in [("https", "wss"), ("wss", "wss"), ("http", "ws"), ("ws", "ws")]:
        http = scope_after(("x-forwarded-proto", proto))
        assert websocket_scope(http, [])["scheme"] == scheme, proto


# -- never an exception -------------------------------------------------------------------

_NAMES = st.sampled_from(
    ["forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port"]
)
_PIECES = st.sampled_from(
    [
        ",",
        ";",
        "=",
        '"',
        "[",
        "]",
        ":",
        " ",
        "for",
        "proto",
        "host",
        "_h",
        "unknown",
        "10.0.0.1",
        "2001:db8::1",
        "https",
        "wss",
        "80",
        "99999",
        "a.b",
        "\x00",
        "\xff",
    ]
)
_VALUES = st.one_of(st.lists(_PIECES, max_size=30).map("".join), st.text(max_size=60))


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=6))
def test_any_input_is_taken_without_an_exception(pairs: list[tuple[str, str]]) -> None:
    raw = [(name.encode(), value.encode("utf-8")) for name, value in pairs]
    template = connection_template("http", PEER, SERVER, "")
    scope = http_scope(template, "1.1", b"GET", b"/", raw, {}, {})
    apply_forwarding(scope, PEERS)
    client, server = scope["client"], scope["server"]
    assert isinstance(client, tuple) and isinstance(client[0], str)
    assert isinstance(client[1], int) and 0 <= client[1] <= 65535
    assert scope["scheme"] in ("http", "https")
    assert isinstance(server[0], str) and 0 < server[1] <= 65535
    hosts = [value for name, value in scope["headers"] if name == b"host"]
    assert len(hosts) <= 1 and all(value.isascii() for value in hosts)


_TRUSTED_HOPS = st.sampled_from(["10.0.0.1", "10.9.8.7", "127.0.0.1", "2001:db8:ffff::1"])
_OTHER_HOPS = st.sampled_from(["203.0.113.7", "198.51.100.1", "2001:db8::1", "11.0.0.1"])


@given(st.lists(st.tuples(st.booleans(), _TRUSTED_HOPS, _OTHER_HOPS), min_size=1, max_size=20))
def test_the_walk_picks_the_right_most_untrusted_hop(hops: list[tuple[bool, str, str]]) -> None:
    chain = [trusted if is_trusted else other for is_trusted, trusted, other in hops]
    untrusted = [i for i, (is_trusted, _, _) in enumerate(hops) if not is_trusted]
    expected = chain[untrusted[-1]] if untrusted else chain[0]
    for header in ("x-forwarded-for", "forwarded"):
        value = ", ".join(
            hop if header == "x-forwarded-for" else f'for="[{hop}]"' if ":" in hop else f"for={hop}"
            for hop in chain
        )
        got = found((header, value))
        assert got is not None and got.client == (expected, 0), (header, value)
