"""LIST and WATCH of any resource as raw JSON: the transport under every reflector.

``ListWatchAPI`` is the seam: a reflector asks for one list page or one watch
stream of a ``Resource`` (pods, the trust ConfigMap, ...) and gets plain dicts
back. ``KubeListWatch`` is the real one, on ``adapter.kube.rest`` (no generated
model is ever built: a page of 500 pods as models costs several times the JSON,
and we keep a dozen fields of each). This module knows the List and watch-event
envelopes, never an object's schema (the Pod's lives in ``adapter.kube.podinfo``).

Every failure leaves here as an ``adapter.kube.errors`` exception.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from adapter.kube.errors import KubeAPIError, KubeUnavailable, error_from_status, translate
from adapter.kube.k8s import KubeClient
from adapter.kube.rest import TRANSPORT_ERRORS, JSONObject, open_request, parse_object, read_body

__all__ = ["JSONObject", "KubeListWatch", "ListWatchAPI", "Resource"]


@dataclass(frozen=True, slots=True)
class Resource:
    """A collection to list and watch, and the selectors passed to the server verbatim.

    ``group_version`` "v1" is the core group (``/api/v1``); others live under
    ``/apis/<group>/<version>``. ``namespace`` None means all namespaces.
    """

    plural: str
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    group_version: str = "v1"

    @property
    def path(self) -> str:
        root = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        scope = f"/namespaces/{self.namespace}" if self.namespace is not None else ""
        return f"{root}{scope}/{self.plural}"


class ListWatchAPI(Protocol):
    """One LIST page and one WATCH stream of a resource, as JSON objects."""

    async def list(
        self, *, resource: Resource, limit: int, continue_token: str | None
    ) -> JSONObject:
        """One page: a List object (``metadata.resourceVersion``/``continue``, ``items``)."""
        ...

    def watch(
        self, *, resource: Resource, resource_version: str, timeout_seconds: int
    ) -> AsyncGenerator[JSONObject, None]:
        """Watch events (``{"type": ..., "object": ...}``) from ``resource_version`` on.

        Bookmarks are always requested. The iterator ends when the server ends the
        watch; a dropped connection raises KubeUnavailable. Close it with
        ``contextlib.aclosing`` when leaving early.
        """
        ...


class KubeListWatch:
    """``ListWatchAPI`` over a ``KubeClient`` (owned by the caller).

    ``request_timeout`` bounds a LIST; a WATCH may last ``timeout_seconds`` plus
    ``request_timeout`` before the client gives up on a silent connection.
    """

    def __init__(self, api_client: KubeClient, *, request_timeout: float = 60.0) -> None:
        self._client = api_client
        self._request_timeout = float(request_timeout)

    async def _open(
        self, resource: Resource, query: list[tuple[str, Any]], request_timeout: float
    ) -> aiohttp.ClientResponse:
        """A GET of ``resource`` with its selectors and ``query``; the caller releases it."""
        try:
            return await open_request(
                self._client,
                "GET",
                resource.path,
                query=[*_selectors(resource), *query],
                request_timeout=request_timeout,
            )
        except TRANSPORT_ERRORS as e:
            raise translate(e) from e

    async def list(
        self, *, resource: Resource, limit: int, continue_token: str | None
    ) -> JSONObject:
        query = [("limit", limit), ("continue", continue_token)]
        response = await self._open(resource, query, self._request_timeout)
        async with response:
            body = await read_body(response)
            if response.status != 200:
                raise error_from_status(response.status, body)
        page = parse_object(body, "a list")
        if not isinstance(page.get("items", []), list):
            raise KubeAPIError("the API server sent a list without items")
        return page

    async def watch(
        self, *, resource: Resource, resource_version: str, timeout_seconds: int
    ) -> AsyncGenerator[JSONObject, None]:
        query = [
            ("resourceVersion", resource_version),
            ("timeoutSeconds", timeout_seconds),
            ("allowWatchBookmarks", True),
            ("watch", True),
        ]
        timeout = float(timeout_seconds) + self._request_timeout
        response = await self._open(resource, query, timeout)
        async with response:
            if response.status != 200:
                raise error_from_status(response.status, await read_body(response))
            async for line in _lines(response):
                yield _event(line)


def _selectors(resource: Resource) -> list[tuple[str, Any]]:
    return [("labelSelector", resource.label_selector), ("fieldSelector", resource.field_selector)]


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
    except TRANSPORT_ERRORS as e:
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
