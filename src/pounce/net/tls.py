"""TLS server contexts, built from ``[tls]`` (RFC 8446, RFC 9113 §9.2).

A context is built in each worker when it starts, from the files on disk at
that moment: a reload (new generation) therefore serves replaced certificates.
:func:`check_tls` is run by ``pounce check`` and ``pounce serve`` so that a
missing, unreadable or mismatched certificate/key is reported up front.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from pounce.config import Config, ListenConfig, TlsClientAuth, TlsVersion
from pounce.errors import ConfigError

#: Cipher suites for TLS 1.2: forward-secret AEAD only (TLS 1.3 suites are all strong).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS:!SHA1"


def listener_uses_tls(config: Config, listen: ListenConfig) -> bool:
    """Whether ``listen`` serves TLS: its own ``tls`` key, else on when a cert is set
    and the listener is not a Unix socket."""
    if listen.tls is not None:
        return listen.tls
    return config.tls.certfile is not None and listen.kind != "unix"


def alpn_protocols(config: Config, *, h2_available: bool = True) -> list[str]:
    """The ALPN protocols offered, in order; ``h2`` only when HTTP/2 is on."""
    names = [n.strip() for n in config.tls.alpn.split(",") if n.strip()]
    if not (config.http2.enabled and h2_available):
        names = [n for n in names if n != "h2"]
    return names


def build_context(config: Config, *, h2_available: bool = True) -> ssl.SSLContext:
    """A server context for ``config.tls``; raises :class:`ConfigError` on bad files."""
    tls = config.tls
    if tls.certfile is None:
        raise ConfigError(["tls.certfile: required by a listener with tls = true"])
    ctx = _new_context(config)
    _check_files(("tls.certfile", tls.certfile), ("tls.keyfile", tls.keyfile))
    try:
        ctx.load_cert_chain(tls.certfile, tls.keyfile, password=tls.password)
    except ssl.SSLError as exc:  # (an OSError too: first)
        raise ConfigError([_describe_ssl_error(tls.certfile, tls.keyfile, exc)]) from None
    except OSError as exc:
        raise ConfigError([f"tls.certfile ({tls.certfile}): {exc.strerror or exc}"]) from None
    _setup_client_auth(ctx, config)
    protocols = alpn_protocols(config, h2_available=h2_available)
    if protocols:
        ctx.set_alpn_protocols(protocols)
    return ctx


def _new_context(config: Config) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = (
        ssl.TLSVersion.TLSv1_3
        if config.tls.minimum_version is TlsVersion.TLS1_3
        else ssl.TLSVersion.TLSv1_2
    )
    ctx.set_ciphers(TLS12_CIPHERS)
    # No renegotiation, no compression (CRIME), a fresh ECDH key per handshake.
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_SINGLE_ECDH_USE | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    return ctx


def _setup_client_auth(ctx: ssl.SSLContext, config: Config) -> None:
    tls = config.tls
    if tls.client_auth is TlsClientAuth.NONE:
        return
    ctx.verify_mode = (
        ssl.CERT_REQUIRED if tls.client_auth is TlsClientAuth.REQUIRED else ssl.CERT_OPTIONAL
    )
    if tls.ca_certs is not None:
        try:
            ctx.load_verify_locations(cafile=tls.ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"tls.ca_certs: cannot load {tls.ca_certs}: {exc}"]) from None
    if tls.use_system_store:
        load_system_store(ctx)
    if tls.ca_certs is None and not tls.use_system_store:
        raise ConfigError(
            [f"tls.client_auth: {tls.client_auth} needs tls.ca_certs or tls.use_system_store"]
        )


# Where Linux distributions keep the system CA bundle when OpenSSL's compiled-in
# default is missing (the list truststore and certifi-system-store search).
_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # Fedora, RHEL
    "/etc/pki/tls/cert.pem",  # older Fedora, RHEL, CentOS
    "/etc/ssl/cert.pem",  # Alpine, Arch, BSD
    "/etc/ssl/ca-bundle.pem",  # SUSE
)


def load_system_store(ctx: ssl.SSLContext) -> None:
    """Trust the system's CA store for client certificates (``tls.use_system_store``).

    The store is the one ``truststore`` uses on Linux: OpenSSL's default paths
    (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set), else the usual bundle file of
    the distribution; on Windows the stdlib reads the system certificate stores.
    It is loaded once per worker generation: a ``truststore.SSLContext`` would
    re-read the bundle on every handshake (~10 ms each), and its macOS/Windows
    verifiers check server-certificate policy, not client certificates.
    """
    paths = ssl.get_default_verify_paths()
    if paths.cafile or (paths.capath and _has_hashed_certs(paths.capath)):
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        return
    for bundle in _CA_BUNDLES:
        if os.path.isfile(bundle):
            ctx.load_verify_locations(cafile=bundle)
            return
    ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Windows stores; elsewhere maybe nothing
    if not ctx.get_ca_certs():
        raise ConfigError(
            [
                "tls.use_system_store: no system CA store found "
                "(install ca-certificates, or point SSL_CERT_FILE at a bundle)"
            ]
        )


def _has_hashed_certs(capath: str) -> bool:
    """Whether an OpenSSL CA directory holds hashed certificate links (``abcd1234.0``)."""
    try:
        names = os.listdir(capath)
    except OSError:
        return False
    return any(len(n) == 10 and n[8] == "." and n[9].isdigit() for n in names)


def _check_files(*files: tuple[str, str | None]) -> None:
    errors = []
    for key, path in files:
        if path is None:
            continue
        if not os.path.isfile(path):
            errors.append(f"{key} ({path}): file not found")
        elif not os.access(path, os.R_OK):
            errors.append(f"{key} ({path}): not readable")
    if errors:
        raise ConfigError(errors)


def _describe_ssl_error(certfile: str, keyfile: str | None, exc: ssl.SSLError) -> str:
    reason = str(getattr(exc, "reason", "") or exc)
    if "KEY_VALUES_MISMATCH" in reason.upper():
        return f"tls.keyfile ({keyfile or certfile}): the key does not match the certificate"
    if "PEM" in reason.upper() or "NO_START_LINE" in reason.upper():
        return f"tls.certfile ({certfile}) / tls.keyfile: not a PEM certificate/key: {reason}"
    if "BAD_DECRYPT" in reason.upper() or "password" in reason.lower():
        return "tls.password: cannot decrypt tls.keyfile"
    return f"tls.certfile ({certfile}): {reason}"


def check_tls(config: Config) -> None:
    """Raise :class:`ConfigError` when a TLS listener cannot get a working context."""
    if not any(listener_uses_tls(config, entry) for entry in config.listen):
        if config.tls.keyfile is not None and config.tls.certfile is None:
            raise ConfigError(["tls.keyfile: set without tls.certfile"])
        return
    build_context(config)


def tls_extension(ssl_object: Any) -> dict[str, Any]:
    """The ASGI TLS extension (``scope["extensions"]["tls"]``) for one connection."""
    chain: list[str] = []
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        chain.append(ssl.DER_cert_to_PEM_cert(der))
    version = ssl_object.version()
    cipher = ssl_object.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": _subject_name(ssl_object.getpeercert()) if der else None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSION_CODES.get(version),
        "cipher_suite": None,
        "cipher_name": cipher[0] if cipher else None,
    }


_TLS_VERSION_CODES = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def _subject_name(cert: Any) -> str | None:
    """RFC 4514-ish subject, most specific RDN first."""
    if not cert:
        return None
    parts = []
    for rdn in reversed(cert.get("subject", ())):
        for key, value in rdn:
            short = {"commonName": "CN", "organizationName": "O", "countryName": "C"}.get(key, key)
            parts.append(f"{short}={value}")
    return ",".join(parts)
