"""Loopback fakes of the workload APIs ``explain`` reads, and of the aggregator's proxy.

- ``GET /apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers[/{name}]``:
  ``state.hpas[(ns, name)]`` as stored (apiVersion/kind filled as the server does);
  unknown names get the API server's 404 Status
  (``horizontalpodautoscalers.autoscaling "x" not found``).
- ``GET /apis/apps/v1/namespaces/{ns}/{deployments|statefulsets|replicasets}/{name}/scale``:
  an ``autoscaling/v1`` Scale from ``state.scales[(ns, plural, name)]``
  (``(spec replicas, status replicas, status selector)``), 404 otherwise.
- With ``state.aggregated`` set (the adapter's URL and the front-proxy TLS context),
  ``GET /apis/custom.metrics.k8s.io/...`` is proxied there as kube-aggregator does:
  the caller's bearer token is reviewed against ``auth.tokens`` (401 without one), and
  the request goes on with the front-proxy client certificate and ``X-Remote-User`` /
  ``X-Remote-Group`` headers, path and query unchanged.

``add_workload_routes(app, state, auth)`` installs them on the pods fake
(``FakeKubeServer(extensions=[...])``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.kube_api import status_body
from tests.fakes.kube_auth_api import KubeAuthState

JSON = dict[str, Any]


@dataclass
class Aggregated:
    url: str
    context: ssl.SSLContext


@dataclass
class WorkloadsState:
    hpas: dict[tuple[str, str], JSON] = field(default_factory=dict)
    scales: dict[tuple[str, str, str], tuple[int, int, str]] = field(default_factory=dict)
    aggregated: Aggregated | None = None
    proxied: list[tuple[str, str]] = field(default_factory=list)
    """(user, path with query) of every proxied request."""


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(status_body(code, reason, message), status=code)


def add_workload_routes(app: web.Application, state: WorkloadsState, auth: KubeAuthState) -> None:
    async def get_hpa(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        hpa = state.hpas.get((ns, name))
        if hpa is None:
            return _status(
                404, "NotFound", f'horizontalpodautoscalers.autoscaling "{name}" not found'
            )
        return web.json_response(
            {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", **hpa}
        )

    async def list_hpas(request: web.Request) -> web.Response:
        ns = request.match_info["namespace"]
        items = [hpa for (n, _), hpa in sorted(state.hpas.items()) if n == ns]
        return web.json_response(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscalerList",
                "metadata": {"resourceVersion": "1"},
                "items": items,
            }
        )

    async def get_scale(request: web.Request) -> web.Response:
        ns, plural = request.match_info["namespace"], request.match_info["plural"]
        name = request.match_info["name"]
        scale = state.scales.get((ns, plural, name))
        if scale is None:
            return _status(404, "NotFound", f'{plural}.apps "{name}" not found')
        spec_replicas, status_replicas, selector = scale
        return web.json_response(
            {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
                "spec": {"replicas": spec_replicas},
                "status": {"replicas": status_replicas, "selector": selector},
            }
        )

    async def aggregated(request: web.Request) -> web.StreamResponse:
        target = state.aggregated
        if target is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        user = auth.tokens.get(token)
        if user is None:
            return _status(401, "Unauthorized", "Unauthorized")
        headers = [("X-Remote-User", str(user["username"]))]
        headers += [
            ("X-Remote-Group", g) for g in [*user.get("groups", []), "system:authenticated"]
        ]
        path = request.rel_url.raw_path_qs
        state.proxied.append((str(user["username"]), path))
        connector = aiohttp.TCPConnector(ssl=target.context)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(target.url + path, headers=headers) as upstream,
        ):
            body = await upstream.read()
            return web.Response(
                status=upstream.status,
                body=body,
                content_type=upstream.content_type,
            )

    hpas = "/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
    app.router.add_get(hpas, list_hpas)
    app.router.add_get(hpas + "/{name}", get_hpa)
    app.router.add_get(
        "/apis/apps/v1/namespaces/{namespace}/{plural:deployments|statefulsets|replicasets}"
        "/{name}/scale",
        get_scale,
    )
    app.router.add_get("/apis/custom.metrics.k8s.io/{tail:.*}", aggregated)
