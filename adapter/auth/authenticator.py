"""Who is calling: front proxy, then client certificate, then bearer token.

The first method that authenticates wins, as in k8s.io/apiserver's union
authenticator. Nothing authenticates -> ``None`` (the edge answers 401).
Headers asserting an identity are ignored unless a trusted front proxy sent them.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from adapter.auth.requestheader import user_from_headers
from adapter.auth.tokens import TokenAuthenticator, bearer_token
from adapter.auth.trust import TrustState
from adapter.auth.user import UserInfo
from adapter.auth.x509 import parse_leaf, user_from_certificate
from adapter.kube.errors import KubeError

log = logging.getLogger(__name__)

Method = Literal["front-proxy", "x509", "token"]


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What authentication looks at, framework-free.

    ``headers`` are the raw header pairs in order (repeats kept);
    ``peer_cert_der`` the TLS client leaf certificate, already verified by the
    handshake against the union of the CA bundles.
    """

    headers: Sequence[tuple[str, str]]
    peer_cert_der: bytes | None = None

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


@dataclass(frozen=True, slots=True)
class Authenticated:
    user: UserInfo
    method: Method


class Authenticator:
    """The union of the enabled methods.

    ``tokens`` None disables bearer tokens (no-cluster mode). ``clock`` is wall
    time (Unix seconds), used for certificate validity.
    """

    def __init__(
        self,
        trust: TrustState,
        tokens: TokenAuthenticator | None = None,
        *,
        front_proxy: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._trust = trust
        self._tokens = tokens
        self._front_proxy = front_proxy
        self._clock = clock

    async def authenticate(self, request: AuthRequest) -> Authenticated | None:
        trust = self._trust.current
        leaf = parse_leaf(request.peer_cert_der) if request.peer_cert_der else None
        if leaf is not None:
            now = datetime.datetime.fromtimestamp(self._clock(), tz=datetime.UTC)
            if self._front_proxy:
                user = user_from_headers(leaf, request.headers, trust, now)
                if user is not None:
                    return Authenticated(user, "front-proxy")
            user = user_from_certificate(leaf, trust.client_ca, now)
            if user is not None:
                return Authenticated(user, "x509")
        token = bearer_token(request.header("Authorization"))
        if token is None or self._tokens is None:
            return None
        try:
            result = await self._tokens.authenticate(token)
        except KubeError as e:
            log.warning("TokenReview failed, answering 401: %s", e)
            return None
        return Authenticated(result.user, "token") if result.user is not None else None
