"""The idle-connections helper: holds N keep-alive connections open, doing nothing.

Run as its own process (``python -m pounce_bench.idle HOST PORT N PATH``) so that
its sockets are not the benchmark's.  It opens N connections in batches, sends one
GET on each and reads the answer (so every connection is accepted and is now an idle
keep-alive connection, not a half-open one), prints ``ready OPENED FAILED`` and waits.
On a line (or EOF) on stdin it prints ``open N``, the connections the server has not
closed meanwhile, closes them all and exits.
"""

from __future__ import annotations

import resource
import socket
import sys

BATCH = 100


def _read_response(sock: socket.socket) -> bool:
    """Read one response with a Content-Length body; False when the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return True


def open_idle(host: str, port: int, count: int, path: str) -> tuple[list[socket.socket], int]:
    """Open ``count`` connections, one request each; the live sockets and the failures."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    live: list[socket.socket] = []
    failed = 0
    for start in range(0, count, BATCH):
        batch: list[socket.socket] = []
        for _ in range(min(BATCH, count - start)):
            try:
                sock = socket.create_connection((host, port), timeout=10)
                sock.sendall(request)
                batch.append(sock)
            except OSError:
                failed += 1
        for sock in batch:
            try:
                ok = _read_response(sock)
            except (OSError, ValueError):
                ok = False
            if ok:
                live.append(sock)
            else:
                failed += 1
                sock.close()
    return live, failed


def still_open(sock: socket.socket) -> bool:
    """True unless the peer has closed or reset the connection."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: list[str]) -> int:
    host, port, count, path = argv[0], int(argv[1]), int(argv[2]), argv[3]
    raise_fd_limit(count + 64)
    live, failed = open_idle(host, port, count, path)
    print(f"ready {len(live)} {failed}", flush=True)
    sys.stdin.readline()
    print(f"open {sum(still_open(s) for s in live)}", flush=True)
    for sock in live:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
