"""Wire shapes of custom.metrics.k8s.io, per version (protocol.md section 3).

v1beta2 items carry ``metric: {name, selector}`` and ``windowSeconds``; v1beta1
items carry ``metricName``, a top-level ``selector`` (always present, null when
empty) and ``window``. Everything else is shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

from adapter.core.catalogue import Catalogue
from adapter.core.model import API_GROUP, PREFERRED_VERSION, VERSIONS, MetricValue
from adapter.core.quantity import format_quantity, rfc3339
from adapter.core.selectors import Operator, parse_selector


class DescribedObject(TypedDict):
    kind: str
    namespace: str
    name: str
    apiVersion: str


def described_object(value: MetricValue) -> DescribedObject:
    obj = value.obj
    return {
        "kind": obj.kind.kind,
        "namespace": obj.namespace or "",
        "name": obj.name,
        "apiVersion": obj.kind.api_version,
    }


def _selector(text: str | None) -> dict[str, Any] | None:
    """The metricLabelSelector as a metav1.LabelSelector, or null when empty.

    Converted as apimachinery's ParseToLabelSelector does: ``=`` to matchLabels,
    ``!=`` to NotIn; empty fields are omitted, as Go's omitempty does.
    """
    return _selector_fields(text) if text else None


def _selector_fields(text: str) -> dict[str, Any]:
    match_labels: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    names = {
        Operator.IN: "In",
        Operator.NOT_IN: "NotIn",
        Operator.EXISTS: "Exists",
        Operator.DOES_NOT_EXIST: "DoesNotExist",
        Operator.NOT_EQUALS: "NotIn",
    }
    for req in parse_selector(text).requirements:
        if req.operator is Operator.EQUALS:
            match_labels[req.key] = req.values[0]
        else:
            entry: dict[str, Any] = {"key": req.key, "operator": names[req.operator]}
            if req.values:
                entry["values"] = list(req.values)
            expressions.append(entry)
    result: dict[str, Any] = {}
    if match_labels:
        result["matchLabels"] = match_labels
    if expressions:
        result["matchExpressions"] = expressions
    return result


def metric_value_list(version: str, values: Sequence[MetricValue]) -> dict[str, Any]:
    """A MetricValueList for ``version``. All values of one read share one selector."""
    render = _item_v1beta2 if version == "v1beta2" else _item_v1beta1
    selector = _selector(values[0].metric_selector) if values else None
    return {
        "kind": "MetricValueList",
        "apiVersion": f"{API_GROUP}/{version}",
        "metadata": {},
        "items": [render(value, selector) for value in values],
    }


def _item_v1beta2(value: MetricValue, selector: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "describedObject": described_object(value),
        "metric": {"name": value.metric, "selector": selector},
        "timestamp": rfc3339(value.sample.timestamp),
        "windowSeconds": value.sample.window_seconds,
        "value": format_quantity(value.sample.value),
    }


def _item_v1beta1(value: MetricValue, selector: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "describedObject": described_object(value),
        "metricName": value.metric,
        "timestamp": rfc3339(value.sample.timestamp),
        "window": value.sample.window_seconds,
        "value": format_quantity(value.sample.value),
        "selector": selector,
    }


def api_resource_list(version: str, catalogue: Catalogue) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{API_GROUP}/{version}",
        "resources": [
            {
                "name": entry.name,
                "singularName": "",
                "namespaced": entry.namespaced,
                "kind": "MetricValueList",
                "verbs": ["get"],
            }
            for entry in catalogue.discovery()
        ],
    }


def _group_versions() -> list[dict[str, str]]:
    return [{"groupVersion": f"{API_GROUP}/{v}", "version": v} for v in VERSIONS]


def api_group() -> dict[str, Any]:
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": API_GROUP,
        "versions": _group_versions(),
        "preferredVersion": {
            "groupVersion": f"{API_GROUP}/{PREFERRED_VERSION}",
            "version": PREFERRED_VERSION,
        },
    }


def api_group_list() -> dict[str, Any]:
    group = api_group()
    del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}
