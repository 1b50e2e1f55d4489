"""Our exceptions for talking to the Kubernetes API, and the one place that makes them.

The ``kubernetes`` client and aiohttp raise their own types (``ApiException``,
``ClientError``, ``TimeoutError``, half-read payloads); nothing outside
``adapter.kube`` sees those. Translation happens at the boundary, with the cause
chained (``raise ... from e``) so logs keep the original traceback.

::

    KubeError
    ├── KubeConfigError        no usable kubeconfig / in-cluster credentials (a StartupError)
    ├── PodsFileError          a --pods-file that cannot be read or understood (a StartupError)
    ├── PodFormatError         a pod object missing what we need (skipped, logged)
    ├── ObjectRejected         an object its consumer cannot use (the reflector relists later)
    └── KubeAPIError           the API server answered with an error Status
        ├── ResourceExpired    410 Gone: resourceVersion or continue token too old → relist
        └── KubeUnavailable    not reachable, timed out, dropped, 429 or 5xx → retry later
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from adapter.core.errors import StartupError
from adapter.kube.k8s import ApiException


class KubeError(Exception):
    """Base class of every error ``adapter.kube`` raises."""


class KubeConfigError(KubeError, StartupError):
    """Credentials for the API server could not be loaded (file, context or in-cluster)."""


class PodsFileError(KubeError, StartupError):
    """A pods file (standalone mode) is missing, unreadable or not a list of pods."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class PodFormatError(KubeError, ValueError):
    """A pod object lacks a field we need or carries one we cannot parse."""


class ObjectRejected(KubeError):
    """What the API server sent is well-formed but its consumer refuses it (e.g. a
    ConfigMap whose data does not parse). The reflector logs it and relists after a pause."""


class KubeAPIError(KubeError):
    """The API server refused a request. ``status`` is the HTTP code (None when unknown).

    ``reason`` and ``message`` come from the Status body when the server sent one.
    """

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason


class ResourceExpired(KubeAPIError):
    """410 Gone: the resourceVersion (or continue token) was compacted away. Relist."""


class KubeUnavailable(KubeAPIError):
    """Transient: connection refused or dropped, timeout, throttling or a server error.

    The right reaction is to back off and try the same request again.
    """


def _is_transient(status: int | None) -> bool:
    return status is None or status == 429 or status >= 500


def error_from_status(
    status: int | None,
    body: bytes | str | Mapping[str, Any] | None,
) -> KubeAPIError:
    """The exception for a non-2xx answer (HTTP ``status``) or a watch ERROR event.

    ``body`` is the response body or the event's object; a ``Status`` object's own
    ``code`` wins over ``status`` (watch ERROR events arrive over HTTP 200, so
    ``status`` is None for them). No code at all counts as transient.
    """
    obj = _as_mapping(body)
    code = obj.get("code") if isinstance(obj.get("code"), int) else None
    status = code or status
    reason = str(obj.get("reason") or "")
    message = str(obj.get("message") or "") or f"the server answered HTTP {status}"
    if status == 410:
        return ResourceExpired(message, status=status, reason=reason or "Expired")
    if _is_transient(status):
        return KubeUnavailable(message, status=status, reason=reason)
    return KubeAPIError(message, status=status, reason=reason)


def _as_mapping(body: bytes | str | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        return body
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def translate(exc: BaseException) -> KubeError:
    """Our error for a library exception; raise the result ``from exc``.

    Accepts ``kubernetes`` ``ApiException``, aiohttp client errors and timeouts.
    Anything else becomes a generic :class:`KubeAPIError` naming the type only.
    """
    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, ApiException):
        status = exc.status if isinstance(exc.status, int) and exc.status else None
        if status is None:
            return KubeUnavailable(str(exc.reason or "request failed"))
        return error_from_status(status, exc.body)
    if isinstance(exc, aiohttp.ClientResponseError):
        return error_from_status(exc.status, None)
    if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError):
        return KubeUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": "))
    return KubeAPIError(f"unexpected {type(exc).__name__} talking to the API server")
