"""The adapter's error vocabulary.

Every failure a caller can see is one of these. ``adapter.api.status`` maps them
to Kubernetes Status bodies in exactly one place. Messages are what the caller
reads: they never contain backend URLs, query text or stack traces (log those).

::

    AdapterError
    ├── BadRequest          400  malformed path, selector or parameter
    ├── Unauthorized        401  no or invalid credentials
    ├── Forbidden           403  authenticated, not allowed
    ├── NotFound            404  unknown metric, resource or object
    ├── MethodNotAllowed    405  anything but GET/HEAD on a read-only API
    ├── NotAcceptable       406  content negotiation failed
    ├── TooManyRequests     429  concurrency limit reached
    ├── InternalError       500  a bug or a backend failure (generic message)
    └── ServiceUnavailable  503  not ready yet

``StartupError`` is apart: not an answer to a caller but the reason the process
cannot start (a rules file, certificate, kubeconfig or pods file it cannot use).
``serve`` reports one as a single line and exits 2; any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

from typing import ClassVar


class StartupError(Exception):
    """The adapter cannot start with these settings or files; the message says why.

    Subclasses: ``adapter.rulesfile.ConfigError``, ``adapter.api.tls.TLSConfigError``,
    ``adapter.kube.errors.KubeConfigError`` and ``PodsFileError``.
    """


class AdapterError(Exception):
    """Base class. ``code`` and ``reason`` are the Status fields."""

    code: ClassVar[int] = 500
    reason: ClassVar[str] = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(AdapterError):
    code = 400
    reason = "BadRequest"


class Unauthorized(AdapterError):
    code = 401
    reason = "Unauthorized"


class Forbidden(AdapterError):
    code = 403
    reason = "Forbidden"


class NotFound(AdapterError):
    code = 404
    reason = "NotFound"


class MethodNotAllowed(AdapterError):
    code = 405
    reason = "MethodNotAllowed"


class NotAcceptable(AdapterError):
    code = 406
    reason = "NotAcceptable"


class TooManyRequests(AdapterError):
    code = 429
    reason = "TooManyRequests"


class InternalError(AdapterError):
    code = 500
    reason = "InternalError"


class ServiceUnavailable(AdapterError):
    code = 503
    reason = "ServiceUnavailable"


class SourceError(Exception):
    """A backend (Prometheus, a collector) failed. Never shown to callers as is."""


def metric_not_found(
    metric: str, group_resource: str, name: str | None = None, selector: str | None = None
) -> NotFound:
    """The 404 of custom-metrics-apiserver, word for word (protocol.md section 5)."""
    message = f"the server could not find the metric {metric} for {group_resource}"
    if name is not None:
        message += f" {name}"
    if selector:
        message += f" with selector {selector}"
    return NotFound(message)
