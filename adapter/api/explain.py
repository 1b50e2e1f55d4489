"""The explain view of a metric read: ``GET <metric read path>?explain=true``.

Served under the read's own path, so it goes through the aggregator like the
read::

    kubectl get --raw '/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/*/m?explain=true'

It is authenticated and authorized exactly as that read: the authorizer
builds the SubjectAccessReview from the path alone, ignoring the query, so the
attributes are ``{group: custom.metrics.k8s.io, version, resource: <resource>,
subresource: <metric>, name: <name or *>, namespace, verb: get}``. Whoever may
read the metric may see why it has or lacks values; nobody else.

Body (JSON; ``kind: MetricExplanation``, ``apiVersion: inference-metrics-adapter/v1alpha1``)::

    metric, resource, namespace, name, labelSelector, metricLabelSelector
    source                      the metric's source (prometheus, gpu)
    rule                        the source's facts: query (exact PromQL), form,
                                windowSeconds, snapshotAgeSeconds, family, preset...
    servingPolicy               {omitUnready, warmupSeconds}
    pods[]                      every pod the selector matches, sorted:
        name, object, phase, ready, readySince (RFC 3339 or null), deleting,
        value (Quantity or null), milliValue (what the HPA reads, or null),
        timestamp (or null), reason (null when served; else deleted, not_ready,
        warming_up, nan, stale, no_value), and the source's per-pod facts
        when it has them (e.g. family, preset)
    items[]                     the objects the read serves: name, value, milliValue, timestamp
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from adapter.api.state import EXPLAINER
from adapter.core.explain import Explanation
from adapter.core.model import MetricValue
from adapter.core.quantity import format_quantity, milli_value, rfc3339
from adapter.core.request import MetricPath
from adapter.core.selectors import Selector

KIND = "MetricExplanation"
API_VERSION = "inference-metrics-adapter/v1alpha1"
_TRUE = frozenset({"", "1", "true", "yes"})


def wants_explanation(query: str) -> bool:
    """True when the query carries ``explain`` (bare, ``1``, ``true`` or ``yes``)."""
    for key, value in parse_qsl(query, keep_blank_values=True, max_num_fields=64):
        if key == "explain":
            return value.lower() in _TRUE
    return False


async def explanation(
    request: web.Request, path: MetricPath, label_selector: Selector, metric_selector: Selector
) -> web.Response:
    explained = await request.app[EXPLAINER].explain(path, label_selector, metric_selector)
    body = render(path, label_selector, metric_selector, explained)
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def render(
    path: MetricPath, label_selector: Selector, metric_selector: Selector, e: Explanation
) -> dict[str, Any]:
    return {
        "kind": KIND,
        "apiVersion": API_VERSION,
        "metric": e.spec.name,
        "resource": path.resource,
        "namespace": path.namespace,
        "name": path.name,
        "labelSelector": str(label_selector),
        "metricLabelSelector": str(metric_selector),
        "source": e.spec.source,
        "rule": dict(e.rule),
        "servingPolicy": {
            "omitUnready": e.policy.omit_unready,
            "warmupSeconds": e.policy.warmup_seconds,
        },
        "pods": [
            {
                "name": row.pod.name,
                "object": row.object_name,
                "phase": row.pod.phase,
                "ready": row.pod.ready,
                "readySince": None if row.pod.ready_since is None else rfc3339(row.pod.ready_since),
                "deleting": row.pod.deleting,
                **_value(row.value),
                "reason": row.reason,
                **row.facts,
            }
            for row in e.pods
        ],
        "items": [{"name": value.obj.name, **_value(value)} for value in e.values],
    }


def _value(value: MetricValue | None) -> dict[str, Any]:
    if value is None:
        return {"value": None, "milliValue": None, "timestamp": None}
    text = format_quantity(value.sample.value)
    return {
        "value": text,
        "milliValue": milli_value(text),
        "timestamp": rfc3339(value.sample.timestamp),
    }
