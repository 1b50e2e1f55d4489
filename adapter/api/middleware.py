"""Every middleware of the API edge, and the one place their order is written (``chain``).

Order on the request path, outermost first::

    observe -> connection marks -> access log -> errors -> request target
            -> budget -> authn/authz -> handler

- ``observe`` counts and times every request (``adapter_http_requests_total``...);
- connection marks (``adapter.api.connections``) tell the connection cap which
  connections authenticated;
- ``access_log_middleware`` writes one JSON line per request;
- ``errors`` is the one place where exceptions become responses: AdapterError ->
  its Status; aiohttp's own HTTP errors (no route, wrong method) -> Status; any
  other exception -> a generic 500 Status, the traceback logged, never sent;
- ``request_target`` (``adapter.api.target``) computes the request target once;
  every middleware after it reads the path from ``request[TARGET]``;
- ``inflight_limit_middleware``: concurrency budgets (429 beyond them);
- ``auth_middleware`` raises ``Unauthorized``/``Forbidden`` (``errors`` renders
  them); it stores who called and why they were let in on the request, under
  the typed keys below, for the access log.

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
from adapter.api.state import ROUTE, TELEMETRY
from adapter.api.status import error_response
from adapter.api.target import TARGET, printable_target, request_target
from adapter.api.tls import peer_certificate_der
from adapter.auth.authenticator import Authenticator, AuthRequest
from adapter.auth.authorizer import (
    ALWAYS_ALLOW_PATHS,
    Authorizer,
    DecisionSource,
    request_attributes,
)
from adapter.auth.user import UserInfo
from adapter.core.errors import (
    AdapterError,
    BadRequest,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotFound,
    SourceError,
    TooManyRequests,
    Unauthorized,
)

log = logging.getLogger(__name__)
access_log = logging.getLogger("adapter.access")

_GENERIC = "an internal error occurred while serving the request"


def _from_http_exception(exc: web.HTTPException) -> AdapterError:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(
            f"the server does not allow this method on the requested resource ({exc.method})"
        )
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("the server could not find the requested resource")
    if 400 <= exc.status < 500:
        return BadRequest(exc.reason or "bad request")
    return InternalError(_GENERIC)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AdapterError as e:
        response = error_response(e)
        if e.code == 401:
            # No credentials, no keep-alive: an anonymous client cannot hold connections.
            response.force_close()
        return response
    except SourceError:
        log.exception("source failed for %s", printable_target(request))
        return error_response(InternalError(_GENERIC))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error_response(_from_http_exception(e))
    except Exception:
        log.exception("unhandled error serving %s", printable_target(request))
        return error_response(InternalError(_GENERIC))


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by route and code (adapter_http_requests_total...)."""
    started = time.perf_counter()
    response = await handler(request)
    telemetry = request.app[TELEMETRY]
    route = request.get(ROUTE, "other")
    code = str(response.status)
    telemetry.requests.labels(route, request.method, code).inc()
    telemetry.latency.labels(route, code).observe(time.perf_counter() - started)
    return response


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


def chain(
    *,
    connection_marks: Middleware | None = None,
    access_log: Middleware | None = None,
    budget: Middleware | None = None,
    auth: Middleware | None = None,
) -> list[Middleware]:
    """The middlewares of the request path in their one order, outermost first.

    ``observe``, ``errors`` and ``request_target`` are always there; the others
    are left out when ``None`` (tests and benchmarks that need only part of the
    edge). See the module docstring for what each one does.
    """
    optional_outer = [m for m in (connection_marks, access_log) if m is not None]
    optional_inner = [m for m in (budget, auth) if m is not None]
    return [observe, *optional_outer, errors, request_target, *optional_inner]
