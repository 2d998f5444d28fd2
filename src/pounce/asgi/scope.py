"""The ASGI scopes, built in one place for HTTP/1.1, HTTP/2 and WebSocket.

A connection builds its :func:`connection_template` once (the keys every request of
the connection shares); each request's ``http`` scope is :func:`http_scope` of that
template and the request line's parts, whatever the protocol: HTTP/2 first turns its
pseudo-headers into the same parts (:func:`h2_request`).  A WebSocket scope is
derived from the handshake request's ``http`` scope (:func:`websocket_scope`).  So a
request-wide feature (proxy headers, request IDs, limits) hooks in here once.

Pure functions: no I/O, no clocks; tested with values alone.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from pounce.types import Scope

Headers = list[tuple[bytes, bytes]]

# Methods as str, without a decode per request.
_METHODS: dict[bytes, str] = {
    m: m.decode() for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS")
}


def connection_template(
    scheme: str,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    root_path: str,
) -> dict[str, Any]:
    """The keys of an ``http`` scope that one connection's requests share."""
    return {
        "type": "http",
        "scheme": scheme,
        "client": client,
        "server": server,
        "root_path": root_path,
    }


def http_scope(
    template: dict[str, Any],
    http_version: str,
    method: bytes,
    target: bytes,
    headers: Headers,
    lifespan_state: dict[str, Any],
    extensions: dict[str, Any],
) -> Scope:
    """The ASGI ``http`` scope (ASGI 2.3 §"HTTP connection scope") of one request.

    ``target`` is the request-target (an absolute-form one is cut to its path, RFC
    9112 §3.2.2; a fragment is dropped); the path gets ``template["root_path"]`` in
    front.  ``extensions`` is used as given (not copied).
    """
    if target[0] != 47 and b"://" in target:  # not "/...", maybe absolute-form
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        target = rest[slash:] if slash >= 0 else b"/"
    if b"?" in target or b"#" in target:
        raw_path, _, query = target.partition(b"?")
        raw_path = raw_path.partition(b"#")[0]
    else:
        raw_path = target
        query = b""
    if b"%" in raw_path:
        path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
    else:
        path = raw_path.decode("utf-8", "replace")
    root_path = template["root_path"]
    if root_path:
        path = root_path + path
        raw_path = root_path.encode() + raw_path
    scope = template.copy()
    scope["asgi"] = {"version": "3.0", "spec_version": "2.3"}
    scope["http_version"] = http_version
    scope["method"] = _METHODS.get(method) or method.decode("ascii", "replace")
    scope["path"] = path
    scope["raw_path"] = raw_path
    scope["query_string"] = query
    scope["headers"] = headers
    scope["state"] = lifespan_state.copy()
    scope["extensions"] = extensions
    return scope


def h2_request(headers: Headers) -> tuple[bytes, bytes, Headers] | None:
    """An HTTP/2 header block as the request line's parts: method, target, headers.

    The pseudo-headers are taken out; ``:authority`` becomes ``host`` unless a
    ``host`` header is there (RFC 9113 §8.3.1).  None without ``:method`` or ``:path``.
    """
    pseudo: dict[bytes, bytes] = {}
    plain: Headers = []
    for name, value in headers:
        if name[:1] == b":":
            pseudo[name] = value
        else:
            plain.append((name, value))
    method = pseudo.get(b":method")
    target = pseudo.get(b":path", b"")
    if method is None or not target:
        return None
    authority = pseudo.get(b":authority")
    if authority is not None and not any(n == b"host" for n, _ in plain):
        plain.insert(0, (b"host", authority))
    return method, target, plain


def websocket_scope(http_scope: Scope, subprotocols: list[str]) -> Scope:
    """The ASGI ``websocket`` scope (spec 2.4) for a handshake request's ``http`` scope.

    Its scheme is ``wss`` where the ``http`` scope's is ``https`` (TLS, or a trusted
    proxy's forwarded proto), else ``ws``.
    """
    extensions: dict[str, Any] = {"websocket.http.response": {}}
    http_extensions = http_scope.get("extensions", {})
    tls = http_extensions.get("tls")
    if tls is not None:
        extensions["tls"] = tls
    request_id = http_extensions.get("request_id")
    if request_id is not None:
        extensions["request_id"] = request_id  # the handshake's ID is the WebSocket's
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": http_scope["http_version"],
        "scheme": "wss" if http_scope["scheme"] == "https" else "ws",
        "path": http_scope["path"],
        "raw_path": http_scope["raw_path"],
        "query_string": http_scope["query_string"],
        "root_path": http_scope["root_path"],
        "headers": http_scope["headers"],
        "client": http_scope["client"],
        "server": http_scope["server"],
        "subprotocols": list(subprotocols),
        "state": http_scope["state"],
        "extensions": extensions,
    }
