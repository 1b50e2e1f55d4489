"""The trust material, as one immutable snapshot swapped atomically.

Where it comes from (flags, the ``extension-apiserver-authentication``
ConfigMap) is ``adapter.auth.trustsources``'s business; authenticators only read
``TrustState.current`` once per request, so a rotation never mixes an old CA
with new header names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from adapter.auth.x509 import CABundle

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RequestHeaderConfig:
    """Front-proxy header names (kube-apiserver's ``--requestheader-*`` flags)."""

    allowed_names: tuple[str, ...] = ()
    """CNs allowed to assert identities; empty allows any CN from the requestheader CA."""
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_headers_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)
    uid_headers: tuple[str, ...] = ("X-Remote-Uid",)


@dataclass(frozen=True, slots=True)
class TrustConfig:
    """PEM bundles and header names: comparable, so an unchanged update is a no-op."""

    client_ca_pem: bytes | None = None
    requestheader_ca_pem: bytes | None = None
    requestheader: RequestHeaderConfig = field(default_factory=RequestHeaderConfig)


@dataclass(frozen=True, slots=True)
class Trust:
    """A parsed ``TrustConfig``."""

    config: TrustConfig
    client_ca: CABundle
    requestheader_ca: CABundle

    @classmethod
    def parse(cls, config: TrustConfig) -> Trust:
        """Raises ``ValueError`` when a bundle holds no readable certificate."""
        return cls(config, CABundle(config.client_ca_pem), CABundle(config.requestheader_ca_pem))


TrustListener = Callable[[TrustConfig], None]


class TrustState:
    """The current ``Trust``, replaced as a whole by :meth:`apply`.

    Listeners (the serving TLS context: ``lambda c: tls.set_client_cas(
    c.client_ca_pem, c.requestheader_ca_pem)``) run before the swap; if one
    raises, the previous trust stays in force and the error propagates.
    """

    def __init__(self, config: TrustConfig | None = None) -> None:
        self.current = Trust.parse(config or TrustConfig())
        self._listeners: list[TrustListener] = []

    def subscribe(self, listener: TrustListener, *, call_now: bool = True) -> None:
        self._listeners.append(listener)
        if call_now:
            listener(self.current.config)

    def apply(self, config: TrustConfig) -> bool:
        """Install ``config``; False when it equals the current one."""
        if config == self.current.config:
            return False
        trust = Trust.parse(config)
        for listener in self._listeners:
            listener(config)
        self.current = trust
        log.info(
            "authentication trust updated: client CA %d cert(s), requestheader CA %d cert(s), "
            "allowed names %s",
            len(trust.client_ca.certs),
            len(trust.requestheader_ca.certs),
            list(config.requestheader.allowed_names) or "(any)",
        )
        return True
