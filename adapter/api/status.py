"""Kubernetes Status bodies: the one place where errors become HTTP responses."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from adapter.core.errors import AdapterError

JSON = "application/json"


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
    headers = {"WWW-Authenticate": 'Bearer realm="kubernetes"'} if error.code == 401 else None
    return web.Response(
        status=error.code,
        body=orjson.dumps(status_body(error)),
        content_type=JSON,
        headers=headers,
    )
