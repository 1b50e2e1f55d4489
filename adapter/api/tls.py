"""The serving TLS context: hardened, client certificates optional, reloaded live.

``ServingTLS.context`` is handed once to ``web.TCPSite(ssl_context=...)``. Its
``sni_callback`` runs on every ClientHello (with or without SNI) and switches
the handshake to the newest context, so a rotated serving certificate or CA
bundle applies to new handshakes while open connections keep the context
they negotiated with: nothing is dropped, nothing restarts.

Client certificates are requested but optional (``CERT_OPTIONAL``) and verified
by OpenSSL against the union of the client CA and the requestheader CA bundles:
a certificate from an unknown CA fails the handshake. Which bundle a verified
leaf belongs to is decided later, by the authenticators in ``adapter.auth``
(Python 3.11 exposes only the leaf, not the verified chain).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import logging
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapter.core.errors import StartupError
from adapter.core.periodic import every

if TYPE_CHECKING:
    from aiohttp import web

    from adapter.core.ports import Clock

log = logging.getLogger(__name__)

CERT_NAME = "apiserver.crt"
KEY_NAME = "apiserver.key"
SELF_SIGNED_DAYS = 365
# A stored self-signed certificate this close to expiry is replaced at start.
RENEW_BEFORE = datetime.timedelta(days=30)
RELOAD_INTERVAL_S = 10.0

# Mozilla "intermediate": ECDHE key exchange with AEAD ciphers only (TLS 1.2).
# TLS 1.3 suites are all AEAD and are left at OpenSSL's defaults.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


class TLSConfigError(StartupError):
    """The serving certificate, key or a CA bundle cannot be used."""


class ServingTLS:
    """Builds and live-reloads the server ``ssl.SSLContext``.

    Either ``cert_file`` and ``key_file`` (both, e.g. mounted by cert-manager)
    or neither: then a self-signed ECDSA P-256 certificate for ``hosts`` is
    generated, stored as ``apiserver.crt``/``apiserver.key`` under ``cert_dir``
    when given and reused from there while valid for ``hosts``.

    The constructor builds the first context and raises ``TLSConfigError`` when
    it cannot. Later failures (a half-written rotation) keep the current
    context, are logged and retried on the next ``reload_once()``.
    """

    def __init__(
        self,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        cert_dir: Path | None = None,
        hosts: Sequence[str] = ("localhost", "127.0.0.1"),
        *,
        clock: Clock = time.time,
        client_ca_pem: bytes | None = None,
        requestheader_ca_pem: bytes | None = None,
    ) -> None:
        if (cert_file is None) != (key_file is None):
            raise TLSConfigError("--tls-cert-file and --tls-private-key-file go together")
        self._clock = clock
        self._hosts = tuple(hosts)
        self._client_ca_pem = client_ca_pem
        self._requestheader_ca_pem = requestheader_ca_pem
        if cert_file is not None and key_file is not None:
            self._cert_file, self._key_file = cert_file, key_file
            self._self_signed = False
        else:
            self._cert_file, self._key_file = self._self_signed_files(cert_dir)
            self._self_signed = True
        self._fingerprint = self._files_fingerprint()
        self._current: ssl.SSLContext = self._build()
        # The context given to the listener: only its sni_callback matters
        # after the first reload, every handshake is moved to ``_current``.
        self._listener = self._current
        self._listener.sni_callback = self._on_client_hello
        self.generation = 1

    # -- public ------------------------------------------------------------------

    @property
    def context(self) -> ssl.SSLContext:
        """The context to pass to ``web.TCPSite(ssl_context=...)`` (stable)."""
        return self._listener

    @property
    def current(self) -> ssl.SSLContext:
        """The context new handshakes use now."""
        return self._current

    @property
    def cert_file(self) -> Path:
        """The serving certificate in use (the generated one in self-signed mode)."""
        return self._cert_file

    def set_client_cas(
        self, client_ca_pem: bytes | None, requestheader_ca_pem: bytes | None
    ) -> None:
        """Replace the CA bundles client certificates are verified against.

        Raises ``TLSConfigError`` (and keeps the previous context) when a bundle
        does not parse.
        """
        if (client_ca_pem, requestheader_ca_pem) == (
            self._client_ca_pem,
            self._requestheader_ca_pem,
        ):
            return
        previous = self._client_ca_pem, self._requestheader_ca_pem
        self._client_ca_pem, self._requestheader_ca_pem = client_ca_pem, requestheader_ca_pem
        try:
            self._swap(self._build())
        except TLSConfigError:
            self._client_ca_pem, self._requestheader_ca_pem = previous
            raise
        log.info("client CA bundles changed: new handshakes verify against the new bundles")

    def reload_once(self) -> bool:
        """Rebuild the context when the certificate or key changed on disk.

        Returns True when new handshakes now use a new context. Never raises for
        a bad or half-written pair: the current context stays, and the next call
        retries.
        """
        try:
            fingerprint = self._files_fingerprint()
        except OSError as e:
            log.warning("serving certificate unreadable, keeping the current one: %s", e)
            return False
        if fingerprint == self._fingerprint:
            return False
        try:
            context = self._build()
        except TLSConfigError as e:
            log.warning("serving certificate changed but cannot be loaded (will retry): %s", e)
            return False
        self._fingerprint = fingerprint
        self._swap(context)
        log.info("serving certificate reloaded from %s", self._cert_file)
        return True

    async def run_reloader(self, interval: float = RELOAD_INTERVAL_S) -> None:
        """Poll the files forever; a guarded loop that only stops when cancelled."""
        await every(
            interval, self.reload_once, what="serving certificate reload", immediately=False
        )

    def cleanup_ctx(
        self, interval: float = RELOAD_INTERVAL_S
    ) -> Callable[[web.Application], AsyncIterator[None]]:
        """For ``app.cleanup_ctx.append(...)``: runs the reloader for the app's lifetime."""

        async def reloader(_app: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(self.run_reloader(interval), name="serving-tls-reloader")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        return reloader

    # -- building ----------------------------------------------------------------

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_CIPHERS)
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
        context.options |= ssl.OP_NO_COMPRESSION
        context.set_alpn_protocols(["http/1.1"])
        try:
            context.load_cert_chain(self._cert_file, self._key_file)
        except (OSError, ssl.SSLError) as e:
            raise TLSConfigError(f"cannot load {self._cert_file} / {self._key_file}: {e}") from e
        bundles = [pem for pem in (self._client_ca_pem, self._requestheader_ca_pem) if pem]
        for pem in bundles:
            try:
                context.load_verify_locations(cadata=pem.decode("ascii"))
            except (ssl.SSLError, UnicodeDecodeError, ValueError) as e:
                raise TLSConfigError(f"cannot load a client CA bundle: {e}") from e
        # Request a certificate only when one can be verified: without a CA,
        # a client that sends one (kubectl with cert and token) would fail.
        context.verify_mode = ssl.CERT_OPTIONAL if bundles else ssl.CERT_NONE
        return context

    def _swap(self, context: ssl.SSLContext) -> None:
        self._current = context
        # OpenSSL copies the verify mode into each connection from the context
        # it was accepted with (the listener), not from the one switched to in
        # the callback: keep the listener's in step.
        self._listener.verify_mode = context.verify_mode
        self.generation += 1

    def _on_client_hello(
        self, ssl_object: ssl.SSLObject, _server_name: str | None, _context: ssl.SSLContext
    ) -> None:
        if ssl_object.context is not self._current:
            ssl_object.context = self._current

    def _files_fingerprint(self) -> bytes:
        digest = hashlib.sha256()
        for path in (self._cert_file, self._key_file):
            digest.update(path.read_bytes())
            digest.update(b"\0")
        return digest.digest()

    # -- self-signed ---------------------------------------------------------------

    def _self_signed_files(self, cert_dir: Path | None) -> tuple[Path, Path]:
        if cert_dir is None:
            # Private to this process; removed when the interpreter exits.
            self._tmp = tempfile.TemporaryDirectory(prefix="adapter-tls-")  # kept alive
            cert_dir = Path(self._tmp.name)
        cert_dir.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = cert_dir / CERT_NAME, cert_dir / KEY_NAME
        if self._reusable(cert_path, key_path):
            log.info("reusing the self-signed serving certificate in %s", cert_dir)
            return cert_path, key_path
        cert_pem, key_pem = generate_self_signed(self._hosts, self._now())
        _write_private(key_path, key_pem)
        _write_private(cert_path, cert_pem)
        log.warning(
            "serving with a generated self-signed certificate for %s (written to %s); "
            "give --tls-cert-file/--tls-private-key-file in production",
            ", ".join(self._hosts),
            cert_dir,
        )
        return cert_path, key_path

    def _reusable(self, cert_path: Path, key_path: Path) -> bool:
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError):
            return False
        now = self._now()
        if not (cert.not_valid_before_utc <= now < cert.not_valid_after_utc - RENEW_BEFORE):
            return False
        if cert.public_key() != key.public_key():
            return False
        return set(self._hosts) <= _san_names(cert)

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock(), tz=datetime.UTC)


def generate_self_signed(hosts: Sequence[str], now: datetime.datetime) -> tuple[bytes, bytes]:
    """A self-signed serving certificate (PEM) for ``hosts`` (DNS names or IPs) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"{hosts[0] if hosts else 'localhost'}@{int(now.timestamp())}"
            )
        ]
    )
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def peer_certificate_der(request: web.BaseRequest) -> bytes | None:
    """The client's leaf certificate (DER) of the request's TLS connection, if any.

    With ``CERT_OPTIONAL`` OpenSSL has verified it against the union of the CA
    bundles; the chain itself is not available on Python 3.11.
    """
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    return ssl_object.getpeercert(binary_form=True)


def _san_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = set(san.get_values_for_type(x509.DNSName))
    names.update(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return names


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically, readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)
