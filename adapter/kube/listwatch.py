"""LIST and WATCH of pods as raw JSON: the transport under the pod index.

``PodsAPI`` is the seam: the index asks for one list page or one watch stream
and gets plain dicts back. ``KubePodsAPI`` is the real one, on top of the
``kubernetes.aio`` client with ``_without_preload_content`` so no generated
model is ever built (a page of 500 pods as models costs several times the JSON,
and we keep a dozen fields of each). This module knows the List and watch-event
envelopes, never the Pod schema: that lives in ``adapter.kube.podinfo`` alone.

Every failure leaves here as an ``adapter.kube.errors`` exception.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, Protocol

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from adapter.kube.errors import KubeAPIError, KubeUnavailable, error_from_status, translate

# Errors the client and aiohttp raise for a request that did not complete.
_TRANSPORT_ERRORS = (ApiException, aiohttp.ClientError, TimeoutError, OSError)

JSONObject = Mapping[str, Any]


class PodsAPI(Protocol):
    """One LIST page and one WATCH stream of pods, as JSON objects.

    ``namespace`` None means all namespaces. Selectors are passed through verbatim.
    """

    async def list_pods(
        self,
        *,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        limit: int,
        continue_token: str | None,
    ) -> JSONObject:
        """One page: a ``PodList`` object (``metadata.resourceVersion``/``continue``, ``items``)."""
        ...

    def watch_pods(
        self,
        *,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        resource_version: str,
        timeout_seconds: int,
    ) -> AsyncGenerator[JSONObject, None]:
        """Watch events (``{"type": ..., "object": ...}``) from ``resource_version`` on.

        Bookmarks are always requested. The iterator ends when the server ends the
        watch; a dropped connection raises KubeUnavailable. Close it with
        ``contextlib.aclosing`` when leaving early.
        """
        ...


class KubePodsAPI:
    """``PodsAPI`` over a ``kubernetes.aio.client.ApiClient`` (owned by the caller).

    ``request_timeout`` bounds a LIST; a WATCH may last ``timeout_seconds`` plus
    ``request_timeout`` before the client gives up on a silent connection.
    """

    def __init__(self, api_client: client.ApiClient, *, request_timeout: float = 60.0) -> None:
        self._core = client.CoreV1Api(api_client)
        self._request_timeout = float(request_timeout)

    async def list_pods(
        self,
        *,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        limit: int,
        continue_token: str | None,
    ) -> JSONObject:
        params: dict[str, Any] = {
            "label_selector": label_selector,
            "field_selector": field_selector,
            "limit": limit,
            "_continue": continue_token,
            "_request_timeout": self._request_timeout,
        }
        try:
            response = await self._open(namespace, params)
            async with response:
                body = await response.read()
                if response.status != 200:
                    raise error_from_status(response.status, body)
        except _TRANSPORT_ERRORS as e:
            raise translate(e) from e
        try:
            page = json.loads(body)
        except ValueError as e:
            raise KubeAPIError("the API server sent a list that is not JSON") from e
        if not isinstance(page, dict) or not isinstance(page.get("items", []), list):
            raise KubeAPIError("the API server sent a list without items")
        return page

    async def watch_pods(
        self,
        *,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        resource_version: str,
        timeout_seconds: int,
    ) -> AsyncGenerator[JSONObject, None]:
        params: dict[str, Any] = {
            "label_selector": label_selector,
            "field_selector": field_selector,
            "resource_version": resource_version,
            "watch": True,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout_seconds,
            "_request_timeout": float(timeout_seconds) + self._request_timeout,
        }
        try:
            response = await self._open(namespace, params)
        except _TRANSPORT_ERRORS as e:
            raise translate(e) from e
        async with response:
            if response.status != 200:
                try:
                    body = await response.read()
                except _TRANSPORT_ERRORS as e:
                    raise translate(e) from e
                raise error_from_status(response.status, body)
            async for line in _lines(response):
                yield _event(line)

    async def _open(self, namespace: str | None, params: dict[str, Any]) -> aiohttp.ClientResponse:
        if namespace is None:
            response = await self._core.list_pod_for_all_namespaces_without_preload_content(
                **params
            )
        else:
            response = await self._core.list_namespaced_pod_without_preload_content(
                namespace, **params
            )
        assert isinstance(response, aiohttp.ClientResponse)
        return response


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Newline-delimited lines of a streamed body, whatever size the chunks are.

    aiohttp's ``readline`` caps a line at its buffer size; one pod can exceed it.
    """
    buffer = bytearray()
    try:
        async for chunk in response.content.iter_any():
            buffer += chunk
            start = 0
            while (end := buffer.find(b"\n", start)) >= 0:
                if end > start:
                    yield bytes(buffer[start:end])
                start = end + 1
            del buffer[:start]
    except _TRANSPORT_ERRORS as e:
        raise KubeUnavailable(f"the watch connection broke: {translate(e)}") from e
    if buffer.strip():
        yield bytes(buffer)


def _event(line: bytes) -> JSONObject:
    try:
        event = json.loads(line)
    except ValueError as e:
        raise KubeAPIError("the API server sent a watch event that is not JSON") from e
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise KubeAPIError("the API server sent a watch event without an object")
    return event
