"""Reading what ``explain`` needs: the HPA, its scale target and pods, the adapter's view.

Everything goes through ``kubernetes.aio`` clients built from the kubeconfig
(``adapter.kube.credentials``), so the caller's own credentials and RBAC apply.
The adapter's explanation is read through the API server (the aggregator
proxies ``/apis/custom.metrics.k8s.io``) or, with ``--adapter-url``, from the
adapter directly with the same client credentials.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from adapter.explain.report import object_resource
from adapter.hpa.calculator import PodState
from adapter.hpa.spec import MetricSpec, MetricType, ScaleTarget
from adapter.kube.errors import KubeAPIError
from adapter.kube.k8s import ApiException, Configuration, KubeClient
from adapter.kube.rest import open_request, parse_object

GROUP = "/apis/custom.metrics.k8s.io/v1beta2"


class ClusterError(Exception):
    """A read failed; the message is the API's Status message or the transport error."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


async def get_json(
    client: KubeClient, path: str, query: Sequence[tuple[str, str]] = ()
) -> Mapping[str, Any]:
    """GET ``path`` with the client's credentials; the decoded JSON object.

    Raises ClusterError with the Status message for non-2xx answers. The request
    goes through ``adapter.kube.rest``, the transport of every Kubernetes client here.
    """
    try:
        response = await open_request(client, "GET", path, query=query)
        async with response:
            data = await response.read()
    except ApiException as e:
        raise ClusterError(_message(e.body, str(e.reason)), e.status or 0) from e
    except OSError as e:  # aiohttp's connection errors are OSErrors
        raise ClusterError(f"cannot reach {client.configuration.host}: {e}") from e
    if not 200 <= response.status < 300:
        raise ClusterError(_message(data, str(response.reason)), response.status)
    try:
        return parse_object(data, path)
    except KubeAPIError as e:
        raise ClusterError(str(e)) from e


def _message(data: object, fallback: str) -> str:
    try:
        body = json.loads(data) if isinstance(data, bytes | str) else None
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return fallback


def direct_client(api: KubeClient, adapter_url: str, ca_file: str | None) -> KubeClient:
    """A client for the adapter itself, with the kubeconfig's client credentials."""
    configuration: Configuration = copy.copy(api.configuration)
    configuration.host = adapter_url.rstrip("/")
    if ca_file is not None:
        configuration.ssl_ca_cert = ca_file
        configuration.ca_cert_data = None
    return KubeClient(configuration)


@dataclass(frozen=True, slots=True)
class Scale:
    spec_replicas: int
    status_replicas: int
    selector: str


async def read_hpa(api: KubeClient, namespace: str, name: str) -> Mapping[str, Any]:
    return await get_json(
        api, f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{name}"
    )


async def read_scale(api: KubeClient, namespace: str, target: ScaleTarget) -> Scale:
    """The target's ``/scale`` subresource: spec and status replicas, the pod selector."""
    group_version = target.api_version or "apps/v1"
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    plural = target.kind.lower() + "s"
    body = await get_json(api, f"{prefix}/namespaces/{namespace}/{plural}/{target.name}/scale")
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    return Scale(
        int(spec.get("replicas") or 0),
        int(status.get("replicas") or 0),
        str(status.get("selector") or ""),
    )


async def list_pods(api: KubeClient, namespace: str, selector: str) -> list[PodState]:
    """The pods the HPA's pod lister returns for the selector (every phase)."""
    body = await get_json(
        api, f"/api/v1/namespaces/{namespace}/pods", [("labelSelector", selector)]
    )
    return [pod_state(item) for item in body.get("items") or []]


def pod_state(pod: Mapping[str, Any]) -> PodState:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return PodState(
        name=str(meta.get("name", "")),
        phase=str(status.get("phase", "")),
        ready=ready,
        deleting=meta.get("deletionTimestamp") is not None,
    )


def metric_selector_text(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector object as the selector string the HPA sends."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            parts.append(f"{key} {str(op).lower()} ({','.join(sorted(values))})")
    return ",".join(parts)


def explanation_path(
    metric: MetricSpec, namespace: str, selector: str
) -> tuple[str, list[tuple[str, str]]] | None:
    """The adapter path and query explaining ``metric`` as the HPA reads it (None: not served)."""
    query = [("explain", "true")]
    metric_selector = metric_selector_text(metric.metric_selector)
    if metric_selector:
        query.append(("metricLabelSelector", metric_selector))
    name = quote(metric.name, safe="")
    if metric.type is MetricType.PODS:
        return f"{GROUP}/namespaces/{namespace}/pods/%2A/{name}", [
            ("labelSelector", selector),
            *query,
        ]
    if metric.type is MetricType.OBJECT and metric.described_object is not None:
        resource = object_resource(metric.described_object.kind)
        if resource is None:
            return None
        obj = metric.described_object.name
        return f"{GROUP}/namespaces/{namespace}/{resource}/{obj}/{name}", query
    return None


async def adapter_view(
    client: KubeClient, metric: MetricSpec, namespace: str, selector: str
) -> tuple[Mapping[str, Any] | None, str | None]:
    """(the adapter's explanation, None) or (None, why it could not be read)."""
    where = explanation_path(metric, namespace, selector)
    if where is None:
        return None, "not a metric this adapter serves"
    path, query = where
    try:
        return await get_json(client, path, query), None
    except ClusterError as e:
        return None, str(e)
