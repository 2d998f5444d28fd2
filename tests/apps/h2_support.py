"""Shared by the TLS and HTTP/2 tests: a throw-away PKI and TLS-aware servers.

Certificates are made with ``cryptography`` in a temporary directory: a CA, a
server certificate for ``localhost``/``127.0.0.1`` and a client certificate
(for mTLS), all signed by the CA.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import Server, start_server, wait_for

APP = "apps.h2_app:app"


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


@pytest.fixture(scope="session")
def pki() -> Iterator[Pki]:
    directory = Path(tempfile.mkdtemp(prefix="pounce-pki-"))
    ca_key, ca_cert, ca_path = make_ca(directory)
    cert, key = issue(directory, "server", "localhost", ca_key, ca_cert)
    client_cert, client_key = issue(
        directory, "client", "pounce-client", ca_key, ca_cert, client=True
    )
    other = directory / "other.key"
    _write_key(other, ec.generate_private_key(ec.SECP256R1()))
    yield Pki(directory, ca_path, cert, key, client_cert, client_key, other)
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


def ensure_apt(binary: str, package: str) -> str:
    """The path of ``binary``, apt-installing ``package`` first when absent (as root)."""
    found = shutil.which(binary)
    if found:
        return found
    assert os.geteuid() == 0, f"{binary} is missing: apt-get install {package}"
    subprocess.run(
        ["apt-get", "install", "-y", package], check=True, capture_output=True, timeout=600
    )
    found = shutil.which(binary)
    assert found, f"{package} did not provide {binary}"
    return found
