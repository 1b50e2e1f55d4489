"""A loopback fake of the auth-related Kubernetes API.

- ``POST /apis/authentication.k8s.io/v1/tokenreviews``: ``state.tokens`` maps a
  token to the ``status.user`` it authenticates (absent: not authenticated);
  ``state.token_audiences`` overrides the audiences returned per token.
- ``POST /apis/authorization.k8s.io/v1/subjectaccessreviews``: ``state.rules``
  is a list of predicates ``(spec) -> bool | None``; the first non-None
  answer decides, no answer denies. ``state.allow(...)`` adds common rules.
- ``GET /api/v1/namespaces/kube-system/configmaps[/extension-apiserver-authentication]``
  (list with ``fieldSelector=metadata.name=...``, and ``watch=true``) serving
  ``state.configmap_data``; ``state.set_configmap(data)`` bumps the
  resourceVersion and sends a MODIFIED event to open watches.

Counters: ``state.calls["tokenreviews" | "subjectaccessreviews" | "list" | "watch"]``.
``state.fail`` set to an HTTP code makes review endpoints answer that code.
``add_auth_routes(app, state)`` adds these routes to any ``web.Application``
(e.g. the pods fake of ``tests.fakes.kube_api``); ``serve_auth_api`` runs them alone.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.serving import serving

CM_NAMESPACE = "kube-system"
CM_NAME = "extension-apiserver-authentication"

Rule = Callable[[dict[str, Any]], bool | None]


@dataclass
class KubeAuthState:
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_audiences: dict[str, list[str]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    configmap_data: dict[str, str] | None = None
    resource_version: int = 1
    calls: Counter[str] = field(default_factory=Counter)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    fail: int | None = None
    watchers: list[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=list)

    def allow(
        self,
        user: str | None = None,
        *,
        group: str | None = None,
        namespace: str | None = None,
        subresource: str | None = None,
        path: str | None = None,
    ) -> None:
        """Allow requests matching every given field."""

        def rule(spec: dict[str, Any]) -> bool | None:
            res = spec.get("resourceAttributes") or {}
            checks = [
                user is None or spec.get("user") == user,
                group is None or group in (spec.get("groups") or []),
                namespace is None or res.get("namespace") == namespace,
                subresource is None or res.get("subresource") == subresource,
                path is None or (spec.get("nonResourceAttributes") or {}).get("path") == path,
            ]
            return True if all(checks) else None

        self.rules.append(rule)

    def set_configmap(self, data: dict[str, str] | None) -> None:
        event_type = "ADDED" if self.configmap_data is None else "MODIFIED"
        if data is None:
            event_type = "DELETED"
        self.resource_version += 1
        self.configmap_data = data
        obj = self.configmap_object() or _configmap({}, self.resource_version)
        for queue in self.watchers:
            queue.put_nowait({"type": event_type, "object": obj})

    def expire_watches(self) -> None:
        """Send 410 Gone to every open watch (as after etcd compaction)."""
        for queue in self.watchers:
            queue.put_nowait(
                {
                    "type": "ERROR",
                    "object": {
                        "kind": "Status",
                        "code": 410,
                        "reason": "Expired",
                        "message": "too old",
                    },
                }
            )

    def configmap_object(self) -> dict[str, Any] | None:
        if self.configmap_data is None:
            return None
        return _configmap(self.configmap_data, self.resource_version)


STATE = web.AppKey("kube_auth_state", KubeAuthState)


def authentication_data(front_proxy_ca: str, client_ca: str | None = None) -> dict[str, str]:
    """``extension-apiserver-authentication`` data as kube-apiserver writes it: front-proxy
    certificates from ``front_proxy_ca`` (PEM) with CN ``front-proxy-client`` assert the user
    in ``X-Remote-*`` headers; with ``client_ca`` (PEM), client certificates it signed too."""
    data = {"client-ca-file": client_ca} if client_ca is not None else {}
    return {
        **data,
        "requestheader-client-ca-file": front_proxy_ca,
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    }


def _configmap(data: dict[str, str], version: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CM_NAME, "namespace": CM_NAMESPACE, "resourceVersion": str(version)},
        "data": data,
    }


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _review(
    counter: str, decide: Callable[[KubeAuthState, dict[str, Any]], dict[str, Any]]
) -> Handler:
    """A review endpoint: counts the call in ``state.calls[counter]``, answers ``state.fail``
    when set, else echoes the review with the ``status`` that ``decide(state, spec)`` gives."""

    async def handler(request: web.Request) -> web.Response:
        state = request.app[STATE]
        state.calls[counter] += 1
        if state.fail:
            return web.json_response({"kind": "Status", "code": state.fail}, status=state.fail)
        body = await request.json()
        body["status"] = decide(state, body["spec"])
        return web.json_response(body, status=201)

    return handler


def _token_status(state: KubeAuthState, spec: dict[str, Any]) -> dict[str, Any]:
    token = spec.get("token", "")
    audiences = spec.get("audiences") or []
    user = state.tokens.get(token)
    status: dict[str, Any] = {"authenticated": user is not None}
    if user is not None:
        status["user"] = user
        status["audiences"] = state.token_audiences.get(token, audiences)
    else:
        status["error"] = "token is invalid or expired"
    return status


def _access_status(state: KubeAuthState, spec: dict[str, Any]) -> dict[str, Any]:
    state.reviews.append(spec)
    allowed = False
    for rule in state.rules:
        answer = rule(spec)
        if answer is not None:
            allowed = answer
            break
    return {"allowed": allowed, "reason": "fake RBAC" if allowed else ""}


async def _get_configmap(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.calls["get"] += 1
    obj = state.configmap_object()
    if obj is None or request.match_info["name"] != CM_NAME:
        return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
    return web.json_response(obj)


async def _list_configmaps(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    selector = request.query.get("fieldSelector", "")
    if selector not in {"", f"metadata.name={CM_NAME}"}:
        items: list[dict[str, Any]] = []
    else:
        obj = state.configmap_object()
        items = [obj] if obj is not None else []
    if request.query.get("watch") in {"true", "1"}:
        return await _watch(request, state)
    state.calls["list"] += 1
    return web.json_response(
        {
            "kind": "ConfigMapList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(state.resource_version)},
            "items": items,
        }
    )


async def _watch(request: web.Request, state: KubeAuthState) -> web.StreamResponse:
    state.calls["watch"] += 1
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    since = int(request.query.get("resourceVersion") or 0)
    if since and since < state.resource_version and state.configmap_data is not None:
        # Changes happened between the list and this watch: replay the latest.
        queue.put_nowait({"type": "MODIFIED", "object": state.configmap_object()})
    state.watchers.append(queue)
    timeout = float(request.query.get("timeoutSeconds") or 300)
    try:
        async with asyncio.timeout(timeout):
            while (event := await queue.get()) is not None:
                await response.write(json.dumps(event).encode() + b"\n")
    except TimeoutError:
        pass
    finally:
        state.watchers.remove(queue)
    return response


def add_auth_routes(app: web.Application, state: KubeAuthState) -> None:
    app[STATE] = state
    app.router.add_post(
        "/apis/authentication.k8s.io/v1/tokenreviews", _review("tokenreviews", _token_status)
    )
    app.router.add_post(
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        _review("subjectaccessreviews", _access_status),
    )
    app.router.add_get(f"/api/v1/namespaces/{CM_NAMESPACE}/configmaps", _list_configmaps)
    app.router.add_get(f"/api/v1/namespaces/{CM_NAMESPACE}/configmaps/{{name}}", _get_configmap)

    async def close_watches(_app: web.Application) -> None:
        for queue in list(state.watchers):
            queue.put_nowait(None)

    app.on_shutdown.append(close_watches)


@asynccontextmanager
async def serve_auth_api(state: KubeAuthState) -> AsyncIterator[str]:
    """Run the fake alone on 127.0.0.1 (plain HTTP); yields its base URL."""
    app = web.Application()
    add_auth_routes(app, state)
    async with serving(app, shutdown_timeout=1.0) as url:
        yield url
