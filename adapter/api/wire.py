"""Wire shapes of custom.metrics.k8s.io, per version (protocol.md section 3).

v1beta2 items carry ``metric: {name, selector}`` and ``windowSeconds``; v1beta1
items carry ``metricName``, a top-level ``selector`` and ``window``. Everything
else is shared.

Presence follows Go's encoding of the k8s.io/metrics types, field for field:
``selector`` has no ``omitempty`` (always present, ``null`` when empty);
``windowSeconds`` / ``window`` are ``omitempty`` pointers (omitted when the value
has no window, never ``null``); ``describedObject`` is an ObjectReference whose
``namespace`` is ``omitempty`` (omitted for cluster-scoped objects).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

from adapter.core.catalogue import Catalogue
from adapter.core.model import API_GROUP, PREFERRED_VERSION, VERSIONS, MetricValue
from adapter.core.quantity import format_quantity, rfc3339
from adapter.core.selectors import Operator, parse_selector


class DescribedObject(TypedDict, total=False):
    kind: str
    namespace: str
    name: str
    apiVersion: str


def described_object(value: MetricValue) -> DescribedObject:
    """The ObjectReference; ``namespace`` only for namespaced objects (omitempty)."""
    obj = value.obj
    if obj.namespace:
        return {
            "kind": obj.kind.kind,
            "namespace": obj.namespace,
            "name": obj.name,
            "apiVersion": obj.kind.api_version,
        }
    return {"kind": obj.kind.kind, "name": obj.name, "apiVersion": obj.kind.api_version}


def _selector(text: str | None) -> dict[str, Any] | None:
    """The metricLabelSelector as a metav1.LabelSelector, or null when empty.

    Converted as apimachinery's ``ParseToLabelSelector`` does: ``=`` and ``==``
    to matchLabels, ``in`` / ``notin`` / exists / ``!`` to matchExpressions;
    empty fields are omitted, as Go's omitempty does. ``ParseToLabelSelector``
    refuses ``!=`` ("is not a valid label selector operator"), so a Go server
    fails the whole read; we echo ``key!=v`` as the equivalent
    ``{key, NotIn, [v]}``, which selects the same series.
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
    item: dict[str, Any] = {
        "describedObject": described_object(value),
        "metric": {"name": value.metric, "selector": selector},
        "timestamp": rfc3339(value.sample.timestamp),
    }
    if value.sample.window_seconds is not None:
        item["windowSeconds"] = value.sample.window_seconds
    item["value"] = format_quantity(value.sample.value)
    return item


def _item_v1beta1(value: MetricValue, selector: dict[str, Any] | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "describedObject": described_object(value),
        "metricName": value.metric,
        "timestamp": rfc3339(value.sample.timestamp),
    }
    if value.sample.window_seconds is not None:
        item["window"] = value.sample.window_seconds
    item["value"] = format_quantity(value.sample.value)
    item["selector"] = selector
    return item


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
