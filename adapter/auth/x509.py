"""Client certificates: CA bundles and the ``--client-ca-file`` authenticator.

OpenSSL has already verified a presented certificate during the handshake
against the union of the client CA and requestheader CA bundles. On Python
3.11 only the leaf is visible afterwards, so which bundle it belongs to is
decided here by name and signature: a CA in the bundle must have *directly*
issued the leaf. Limitation: a leaf issued by an intermediate CA is attributed
only when that intermediate itself is in the bundle; otherwise it authenticates
as nothing (fail closed: 401 unless a token is also sent).
"""

from __future__ import annotations

import datetime
import hashlib
import logging

from cachetools import LRUCache
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapter.auth.user import UserInfo

log = logging.getLogger(__name__)

_SHA256 = hashes.SHA256()

_PARSED: LRUCache[bytes, x509.Certificate | None] = LRUCache(maxsize=512)


def parse_leaf(der: bytes) -> x509.Certificate | None:
    """The leaf certificate, or None when it does not parse (memoized by content)."""
    key = hashlib.sha256(der).digest()
    try:
        return _PARSED[key]
    except KeyError:
        pass
    try:
        cert: x509.Certificate | None = x509.load_der_x509_certificate(der)
    except ValueError:
        cert = None
    _PARSED[key] = cert
    return cert


class CABundle:
    """An immutable, parsed PEM bundle of CA certificates.

    Raises ``ValueError`` when ``pem`` is non-empty but holds no certificate.
    """

    def __init__(self, pem: bytes | None) -> None:
        self.pem = pem or b""
        self.certs: tuple[x509.Certificate, ...] = (
            tuple(x509.load_pem_x509_certificates(self.pem)) if self.pem.strip() else ()
        )
        self._issued: LRUCache[bytes, bool] = LRUCache(maxsize=1024)

    def __bool__(self) -> bool:
        return bool(self.certs)

    def issued(self, leaf: x509.Certificate) -> bool:
        """True when a CA of this bundle directly signed ``leaf``."""
        key = leaf.fingerprint(_SHA256)
        cached = self._issued.get(key)
        if cached is None:
            cached = any(_directly_issued(leaf, ca) for ca in self.certs)
            self._issued[key] = cached
        return cached

    def verify(self, leaf: x509.Certificate, now: datetime.datetime) -> bool:
        """Issued by this bundle, valid at ``now``, usable for client authentication."""
        return self.issued(leaf) and _valid_at(leaf, now) and _client_auth_usage(leaf)


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def organizations(cert: x509.Certificate) -> tuple[str, ...]:
    values = (a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return tuple(v if isinstance(v, str) else v.decode("utf-8", "replace") for v in values)


def user_from_certificate(
    leaf: x509.Certificate | None, bundle: CABundle, now: datetime.datetime
) -> UserInfo | None:
    """``--client-ca-file`` authentication: user = CN, groups = O; None when not ours."""
    if leaf is None or not bundle or not bundle.verify(leaf, now):
        return None
    name = common_name(leaf)
    if not name:
        return None
    return UserInfo(name=name, groups=organizations(leaf)).with_authenticated_group()


def _directly_issued(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    if leaf.issuer != ca.subject:
        return False
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _valid_at(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _client_auth_usage(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return (
        ExtendedKeyUsageOID.CLIENT_AUTH in usage
        or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usage
    )
