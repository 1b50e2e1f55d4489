"""The authentication, authorization, concurrency-limit and access-log middlewares.

Order on the request path (outermost first)::

    observe -> access_log_middleware -> errors -> request_target
            -> inflight_limit_middleware -> auth_middleware -> handler

Every one of them reads the path from ``request[TARGET]`` (adapter.api.target),
computed once by ``request_target``.

``auth_middleware`` raises ``Unauthorized``/``Forbidden`` (``errors`` renders
them); it stores who called and why they were let in on the request, under
the typed keys below, for ``access_log_middleware``.

Server limits live in aiohttp, not here; pass to ``web.AppRunner(app, ...)``
(they reach ``aiohttp.web_protocol.RequestHandler``)::

    web.AppRunner(
        app,
        max_line_size=8190,      # request line (method + path + query), bytes -> 400
        max_field_size=8190,     # one header line, bytes -> 400
        max_headers=128,         # header count -> 400
        keepalive_timeout=60.0,  # idle keep-alive AND time to the first complete request
                                 # head on a new connection (slowloris bound)
        lingering_time=5.0,      # how long to drain an unread body before closing
        handler_cancellation=True,  # a client that goes away cancels its handler
    )

and ``web.Application(client_max_size=64 * 1024)`` (bodies: the API is GET-only).
The TLS handshake and the first request head are bounded together by the
listener's request-header deadline, and the number of connections by its cap
(``adapter.api.connections.GuardedSite``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from adapter.api.logs import RateLimit
from adapter.api.target import TARGET, printable_target
from adapter.api.tls import peer_certificate_der
from adapter.auth.authenticator import Authenticator, AuthRequest
from adapter.auth.authorizer import (
    ALWAYS_ALLOW_PATHS,
    Authorizer,
    DecisionSource,
    request_attributes,
)
from adapter.auth.user import UserInfo
from adapter.core.errors import AdapterError, Forbidden, TooManyRequests, Unauthorized

log = logging.getLogger(__name__)
access_log = logging.getLogger("adapter.access")

USER = web.RequestKey("auth_user", UserInfo)
"""The authenticated caller (absent for always-allowed paths and 401s)."""
AUTHN_METHOD = web.RequestKey("auth_method", str)
"""``front-proxy`` | ``x509`` | ``token``."""
AUTHZ_SOURCE: web.RequestKey[DecisionSource] = web.RequestKey("authz_source")
"""``cache`` | ``review`` | ``masters`` | ``always`` | ``standalone``."""

UNAUTHORIZED_MESSAGE = "Unauthorized"


def auth_middleware(
    authenticator: Authenticator,
    authorizer: Authorizer,
    *,
    always_allow_paths: Iterable[str] = ALWAYS_ALLOW_PATHS,
) -> Middleware:
    """Authenticate (front proxy, client certificate, bearer token), then authorize.

    ``always_allow_paths`` are matched exactly against the normalized target
    path (still percent-encoded) and are served without credentials (health
    probes). Every 401 closes its connection: a client without credentials
    cannot hold a keep-alive connection open.
    """
    always = frozenset(always_allow_paths)

    @web.middleware
    async def authenticate_and_authorize(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        raw_path = request[TARGET].path
        if raw_path in always:
            request[AUTHZ_SOURCE] = "always"
            return await handler(request)
        authenticated = await authenticator.authenticate(
            AuthRequest(headers=list(request.headers.items()), peer_cert_der=_peer(request))
        )
        if authenticated is None:
            raise Unauthorized(UNAUTHORIZED_MESSAGE)
        user = authenticated.user
        request[USER] = user
        request[AUTHN_METHOD] = authenticated.method
        attributes = request_attributes(request.method, raw_path)
        decision = await authorizer.authorize(user, attributes)
        request[AUTHZ_SOURCE] = decision.source
        if not decision.allowed:
            message = attributes.forbidden_message(user.name)
            raise Forbidden(f"{message}: {decision.reason}" if decision.reason else message)
        return await handler(request)

    return authenticate_and_authorize


class _Budget:
    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("an in-flight limit must be at least 1")
        self.limit = limit
        self.used = 0


def inflight_limit_middleware(
    max_inflight: int, max_selector_inflight: int | None = None
) -> Middleware:
    """Concurrency budgets; a request beyond its budget gets 429 at once.

    - health probes (``/healthz``, ``/livez``, ``/readyz``): never limited;
    - metric reads with a non-empty ``metricLabelSelector`` (they may wait on
      Prometheus): at most ``max_selector_inflight`` (default: a quarter of
      ``max_inflight``, at least 1);
    - everything else (discovery, reads from memory): at most ``max_inflight``.

    The budgets are separate, so reads waiting on a hung backend can never take
    discovery or the snapshot reads down with them. Requests are rejected,
    never queued: a queue only hides overload from the caller's retry logic
    (the HPA retries on its next sync).
    """
    main = _Budget(max_inflight)
    selector = _Budget(
        max(1, max_inflight // 4) if max_selector_inflight is None else max_selector_inflight
    )

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        target = request[TARGET]
        if target.path in ALWAYS_ALLOW_PATHS:
            return await handler(request)
        budget = selector if target.metric_selector else main
        if budget.used >= budget.limit:
            raise TooManyRequests("too many requests, please try again later")
        budget.used += 1
        try:
            return await handler(request)
        finally:
            budget.used -= 1

    return limit


def access_log_middleware(
    logger: logging.Logger = access_log, anonymous_limit: RateLimit | None = None
) -> Middleware:
    """One JSON line per request: who, what, status, latency, why allowed.

    Never logs headers, tokens, certificates or the query string (selectors
    may be long; the path identifies the object). Lines of requests without an
    authenticated user (401s, 400s, probes) are rate-limited together
    (``anonymous_limit``, default 10 per 10 s), so a client without
    credentials cannot flood the log; the next line says how many were dropped.
    """
    anonymous = RateLimit() if anonymous_limit is None else anonymous_limit

    @web.middleware
    async def log_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
        except AdapterError as e:
            status = e.code
            raise
        except web.HTTPException as e:
            status = e.status
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away (nginx's convention)
            raise
        else:
            status = response.status
            return response
        finally:
            dropped = 0 if USER in request else anonymous.allow()
            if dropped is not None and logger.isEnabledFor(logging.INFO):
                record = access_record(request, status, time.perf_counter() - started)
                if dropped:
                    record["suppressed"] = dropped
                # The fields go to the JSON formatter as top-level keys (adapter.cli).
                logger.info(
                    "%s %s %d", request.method, record["path"], status, extra={"fields": record}
                )

    return log_access


def access_record(request: web.Request, status: int, elapsed: float) -> dict[str, Any]:
    """The access-log fields of one request. No headers, tokens, certificates or query."""
    user = request.get(USER)
    return {
        "user": user.name if user else None,
        "groups": list(user.groups) if user else [],
        "authn": request.get(AUTHN_METHOD),
        "verb": request.method,
        "path": printable_target(request),
        "status": status,
        "latency_ms": round(elapsed * 1000, 3),
        "authz": request.get(AUTHZ_SOURCE),
        "remote": request.remote,
    }


def _peer(request: web.Request) -> bytes | None:
    try:
        return peer_certificate_der(request)
    except ValueError:  # the connection went away mid-request
        return None
