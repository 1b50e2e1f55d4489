"""May this user read this? SubjectAccessReview, cached, for exactly what is served.

Resource attributes come from ``adapter.core.request.parse_metric_path``, the
parser the handlers use, so the object authorized is the object served:

========================================  ==========  ==========  ==========  =========
path (under /apis/custom.metrics.k8s.io/v)  resource    name        subresource namespace
========================================  ==========  ==========  ==========  =========
namespaces/{ns}/{resource}/{name|*}/{m}    {resource}  {name|*}    {m}         {ns}
{resource}/{name|*}/{m}                    {resource}  {name|*}    {m}         ""
namespaces/{ns}/metrics/{m}                metrics     {m}         ""          {ns}
========================================  ==========  ==========  ==========  =========

The last row is how kube's RequestInfo parses that path. Everything else
(discovery, ``/apis``, ``/openapi/*``, ``/metrics``) is a non-resource URL.
A malformed path under the group raises ``BadRequest`` (no review: nothing is
served for it). Errors of the API are not cached and surface as
``InternalError`` (as k8s.io/apiserver answers 500 on authorizer errors).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from cachetools import TTLCache

from adapter.auth.singleflight import Coalescer
from adapter.auth.user import SYSTEM_MASTERS, UserInfo
from adapter.core.errors import InternalError
from adapter.core.model import API_GROUP
from adapter.core.request import parse_metric_path
from adapter.kube.errors import KubeError

log = logging.getLogger(__name__)

ALWAYS_ALLOW_PATHS = frozenset({"/healthz", "/livez", "/readyz"})

DecisionSource = Literal["cache", "review", "masters", "always", "standalone"]

_RESOURCE_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update"}


@dataclass(frozen=True, slots=True)
class ResourceAttributes:
    version: str
    resource: str
    name: str
    subresource: str = ""
    namespace: str = ""
    group: str = API_GROUP


@dataclass(frozen=True, slots=True)
class RequestAttributes:
    """One of ``resource`` (a metric read) or ``path`` (a non-resource URL)."""

    verb: str
    path: str
    resource: ResourceAttributes | None = None

    def forbidden_message(self, user: str) -> str:
        """The message kube-apiserver's Forbidden response carries, word for word."""
        res = self.resource
        if res is None:
            return f'forbidden: User "{user}" cannot {self.verb} path "{self.path}"'
        full = f"{res.resource}/{res.subresource}" if res.subresource else res.resource
        scope = f'in the namespace "{res.namespace}"' if res.namespace else "at the cluster scope"
        return (
            f'{res.resource}.{res.group} "{res.name}" is forbidden: User "{user}" cannot '
            f'{self.verb} resource "{full}" in API group "{res.group}" {scope}'
        )

    def sar_attributes(self) -> dict[str, Any]:
        res = self.resource
        if res is None:
            return {"nonResourceAttributes": {"path": self.path, "verb": self.verb}}
        attributes = {
            "group": res.group,
            "version": res.version,
            "resource": res.resource,
            "subresource": res.subresource,
            "name": res.name,
            "namespace": res.namespace,
            "verb": self.verb,
        }
        return {"resourceAttributes": {k: v for k, v in attributes.items() if v}}


def request_attributes(method: str, raw_path: str) -> RequestAttributes:
    """Attributes of a request; ``raw_path`` still percent-encoded, without the query.

    Raises ``BadRequest`` for a malformed metric path.
    """
    metric = parse_metric_path(raw_path)
    if metric is None:
        return RequestAttributes(verb=method.lower(), path=raw_path)
    verb = _RESOURCE_VERBS.get(method.upper(), method.lower())
    if metric.namespace_metric:
        resource = ResourceAttributes(
            version=metric.version,
            resource="metrics",
            name=metric.metric,
            namespace=metric.namespace or "",
        )
    else:
        resource = ResourceAttributes(
            version=metric.version,
            resource=metric.resource,
            name=metric.name,
            subresource=metric.metric,
            namespace=metric.namespace or "",
        )
    return RequestAttributes(verb=verb, path=raw_path, resource=resource)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    source: DecisionSource
    reason: str = ""


class Authorizer(Protocol):
    async def authorize(self, user: UserInfo, attributes: RequestAttributes) -> Decision:
        """Raises ``InternalError`` when no decision can be made."""
        ...


class SubjectAccessReviewAPI(Protocol):
    async def create_subject_access_review(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """POST a SubjectAccessReview, return the reviewed object.

        Raises ``adapter.kube.errors.KubeError`` when the API cannot answer.
        """
        ...


class DelegatingAuthorizer:
    """SubjectAccessReview per (user, attributes); allow and deny cached apart."""

    def __init__(
        self,
        api: SubjectAccessReviewAPI,
        *,
        allow_ttl: float = 10.0,
        deny_ttl: float = 10.0,
        maxsize: int = 8192,
        clock: Callable[[], float] = time.monotonic,
        always_allow_paths: frozenset[str] = ALWAYS_ALLOW_PATHS,
        always_allow_groups: frozenset[str] = frozenset({SYSTEM_MASTERS}),
    ) -> None:
        self._api = api
        self._allowed: TTLCache[tuple[object, ...], str] = TTLCache(maxsize, allow_ttl, timer=clock)
        self._denied: TTLCache[tuple[object, ...], str] = TTLCache(maxsize, deny_ttl, timer=clock)
        self._flights: Coalescer[tuple[object, ...], Decision] = Coalescer()
        self._always_paths = always_allow_paths
        self._always_groups = always_allow_groups
        self.reviews = 0

    async def authorize(self, user: UserInfo, attributes: RequestAttributes) -> Decision:
        if attributes.resource is None and attributes.path in self._always_paths:
            return Decision(True, "always")
        if self._always_groups.intersection(user.groups):
            return Decision(True, "masters")
        key = (user.cache_key(), attributes.verb, attributes.path, attributes.resource)
        if (reason := self._allowed.get(key)) is not None:
            return Decision(True, "cache", reason)
        if (reason := self._denied.get(key)) is not None:
            return Decision(False, "cache", reason)
        return await self._flights.run(key, lambda: self._review(key, user, attributes))

    async def _review(
        self, key: tuple[object, ...], user: UserInfo, attributes: RequestAttributes
    ) -> Decision:
        spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups)}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra.items()}
        spec.update(attributes.sar_attributes())
        self.reviews += 1
        try:
            reply = await self._api.create_subject_access_review(
                {
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SubjectAccessReview",
                    "spec": spec,
                }
            )
        except KubeError as e:
            log.warning("SubjectAccessReview failed for user %r: %s", user.name, e)
            raise InternalError("authorization is unavailable, try again later") from e
        status = reply.get("status")
        status = status if isinstance(status, Mapping) else {}
        reason = str(status.get("reason") or "")
        if status.get("allowed") is True and status.get("denied") is not True:
            self._allowed[key] = reason
            return Decision(True, "review", reason)
        if status.get("evaluationError"):
            log.info("SubjectAccessReview evaluation error: %s", status["evaluationError"])
        self._denied[key] = reason
        return Decision(False, "review", reason)


class StandaloneAuthorizer:
    """No Kubernetes API (``--pods-file`` mode): every authenticated caller may read."""

    def __init__(self) -> None:
        log.warning(
            "no Kubernetes API: authorization is disabled, every caller with a client "
            "certificate from --client-ca-file may read every metric; anonymous callers get 401"
        )

    async def authorize(self, user: UserInfo, attributes: RequestAttributes) -> Decision:
        del user
        if attributes.resource is None and attributes.path in ALWAYS_ALLOW_PATHS:
            return Decision(True, "always")
        return Decision(True, "standalone")
