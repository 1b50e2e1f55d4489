"""Kubernetes Status bodies: the one place where errors become HTTP responses."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from adapter.core.errors import AdapterError

JSON = "application/json"
# kube-apiserver marks every API response uncacheable (and per-user: authorization decided it).
API_HEADERS = {"Cache-Control": "no-cache, private"}


def json_body(body: dict[str, Any]) -> bytes:
    """JSON bytes as Go's ``json.Encoder`` writes them: compact, with a trailing newline."""
    return orjson.dumps(body, option=orjson.OPT_APPEND_NEWLINE)


def status_body(error: AdapterError) -> dict[str, Any]:
    """``metav1.Status`` for ``error``, exactly as kube-apiserver writes it."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": error.message,
        "reason": error.reason,
        "code": error.code,
    }


def error_response(error: AdapterError) -> web.Response:
    """The Status response for ``error``, with the headers its code calls for.

    401 carries ``WWW-Authenticate``; 429 carries ``Retry-After: 1`` as
    kube-apiserver's max-in-flight filter sends it (client-go retries a 429
    only when that header is present, so the HPA retries a second later
    instead of failing its sync).
    """
    headers = dict(API_HEADERS)
    if error.code == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="kubernetes"'
    elif error.code == 429:
        headers["Retry-After"] = "1"
    return web.Response(
        status=error.code,
        body=json_body(status_body(error)),
        content_type=JSON,
        headers=headers,
    )
