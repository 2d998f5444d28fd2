"""A corpus of valid and malformed HTTP/1.1 requests shared by the parser tests."""

from __future__ import annotations

BAD = {
    "cl-and-te": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "differing-cl": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    "cl-list": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n",
    "cl-sign": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n",
    "te-gzip": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "te-chunked-gzip": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "te-identity": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
    "te-double": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    "te-http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "ctl-in-value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
    "ctl-in-target": b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n",
    "nul-in-target": b"GET /a\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare-lf": b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n",
    "bare-cr": b"GET / HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n",
    "bad-method": b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "extra-space": b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "bad-host": b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "bad-host-ipv6": b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
    "bad-version": b"GET / HTTX/1.1\r\nHost: x\r\n\r\n",
    "bad-target": b"GET foo HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-header-name": b"GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n",
    "no-colon": b"GET / HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n",
    # RFC 9112 §3.2: the request-target is ASCII (h11 and every peer refuse the rest)
    "non-ascii-target": b"GET /\xc3\xa9?q=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    "non-ascii-query": b"GET /?q=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    "non-ascii-absolute": b"GET http://b/\xe9 HTTP/1.1\r\nHost: x\r\n\r\n",
    # absolute-form (RFC 9112 §3.2.2, RFC 9110 §4.2)
    "absolute-empty-authority": b"GET http:///x HTTP/1.1\r\nHost: x\r\n\r\n",
    "absolute-userinfo": b"GET http://u@b/x HTTP/1.1\r\nHost: x\r\n\r\n",
    "absolute-bad-authority": b"GET http://a b/x HTTP/1.1\r\nHost: x\r\n\r\n",
    "absolute-bad-scheme": b"GET 1ttp://b/x HTTP/1.1\r\nHost: x\r\n\r\n",
    # Connection = #token, Upgrade = #protocol: compared as bytes, anything else refused
    "upgrade-non-ascii": (
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\xff\r\nConnection: Upgrade\r\n\r\n"
    ),
    "connection-non-ascii": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\xc3\xa9\r\n\r\n",
    "connection-two-words": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep alive\r\n\r\n",
    "upgrade-bad-protocol": b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c/\r\n\r\n",
}
BAD_CHUNKS = {
    "non-hex": b"zz\r\n",
    "negative": b"-1\r\n",
    "empty": b"\r\n",
    "huge": b"ffffffffffffffffffff\r\n",
    "0x-prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "no-crlf-after-data": b"5\r\nhelloX\r\n0\r\n\r\n",
    "2^64": b"10000000000000000\r\nhello\r\n0\r\n\r\n",
    # trailers: a header section's rules (h11 alone ends them at a bare LF, folds lines)
    "trailers-ended-by-bare-lf": b"0\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "trailer-obs-fold": b"0\r\nX-T: 1\r\n folded\r\n\r\n",
    "trailer-content-length": b"0\r\nContent-Length: 5\r\n\r\n",
    "trailer-transfer-encoding": b"0\r\nTransfer-Encoding: gzip\r\n\r\n",
    # chunk extensions (RFC 9112 §7.1.1): ";" token [ "=" ( token / quoted-string ) ]
    "ext-space-in-value": b"5;a=b c\r\nhello\r\n0\r\n\r\n",
    "ext-no-name": b"5;=b\r\nhello\r\n0\r\n\r\n",
    "ext-space-before-semicolon": b"5 ;a\r\nhello\r\n0\r\n\r\n",
    "ext-no-value": b"5;a=\r\nhello\r\n0\r\n\r\n",
    "ext-bare-cr": b"5;a\rb\r\nhello\r\n0\r\n\r\n",
    "ext-bare-lf": b"5;a\nb\r\nhello\r\n0\r\n\r\n",
    "ext-ctl": b"5;a=\x01\r\nhello\r\n0\r\n\r\n",
    "ext-del-in-quotes": b'5;a="\x7f"\r\nhello\r\n0\r\n\r\n',
    "ext-non-ascii-token": b"5;a=\xff\r\nhello\r\n0\r\n\r\n",
    "ext-unclosed-quote": b'5;a="b\r\nhello\r\n0\r\n\r\n',
    "ext-on-last-chunk": b"5\r\nhello\r\n0;a b\r\n\r\n",
    # bounded: 4 KiB a line, 64 KiB of extensions a body
    "ext-line-too-long": b"5;a=" + b"b" * 4093 + b"\r\nhello\r\n0\r\n\r\n",
    "ext-line-too-long-unfinished": b"5;a=" + b"b" * 5000,
    "ext-total-too-large": (b"1;a=" + b"b" * 4000 + b"\r\nx\r\n") * 17 + b"0\r\n\r\n",
}

_CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

GOOD_REQUESTS: list[bytes] = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /a?b=c HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://x/y?z HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Tab: a\tb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-High: caf\xc3\xa9\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    _CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n\r\n",
    _CHUNKED_HEAD + b"5;a=b\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    # Transfer-Encoding reaches the app as sent (h11 lower-cases it: not handed on)
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    # chunk extensions: BWS, tokens, quoted-strings with quoted-pairs and obs-text
    _CHUNKED_HEAD + b'5; a = "b \\" c\xe9" ;d;e=f\t\r\nhello\r\n0;last\r\n\r\n',
    _CHUNKED_HEAD + b"5 \r\nhello\r\n0\r\n\r\n",
    _CHUNKED_HEAD + b"5;a=" + b"b" * 4092 + b"\r\nhello\r\n0\r\n\r\n",  # a 4096-byte line
    # absolute-form: the authority is the host, the target origin-form
    b"GET http://b/x?y HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET https://b:8443?y HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://[::1]:80 HTTP/1.0\r\n\r\n",
    # list syntax: optional whitespace, empty elements, any case
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: , Keep-Alive ,\tTE,\r\nTE: trailers\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: foo/1, bar\r\nConnection: upgrade\r\n\r\n",
]

BAD_REQUESTS: list[bytes] = list(BAD.values()) + [_CHUNKED_HEAD + c for c in BAD_CHUNKS.values()]
