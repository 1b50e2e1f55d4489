"""One request to the API server as raw JSON: the transport every ``adapter.kube`` client shares.

Requests go through ``adapter.kube.k8s.KubeClient`` (the library's credentials,
TLS and token refresh) by resource path, without the generated models: nothing is
validated or copied into a model on the way in or out. Every failure leaves
here as an ``adapter.kube.errors`` exception; aiohttp's and the client's own
types never do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from adapter.kube.errors import KubeAPIError, translate
from adapter.kube.k8s import ApiException, KubeClient

# Errors the client and aiohttp raise for a request that did not complete.
TRANSPORT_ERRORS = (ApiException, aiohttp.ClientError, TimeoutError, OSError)

JSONObject = Mapping[str, Any]


async def open_request(
    api_client: KubeClient,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, Any]] = (),
    body: JSONObject | None = None,
    request_timeout: float | None = None,
) -> aiohttp.ClientResponse:
    """Send one request; the caller reads and releases the response (``async with``).

    ``query`` pairs whose value is None are left out; ``request_timeout`` None is
    the client's default. Raises the client's and aiohttp's own errors (callers
    translate them with the response's context).
    """
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return await api_client.request(
        method,
        path,
        query=[(k, v) for k, v in query if v is not None],
        headers=headers,
        body=body,
        request_timeout=request_timeout,
    )


def parse_object(body: bytes, what: str) -> JSONObject:
    """The JSON object of a response body; KubeAPIError when it is not one."""
    try:
        parsed = json.loads(body)
    except ValueError as e:
        raise KubeAPIError(f"the API server sent {what} that is not JSON") from e
    if not isinstance(parsed, dict):
        raise KubeAPIError(f"the API server sent {what} that is not an object")
    return parsed


async def read_body(response: aiohttp.ClientResponse) -> bytes:
    """The whole body; a connection that breaks while reading is KubeUnavailable."""
    try:
        return await response.read()
    except TRANSPORT_ERRORS as e:
        raise translate(e) from e
