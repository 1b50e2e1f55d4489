"""Bearer tokens, authenticated by the Kubernetes API through TokenReview.

Results (valid and invalid) are cached for a TTL, keyed by a SHA-256 of the
token: the raw token is never stored, logged or put in an error message.
Failures to reach the API are not cached and authenticate nobody (401).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cachetools import TTLCache

from adapter.auth.singleflight import Coalescer
from adapter.auth.user import UserInfo

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 16 * 1024


class TokenReviewAPI(Protocol):
    async def create_token_review(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """POST a TokenReview, return the reviewed object.

        Raises ``adapter.kube.errors.KubeError`` when the API cannot answer.
        """
        ...


@dataclass(frozen=True, slots=True)
class TokenResult:
    user: UserInfo | None
    """None: the token is not valid (for our audiences)."""
    cached: bool


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (as k8s.io/apiserver
    splits it); None without one, ``""`` for an empty bearer token (invalid)."""
    if not authorization:
        return None
    parts = authorization.strip().split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


class TokenAuthenticator:
    def __init__(
        self,
        api: TokenReviewAPI,
        *,
        audiences: Sequence[str] = (),
        ttl: float = 10.0,
        maxsize: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._audiences = tuple(audiences)
        self._cache: TTLCache[bytes, UserInfo | None] = TTLCache(maxsize, ttl, timer=clock)
        self._flights: Coalescer[bytes, UserInfo | None] = Coalescer()

    async def authenticate(self, token: str) -> TokenResult:
        """Raises ``adapter.kube.errors.KubeError`` when the API cannot be asked (caller:
        401, log)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return TokenResult(None, cached=False)
        key = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        try:
            return TokenResult(self._cache[key], cached=True)
        except KeyError:
            pass
        user = await self._flights.run(key, lambda: self._review(key, token))
        return TokenResult(user, cached=False)

    async def _review(self, key: bytes, token: str) -> UserInfo | None:
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = list(self._audiences)
        reply = await self._api.create_token_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        )
        user = self._user(reply)
        self._cache[key] = user
        return user

    def _user(self, reply: Mapping[str, Any]) -> UserInfo | None:
        status = reply.get("status") or {}
        if not isinstance(status, Mapping) or status.get("authenticated") is not True:
            if isinstance(status, Mapping) and status.get("error"):
                log.info("token rejected by TokenReview: %s", str(status["error"])[:200])
            return None
        if self._audiences and not set(self._audiences) & set(status.get("audiences") or ()):
            log.info("token rejected: audiences do not include %s", list(self._audiences))
            return None
        raw = status.get("user") or {}
        name = raw.get("username") if isinstance(raw, Mapping) else None
        if not isinstance(name, str) or not name:
            return None
        extra = raw.get("extra") or {}
        return UserInfo(
            name=name,
            groups=tuple(str(g) for g in raw.get("groups") or ()),
            uid=str(raw.get("uid") or ""),
            extra={str(k): tuple(str(x) for x in v) for k, v in extra.items()},
        ).with_authenticated_group()
