"""Rule forms: validation with every problem at once, and the default rules."""

from __future__ import annotations

from typing import Any

import pytest

from adapter.core.catalogue import Aggregation
from adapter.sources.prometheus.rules import (
    LATENCY_P95_OPTIONS,
    QUEUE_DEPTH_OPTIONS,
    GaugeRule,
    HistogramRule,
    PromLabels,
    RuleError,
    TemplateRule,
    parse_prometheus_block,
    parse_rule,
)

from .helpers import spec


def test_default_latency_rule() -> None:
    rule = parse_rule(spec("p95", LATENCY_P95_OPTIONS, Aggregation.HISTOGRAM), PromLabels())
    assert isinstance(rule, HistogramRule)
    assert (rule.series, rule.quantile, rule.window_seconds) == (
        "inference_duration_seconds",
        0.95,
        120,
    )
    assert rule.query() == (
        'sum by (namespace, pod, le) (rate(inference_duration_seconds_bucket{namespace!="",pod!=""}[2m]))'
    )


def test_default_queue_rule_uses_custom_labels() -> None:
    labels = parse_prometheus_block(
        {"namespaceLabel": "kubernetes_namespace", "podLabel": "kubernetes_pod_name"}
    )
    rule = parse_rule(spec("q", QUEUE_DEPTH_OPTIONS, Aggregation.SUM), labels)
    assert isinstance(rule, GaugeRule)
    assert "sum by (kubernetes_namespace, kubernetes_pod_name)" in rule.query()


def test_histogram_defaults_and_selector() -> None:
    rule = parse_rule(
        spec("p", {"histogram": "h", "selector": "model in (a,b)"}, Aggregation.HISTOGRAM),
        PromLabels(),
    )
    assert isinstance(rule, HistogramRule)
    assert rule.quantile == 0.95
    assert rule.window_seconds == 120
    assert 'model=~"^(?:a|b)$"' in rule.query()


def test_template_rule() -> None:
    options = {
        "query": "sum by (<<groupBy>>) (rate(reqs_total{<<matchers>>}[<<window>>]))",
        "window": "1m30s",
    }
    rule = parse_rule(spec("rps", options, Aggregation.SUM), PromLabels())
    assert isinstance(rule, TemplateRule)
    assert rule.window_seconds == 90
    assert rule.query() == 'sum by (namespace, pod) (rate(reqs_total{namespace!="",pod!=""}[90s]))'


def problems(options: Any, aggregate: Aggregation = Aggregation.MEAN) -> list[tuple[str, str]]:
    with pytest.raises(RuleError) as info:
        parse_rule(spec("m", options, aggregate), PromLabels())
    return info.value.problems


def paths(options: Any, aggregate: Aggregation = Aggregation.MEAN) -> list[str]:
    return [path for path, _ in problems(options, aggregate)]


@pytest.mark.parametrize(
    ("options", "aggregate", "expected"),
    [
        ({}, Aggregation.MEAN, ["prometheus"]),
        ({"histogram": "h", "gauge": "g"}, Aggregation.MEAN, ["prometheus"]),
        ({"histogram": "h_bucket"}, Aggregation.HISTOGRAM, ["prometheus.histogram"]),
        ({"histogram": "1bad"}, Aggregation.HISTOGRAM, ["prometheus.histogram"]),
        ({"histogram": "h", "quantile": 1.5}, Aggregation.HISTOGRAM, ["prometheus.quantile"]),
        ({"histogram": "h", "quantile": "high"}, Aggregation.HISTOGRAM, ["prometheus.quantile"]),
        ({"histogram": "h", "quantile": True}, Aggregation.HISTOGRAM, ["prometheus.quantile"]),
        ({"histogram": "h", "window": "2"}, Aggregation.HISTOGRAM, ["prometheus.window"]),
        ({"histogram": "h", "window": 120}, Aggregation.HISTOGRAM, ["prometheus.window"]),
        ({"histogram": "h", "window": "1500ms"}, Aggregation.HISTOGRAM, ["prometheus.window"]),
        (
            {"histogram": "h", "selector": "app.kubernetes.io/name=x"},
            Aggregation.HISTOGRAM,
            ["prometheus.selector"],
        ),
        ({"histogram": "h", "selector": "a=("}, Aggregation.HISTOGRAM, ["prometheus.selector"]),
        ({"histogram": "h"}, Aggregation.SUM, ["aggregate"]),
        ({"gauge": "g"}, Aggregation.HISTOGRAM, ["aggregate"]),
        ({"gauge": "g", "window": "2m"}, Aggregation.SUM, ["prometheus.window"]),
        ({"query": "sum(x)"}, Aggregation.MEAN, ["prometheus.query", "prometheus.query"]),
        (
            {"query": "sum by (<<groupBy>>) (x{<<matchers>>}[<<window>>])"},
            Aggregation.MEAN,
            ["prometheus.window"],
        ),
        (
            {"query": "sum by (<<groupBy>>) (x{<<matchers>>}"},
            Aggregation.MEAN,
            ["prometheus.query"],
        ),
        (
            {"query": "sum by (<<groupBy>>) (x{<<matchers>>}) <<bogus>>"},
            Aggregation.MEAN,
            ["prometheus.query"],
        ),
        ({"query": 3}, Aggregation.MEAN, ["prometheus.query"]),
    ],
)
def test_invalid_rules(options: Any, aggregate: Aggregation, expected: list[str]) -> None:
    assert paths(options, aggregate) == expected


def test_all_problems_reported_at_once() -> None:
    found = paths(
        {"histogram": "h_bucket", "quantile": 2, "window": "x", "extra": 1}, Aggregation.SUM
    )
    assert found == [
        "prometheus.extra",
        "prometheus.histogram",
        "prometheus.quantile",
        "prometheus.window",
        "aggregate",
    ]


def test_wrong_source() -> None:
    s = spec("m", {"gauge": "g"})
    s = type(s)(s.name, "gpu", s.resources, options=s.options)
    with pytest.raises(RuleError):
        parse_rule(s, PromLabels())


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"namespaceLabel": "k8s-ns"}, ["prometheus.namespaceLabel"]),
        ({"podLabel": "le"}, ["prometheus.podLabel"]),
        ({"podLabel": "namespace"}, ["prometheus.podLabel"]),
        ({"podLabel": 3, "url": "x"}, ["prometheus.url", "prometheus.podLabel"]),
        ({"namespaceLabel": "__ns"}, ["prometheus.namespaceLabel"]),
    ],
)
def test_invalid_prometheus_block(block: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(RuleError) as info:
        parse_prometheus_block(block)
    assert [path for path, _ in info.value.problems] == expected


def test_prometheus_block_defaults() -> None:
    assert parse_prometheus_block({}) == PromLabels()
    assert parse_prometheus_block(None) == PromLabels("namespace", "pod")
