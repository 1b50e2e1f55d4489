"""Route table and handlers. Each handler: parse -> resolve -> render.

Routing is done here, on ``request[TARGET]`` (adapter.api.target), the same
object authorization and the access log use; aiohttp's router only sees one
catch-all route.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapter.api import wire
from adapter.api.explain import explanation, wants_explanation
from adapter.api.negotiation import require_json, selectors_from_query
from adapter.api.state import CATALOGUE, READINESS, REGISTRY, RESOLVER, ROUTE
from adapter.api.status import API_HEADERS, JSON, json_body
from adapter.api.target import TARGET
from adapter.core.errors import MethodNotAllowed, NotFound
from adapter.core.model import API_GROUP, MetricValue
from adapter.core.request import MetricPath, parse_metric_path

GROUP_PATH = f"/apis/{API_GROUP}"


def render_metric_value_list(version: str, values: Sequence[MetricValue]) -> bytes:
    """The served bytes of a MetricValueList; cached answers keep exactly these."""
    return json_body(wire.metric_value_list(version, values))


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return _json_bytes(json_body(body), status)


def _json_bytes(body: bytes, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, content_type=JSON, headers=API_HEADERS)


async def apis(request: web.Request) -> web.Response:
    request[ROUTE] = "apis"
    require_json(request.headers.get("Accept"))
    return _json(wire.api_group_list())


async def group(request: web.Request) -> web.Response:
    request[ROUTE] = "group"
    require_json(request.headers.get("Accept"))
    return _json(wire.api_group())


async def group_subtree(request: web.Request) -> web.Response:
    """Everything under ``/apis/custom.metrics.k8s.io/``: discovery or a metric read."""
    target = request[TARGET]
    path, query = target.path, target.query
    request[ROUTE] = "version"
    metric_path = _parsed_path(path)
    require_json(request.headers.get("Accept"))
    if metric_path is None:
        version = path[len(GROUP_PATH) + 1 :].strip("/")
        return _json(wire.api_resource_list(version, request.app[CATALOGUE]()))
    request[ROUTE] = _route_label(metric_path)
    label_selector, metric_selector = _parsed_selectors(query)
    if wants_explanation(query):  # authorized as the read itself (adapter.api.explain)
        request[ROUTE] = "explain"
        return await explanation(request, metric_path, label_selector, metric_selector)
    answer = await request.app[RESOLVER].answer(metric_path, label_selector, metric_selector)
    return _json_bytes(answer.body(metric_path.version, render_metric_value_list))


# Parsing is a pure function of the text, and HPAs send the same few reads over and
# over: a parsed read is kept (errors are not, they raise again). Bounded.
_parsed_path = functools.lru_cache(maxsize=1024)(parse_metric_path)
_parsed_selectors = functools.lru_cache(maxsize=1024)(selectors_from_query)


def _route_label(path: MetricPath) -> str:
    if path.namespace_metric:
        return "namespace_metric"
    scope = "namespaced" if path.namespace is not None else "cluster"
    return f"{scope}_{'wildcard' if path.wildcard else 'object'}"


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP. Never depends on a backend."""
    request[ROUTE] = request[TARGET].path.strip("/")
    return web.Response(text="ok")


async def readyz(request: web.Request) -> web.Response:
    """Ready once the pod index has its first complete list. Backends do not count:
    an APIService that flaps with Prometheus breaks discovery cluster-wide."""
    request[ROUTE] = "readyz"
    checks = [check() for check in request.app[READINESS]]
    lines = [f"[{'+' if ok else '-'}]{name} {'ok' if ok else 'failed'}" for name, ok in checks]
    ready = all(ok for _, ok in checks)
    lines.append("readyz check passed" if ready else "readyz check failed")
    text = "\n".join(lines) + "\n" if "verbose" in request.query or not ready else "ok"
    return web.Response(status=200 if ready else 503, text=text)


async def metrics(request: web.Request) -> web.Response:
    request[ROUTE] = "metrics"
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    """We publish no OpenAPI document; a 404 Status is what the aggregator handles cleanly."""
    request[ROUTE] = "openapi"
    raise NotFound("the server does not publish an OpenAPI document")


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_EXACT: dict[str, _Handler] = {
    "/apis": apis,
    "/apis/": apis,
    GROUP_PATH: group,
    GROUP_PATH + "/": group,
    "/healthz": healthz,
    "/livez": healthz,
    "/readyz": readyz,
    "/metrics": metrics,
}
_READ_METHODS = frozenset({"GET", "HEAD"})


def route(path: str) -> _Handler | None:
    """The handler for a normalized path (``RequestTarget.path``), or None (404)."""
    exact = _EXACT.get(path)
    if exact is not None:
        return exact
    if path.startswith(GROUP_PATH + "/"):
        return group_subtree
    if path.startswith("/openapi/"):
        return openapi
    return None


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route on ``request[TARGET]``: unknown path 404, a known one with a method
    other than GET or HEAD 405."""
    handler = route(request[TARGET].path)
    if handler is None:
        raise NotFound("the server could not find the requested resource")
    if request.method not in _READ_METHODS:
        raise MethodNotAllowed(
            f"the server does not allow this method on the requested resource ({request.method})"
        )
    return await handler(request)


def add_routes(app: web.Application) -> None:
    """One catch-all route; :func:`dispatch` decides (on the request target)."""
    app.router.add_route("*", "/{tail:.*}", dispatch, name="dispatch")
