"""Front-proxy authentication: identity headers trusted only from the aggregator.

``X-Remote-*`` headers (names configurable) are read **only** when the TLS
client certificate was issued by the requestheader CA and its CN is allowed.
In every other case they are ignored, never an error: the next authenticator
runs as if they were absent.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from urllib.parse import unquote

from cryptography import x509

from adapter.auth.trust import RequestHeaderConfig, Trust
from adapter.auth.user import UserInfo
from adapter.auth.x509 import common_name

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, str]]


def user_from_headers(
    leaf: x509.Certificate | None, headers: Headers, trust: Trust, now: datetime.datetime
) -> UserInfo | None:
    """The asserted identity, or None when the caller is not a trusted front proxy
    or asserts no user name."""
    if leaf is None or not trust.requestheader_ca:
        return None
    if not trust.requestheader_ca.verify(leaf, now):
        return None
    config = trust.config.requestheader
    cn = common_name(leaf)
    if config.allowed_names and cn not in config.allowed_names:
        log.debug("front-proxy certificate CN %r is not in requestheader-allowed-names", cn)
        return None
    return _asserted_user(headers, config)


def _asserted_user(headers: Headers, config: RequestHeaderConfig) -> UserInfo | None:
    name = _first(headers, config.username_headers)
    if not name:
        return None
    groups = tuple(_all(headers, config.group_headers))
    return UserInfo(
        name=name,
        groups=groups,
        uid=_first(headers, config.uid_headers),
        extra=_extra(headers, config.extra_headers_prefixes),
    ).with_authenticated_group()


def _first(headers: Headers, names: Sequence[str]) -> str:
    """The first non-empty value, trying header names in configured order."""
    for name in names:
        wanted = name.lower()
        for key, value in headers:
            if key.lower() == wanted and value:
                return value
    return ""


def _all(headers: Headers, names: Sequence[str]) -> list[str]:
    wanted = {name.lower() for name in names}
    return [value for key, value in headers if key.lower() in wanted]


def _extra(headers: Headers, prefixes: Sequence[str]) -> dict[str, tuple[str, ...]]:
    extra: dict[str, list[str]] = {}
    lowered = [p.lower() for p in prefixes if p]
    for key, value in headers:
        lower = key.lower()
        for prefix in lowered:
            if lower.startswith(prefix) and len(lower) > len(prefix):
                extra.setdefault(_extra_key(lower[len(prefix) :]), []).append(value)
                break
    return {k: tuple(v) for k, v in extra.items()}


def _extra_key(encoded: str) -> str:
    """Percent-decoded like Go's url.PathUnescape; an invalid escape keeps the raw key."""
    try:
        return unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        return encoded
