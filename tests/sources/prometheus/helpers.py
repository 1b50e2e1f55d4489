"""Builders for the Prometheus source tests: rule specs, rules, pods, targets, answer rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adapter.core.catalogue import Aggregation, MetricSpec
from adapter.core.model import (
    DEPLOYMENTS,
    PODS,
    MetricName,
    Namespace,
    ObjectRef,
    PodInfo,
    PodName,
    PodUID,
    Target,
)
from adapter.sources.prometheus import promql
from adapter.sources.prometheus.rules import (
    LATENCY_P95_OPTIONS,
    QUEUE_DEPTH_OPTIONS,
    HistogramRule,
    PrometheusRule,
    PromLabels,
    parse_rule,
)
from adapter.sources.prometheus.transport import PromSample

DEFAULT_LABELS = PromLabels()


def spec(
    name: str,
    options: Mapping[str, Any],
    aggregate: Aggregation = Aggregation.MEAN,
) -> MetricSpec:
    return MetricSpec(
        name=MetricName(name),
        source="prometheus",
        resources=(PODS, DEPLOYMENTS),
        aggregate=aggregate,
        options=options,
    )


def latency_rule(labels: PromLabels = DEFAULT_LABELS) -> HistogramRule:
    rule = parse_rule(
        spec("inference_latency_p95", LATENCY_P95_OPTIONS, Aggregation.HISTOGRAM), labels
    )
    assert isinstance(rule, HistogramRule)
    return rule


def queue_rule(labels: PromLabels = DEFAULT_LABELS) -> PrometheusRule:
    return parse_rule(spec("inference_queue_depth", QUEUE_DEPTH_OPTIONS, Aggregation.SUM), labels)


def pod(namespace: str, name: str) -> PodInfo:
    return PodInfo(Namespace(namespace), PodName(name), PodUID(f"uid-{namespace}-{name}"))


def pod_key(namespace: str, name: str) -> tuple[Namespace, PodName]:
    """The key of a pod in a snapshot's ``pods``."""
    return Namespace(namespace), PodName(name)


def pod_target(namespace: str, name: str) -> Target:
    return Target(ObjectRef(PODS, name, Namespace(namespace)), (pod(namespace, name),))


def deployment_target(namespace: str, name: str, pods: Sequence[str]) -> Target:
    return Target(
        ObjectRef(DEPLOYMENTS, name, Namespace(namespace)),
        tuple(pod(namespace, p) for p in pods),
    )


def bucket_rows(
    namespace: str, name: str, buckets: Mapping[str, float], at: float
) -> list[PromSample]:
    return [
        PromSample({"namespace": namespace, "pod": name, "le": le}, at, value)
        for le, value in buckets.items()
    ]


def gauge_rows(
    namespace: str, name: str, value: float, sampled: float, at: float
) -> list[PromSample]:
    labels = {"namespace": namespace, "pod": name}
    return [
        PromSample({**labels, promql.PART_LABEL: promql.PART_VALUE}, at, value),
        PromSample({**labels, promql.PART_LABEL: promql.PART_TIMESTAMP}, at, sampled),
    ]
