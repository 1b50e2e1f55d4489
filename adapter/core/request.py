"""Parsing custom.metrics.k8s.io request paths into what the resolver needs.

Pure string handling: the HTTP edge passes the raw (still percent-encoded)
path. Both the handlers and the authorizer use :func:`parse_metric_path`, so the
object that is authorized is exactly the object that is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from adapter.core.errors import BadRequest, NotFound
from adapter.core.model import API_GROUP, VERSIONS, MetricName, Namespace
from adapter.core.names import (
    is_dns1123_label,
    is_dns1123_subdomain,
    is_metric_name,
    metric_name_is_path_safe,
)

GROUP_PREFIX = f"/apis/{API_GROUP}"
MAX_PATH_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class MetricPath:
    """A metric read, as the URL states it.

    ``name`` is ``"*"`` for a wildcard (``*`` or ``%2A`` on the wire).
    ``namespace_metric`` is True for ``namespaces/{ns}/metrics/{metric}``, a
    metric describing the namespace itself; ``resource`` is then ``"namespaces"``
    and ``name`` the namespace.
    """

    version: str
    resource: str
    name: str
    metric: MetricName
    namespace: Namespace | None = None
    namespace_metric: bool = False

    @property
    def wildcard(self) -> bool:
        return self.name == "*"


def split_group_path(path: str) -> tuple[str, list[str]] | None:
    """``/apis/custom.metrics.k8s.io/v1beta2/a/b`` -> ``("v1beta2", ["a", "b"])``.

    Returns None when the path is not under the group prefix or names no version.
    Segments are percent-decoded one at a time, so an encoded ``/`` cannot
    create a segment.
    """
    if not path.startswith(GROUP_PREFIX + "/"):
        return None
    rest = path[len(GROUP_PREFIX) + 1 :]
    if rest.endswith("/"):
        rest = rest[:-1]
    raw = rest.split("/") if rest else []
    if not raw:
        return None
    segments = [_decode(segment) for segment in raw]
    return segments[0], segments[1:]


def parse_metric_path(path: str) -> MetricPath | None:
    """Parse a metric read. None when the path is discovery (``/apis/<group>/<version>``).

    Raises ``BadRequest`` for an unknown version, too few or too many parts,
    empty segments, or names that cannot be Kubernetes names or metric names.
    """
    if len(path) > MAX_PATH_LENGTH:
        raise BadRequest(f"request path too long ({len(path)} > {MAX_PATH_LENGTH} bytes)")
    split = split_group_path(path)
    if split is None:
        return None
    version, parts = split
    if version not in VERSIONS:
        raise NotFound("the server could not find the requested resource")
    if not parts:
        return None
    if any(part == "" for part in parts):
        raise BadRequest("empty path segment")
    if parts[0] == "namespaces" and len(parts) >= 2:
        return _namespaced(version, parts)
    return _root_scoped(version, parts)


def _namespaced(version: str, parts: list[str]) -> MetricPath:
    namespace = _namespace(parts[1])
    rest = parts[2:]
    if len(rest) == 2 and rest[0] == "metrics":
        return MetricPath(
            version=version,
            resource="namespaces",
            name=namespace,
            metric=_metric(rest[1]),
            namespace=namespace,
            namespace_metric=True,
        )
    usage = "a namespaced metric request is namespaces/{namespace}/{resource}/{name|*}/{metric}"
    return _object_metric(version, rest, namespace, usage)


def _root_scoped(version: str, parts: list[str]) -> MetricPath:
    usage = "a cluster-scoped metric request is {resource}/{name|*}/{metric}"
    return _object_metric(version, parts, None, usage)


def _object_metric(
    version: str, parts: list[str], namespace: Namespace | None, usage: str
) -> MetricPath:
    """``{resource}/{name|*}/{metric}`` in ``namespace`` (None: cluster-scoped); anything
    else is BadRequest with ``usage``."""
    if len(parts) != 3:
        raise BadRequest(usage)
    resource, name, metric = parts
    return MetricPath(
        version=version,
        resource=_resource(resource),
        name=_object_name(name),
        metric=_metric(metric),
        namespace=namespace,
    )


def _decode(segment: str) -> str:
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError as e:
        raise BadRequest("request path is not valid UTF-8") from e


def _namespace(text: str) -> Namespace:
    if not is_dns1123_label(text):
        raise BadRequest(f"invalid namespace {_shown(text)}: must be a DNS-1123 label")
    return Namespace(text)


def _resource(text: str) -> str:
    if not is_dns1123_subdomain(text):
        raise BadRequest(f"invalid resource {_shown(text)}")
    return text


def _object_name(text: str) -> str:
    if text == "*":
        return text
    if not is_dns1123_subdomain(text):
        raise BadRequest(f"invalid object name {_shown(text)}: must be a DNS-1123 subdomain")
    return text


def _metric(text: str) -> MetricName:
    if not metric_name_is_path_safe(text):
        raise BadRequest(
            f"invalid metric name {_shown(text)}: may not be '.' or '..' or contain '/', '%' or '?'"
        )
    if not is_metric_name(text):
        raise BadRequest(f"invalid metric name {_shown(text)}")
    return MetricName(text)


def _shown(text: str, limit: int = 64) -> str:
    """Quote user input for an error message: printable, bounded."""
    shown = text if len(text) <= limit else text[:limit] + "..."
    return repr(shown)
