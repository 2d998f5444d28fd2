"""Shared by the TLS and HTTP/2 tests: a throw-away PKI, TLS-aware servers and
a raw HTTP/2 client (:class:`Peer`).

Certificates are made with ``cryptography`` in a temporary directory: a CA, a
server certificate for ``localhost``/``127.0.0.1`` and a client certificate
(for mTLS), all signed by the CA.
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hpack import Encoder
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, SettingsFrame

from helpers.server import Server, start_server, wait_for

APP = "apps.h2_app:app"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass
class Pki:
    dir: Path
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    other_key: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {"POUNCE_TLS_CERTFILE": str(self.cert), "POUNCE_TLS_KEYFILE": str(self.key), **extra}

    def client_context(
        self, *, alpn: list[str] | None = None, client_cert: bool = False
    ) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if alpn:
            ctx.set_alpn_protocols(alpn)
        if client_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def issue(
    directory: Path,
    stem: str,
    cn: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    client: bool = False,
) -> tuple[Path, Path]:
    """A certificate for ``cn`` signed by the CA: (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if not client:
        san = [x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


def make_ca(
    directory: Path, cn: str = "Pounce Test CA"
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{cn.replace(' ', '_')}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


@contextlib.contextmanager
def make_pki() -> Iterator[Pki]:
    """A CA, a server certificate and a client certificate in a temp dir (the ``pki``
    fixture in conftest)."""
    directory = Path(tempfile.mkdtemp(prefix="pounce-pki-"))
    ca_key, ca_cert, ca_path = make_ca(directory)
    cert, key = issue(directory, "server", "localhost", ca_key, ca_cert)
    client_cert, client_key = issue(
        directory, "client", "pounce-client", ca_key, ca_cert, client=True
    )
    other = directory / "other.key"
    _write_key(other, ec.generate_private_key(ec.SECP256R1()))
    try:
        yield Pki(directory, ca_path, cert, key, client_cert, client_key, other)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def tls_ready(server: Server, pki: Pki, timeout: float = 15.0) -> None:
    """Wait until a TLS handshake and an HTTP/1.1 request succeed."""

    def answered() -> bool:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited {server.proc.returncode}:\n{server.output}")
        try:
            with socket.create_connection((server.host, server.port), timeout=2) as raw:
                ctx = pki.client_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                with ctx.wrap_socket(raw) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    return s.recv(16).startswith(b"HTTP/1.1")
        except OSError:
            return False

    if not wait_for(answered, timeout, 0.05):
        raise RuntimeError(f"TLS server not ready in {timeout}s:\n{server.output}")


def start_tls(pki: Pki, *args: str, env: dict[str, str] | None = None) -> Server:
    server = start_server(APP, *args, env=pki.env(**(env or {})), ready=False)
    tls_ready(server, pki)
    return server


class Peer:
    """A raw HTTP/2 client: writes frames, reads frames until a bounded deadline."""

    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.buffer = b""
        self.encoder = Encoder()
        self.closed = False

    def send(self, *frames: Frame | bytes) -> None:
        for frame in frames:
            self.sock.sendall(frame if isinstance(frame, bytes) else frame.serialize())

    def start(self) -> None:
        self.send(PREFACE, SettingsFrame(0))

    def headers(
        self,
        stream_id: int,
        path: str = "/echo",
        *,
        method: str = "POST",
        end: bool = False,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> HeadersFrame:
        pseudo = [(":method", method), (":scheme", "http"), (":path", path), (":authority", "x")]
        block = self.encoder.encode([*pseudo, *extra])
        flags = ["END_HEADERS", "END_STREAM"] if end else ["END_HEADERS"]
        return HeadersFrame(stream_id, block, flags=flags)

    def frames(self, timeout: float = 10.0) -> Iterator[Frame]:
        deadline = time.monotonic() + timeout
        while True:
            while len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                self.buffer = self.buffer[9 + length :]
                yield frame
            if self.closed or time.monotonic() > deadline:
                return
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                self.closed = True
                continue
            if not chunk:
                self.closed = True
            self.buffer += chunk

    def wait_for(self, kind: type[Frame], timeout: float = 10.0, **attrs: object) -> Frame:
        seen = []
        for frame in self.frames(timeout):
            seen.append(frame)
            if isinstance(frame, kind) and all(getattr(frame, k) == v for k, v in attrs.items()):
                return frame
        raise AssertionError(f"no {kind.__name__} {attrs} in {seen}")

    def goaway(self) -> GoAwayFrame:
        frame = self.wait_for(GoAwayFrame)
        assert isinstance(frame, GoAwayFrame)
        return frame

    def close(self) -> None:
        self.sock.close()
