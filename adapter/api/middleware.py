"""Middlewares owned by the API edge: error mapping and request telemetry.

Order on the request path (outermost first), assembled in ``adapter.app``::

    observe -> access log -> errors -> request target -> budgets -> authn/authz -> handler

``errors`` is the one place where exceptions become responses: AdapterError ->
its Status; aiohttp's own HTTP errors (no route, wrong method) -> Status; any
other exception -> a generic 500 Status, the traceback logged, never sent.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from adapter.api.state import ROUTE, TELEMETRY
from adapter.api.status import error_response
from adapter.api.target import printable_target
from adapter.core.errors import (
    AdapterError,
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    SourceError,
)

log = logging.getLogger(__name__)

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
