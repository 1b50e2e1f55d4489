"""The Kubernetes API calls authentication needs, on ``kubernetes.aio``.

TokenReview and SubjectAccessReview (ClusterRole ``system:auth-delegator``),
and list+watch of the trust ConfigMap (Role
``extension-apiserver-authentication-reader`` in kube-system). Every failure
becomes ``KubeAuthError`` with a message free of request bodies (tokens).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from kubernetes.aio import client

from adapter.auth.errors import KubeAuthError

_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError)


class KubeAuthClient:
    """Implements ``TokenReviewAPI``, ``SubjectAccessReviewAPI`` and ``ConfigMapAPI``."""

    def __init__(self, api_client: client.ApiClient, request_timeout: float = 10.0) -> None:
        self._authn = client.AuthenticationV1Api(api_client)
        self._authz = client.AuthorizationV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._timeout = request_timeout

    async def create_token_review(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            response = await self._authn.create_token_review_without_preload_content(
                body=client.V1TokenReview.model_validate(dict(body)), _request_timeout=self._timeout
            )
        except _TRANSPORT_ERRORS as e:
            raise KubeAuthError(f"TokenReview: {type(e).__name__}") from e
        return await _json(response, "TokenReview")

    async def create_subject_access_review(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            response = await self._authz.create_subject_access_review_without_preload_content(
                body=client.V1SubjectAccessReview.model_validate(dict(body)),
                _request_timeout=self._timeout,
            )
        except _TRANSPORT_ERRORS as e:
            raise KubeAuthError(f"SubjectAccessReview: {type(e).__name__}: {e}") from e
        return await _json(response, "SubjectAccessReview")

    async def list_configmap(
        self, namespace: str, name: str
    ) -> tuple[Mapping[str, Any] | None, str]:
        """The ConfigMap (None when absent) and the list's resourceVersion."""
        try:
            response = await self._core.list_namespaced_config_map_without_preload_content(
                namespace, field_selector=f"metadata.name={name}", _request_timeout=self._timeout
            )
        except _TRANSPORT_ERRORS as e:
            raise KubeAuthError(f"list ConfigMap {namespace}/{name}: {e}") from e
        body = await _json(response, f"list ConfigMap {namespace}/{name}")
        items = body.get("items") or []
        version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        return (items[0] if items else None), version

    async def watch_configmap(
        self, namespace: str, name: str, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Watch events (``type``, ``object``) until the server ends the stream."""
        try:
            response = await self._core.list_namespaced_config_map_without_preload_content(
                namespace,
                field_selector=f"metadata.name={name}",
                watch=True,
                allow_watch_bookmarks=True,
                resource_version=resource_version or None,
                timeout_seconds=timeout_seconds,
                _request_timeout=timeout_seconds + 30,
            )
        except _TRANSPORT_ERRORS as e:
            raise KubeAuthError(f"watch ConfigMap {namespace}/{name}: {e}") from e
        try:
            if response.status != 200:
                raise KubeAuthError(f"watch ConfigMap {namespace}/{name}: HTTP {response.status}")
            async for line in response.content:
                if line.strip():
                    try:
                        event = json.loads(line)
                    except ValueError as e:
                        raise KubeAuthError("watch ConfigMap: malformed event") from e
                    if isinstance(event, dict):
                        yield event
        except _TRANSPORT_ERRORS as e:
            raise KubeAuthError(f"watch ConfigMap {namespace}/{name}: {type(e).__name__}") from e
        finally:
            response.release()


async def _json(response: aiohttp.ClientResponse, what: str) -> Mapping[str, Any]:
    try:
        if response.status >= 300:
            raise KubeAuthError(f"{what}: HTTP {response.status}")
        body = await response.json(content_type=None)
    except _TRANSPORT_ERRORS as e:
        raise KubeAuthError(f"{what}: unreadable reply ({type(e).__name__})") from e
    finally:
        response.release()
    if not isinstance(body, dict):
        raise KubeAuthError(f"{what}: reply is not an object")
    return body
