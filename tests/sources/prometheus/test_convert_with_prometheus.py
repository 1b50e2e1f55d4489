"""convert-rules round trip: converted rules served against the real Prometheus give the
values of the original prometheus-adapter rule's PromQL, expanded as it expands it."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapter.app import catalogue_holder
from adapter.cli import _series_lister
from adapter.convert import convert
from adapter.core.model import MetricName
from adapter.core.selectors import EVERYTHING
from adapter.sources.prometheus import PrometheusClient, PrometheusSource, TransportOptions
from adapter.sources.prometheus.catalogue import rules_of as prometheus_rules
from tests.support.prometheus_server import PrometheusServer

from .helpers import pod_target
from .servers import Pod, Value, serving

pytestmark = pytest.mark.prometheus

CONVERT = Path(__file__).parents[2] / "convert"

PODS = (
    Pod(  # the walkthrough's labels, from an annotation-based scrape job
        "frontend-a",
        [
            Value("http_requests_total", 0, {"method": "GET"}, "counter", per_second=3.0),
            Value("http_requests_total", 0, {"method": "POST"}, "counter", per_second=1.5),
        ],
        {"kubernetes_namespace": "production", "kubernetes_pod_name": "frontend-a"},
    ),
    Pod(
        "frontend-b",
        [Value("http_requests_total", 0, {"method": "GET"}, "counter", per_second=0.5)],
        {"kubernetes_namespace": "production", "kubernetes_pod_name": "frontend-b"},
    ),
    Pod(  # cAdvisor-style series with the operator's labels
        "web-0",
        [
            Value(
                "container_cpu_usage_seconds_total",
                0,
                {"container": "app"},
                "counter",
                per_second=0.25,
            ),
            Value(
                "container_cpu_usage_seconds_total",
                0,
                {"container": "POD"},
                "counter",
                per_second=9.0,
            ),
            Value("container_memory_working_set_bytes", 2**30, {"container": "app"}),
        ],
        {"namespace": "ml", "pod": "web-0"},
    ),
    Pod(  # dcgm-exporter scraped without honorLabels: its pod labels renamed exported_*
        "llm-0",
        [
            Value("DCGM_FI_DEV_GPU_UTIL", 70, {"gpu": "0", "UUID": "GPU-0a"}),
            Value("DCGM_FI_DEV_GPU_UTIL", 45, {"gpu": "1", "UUID": "GPU-1b"}),
        ],
        {"exported_namespace": "ml", "exported_pod": "llm-0", "pod": "nvidia-dcgm-exporter-x"},
    ),
)


@pytest.fixture(scope="module")
def prom() -> Iterator[PrometheusServer]:
    with serving(PODS) as target, PrometheusServer([target]) as server:
        server.wait_for("rate(http_requests_total[2m]) > 0", timeout=60)
        server.wait_for("rate(container_cpu_usage_seconds_total[5m]) > 0", timeout=60)
        yield server


async def round_trip(
    prom: PrometheusServer,
    tmp_path: Path,
    text: str,
    metric: str,
    original: str,
    pods: list[tuple[str, str]],
    lister: Any = None,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(convert(text, "config.yaml", lister).yaml("config.yaml"))
    catalogue = catalogue_holder(rules)()
    client = PrometheusClient(TransportOptions(url=prom.url, timeout=10))
    try:
        source = PrometheusSource(client, prometheus_rules(catalogue))
        targets = [pod_target(ns, name) for ns, name in pods]
        ours: dict[str, float] = {}
        theirs: dict[str, float] = {}
        for _attempt in range(10):  # a scrape between the two evaluations changes rates
            await source.refresh_once()
            snap = source.snapshot[MetricName(metric)]
            at = next(iter(snap.pods.values())).timestamp
            got = await source.fetch(MetricName(metric), targets, EVERYTHING)
            ours = {str(obj.name): s.value for obj, s in got.items()}
            result = prom.query(original, at=at)
            theirs = {
                next(v for k, v in r["metric"].items() if "pod" in k): float(r["value"][1])
                for r in result
            }
            if ours.keys() == theirs.keys() and all(
                math.isclose(ours[k], theirs[k], rel_tol=1e-12) for k in ours
            ):
                break
            await asyncio.sleep(0.3)
        assert ours == pytest.approx(theirs, rel=1e-12)
        assert len(ours) == len(pods)
    finally:
        client.close()


async def test_walkthrough_rule_round_trip(prom: PrometheusServer, tmp_path: Path) -> None:
    # prometheus-adapter expands the walkthrough's metricsQuery for a pods/* read as:
    original = (
        'sum(rate(http_requests_total{kubernetes_namespace="production",'
        'kubernetes_pod_name=~"frontend-a|frontend-b"}[2m])) by (kubernetes_pod_name)'
    )
    await round_trip(
        prom,
        tmp_path,
        (CONVERT / "walkthrough.yaml").read_text(),
        "http_requests_per_second",
        original,
        [("production", "frontend-a"), ("production", "frontend-b")],
    )


# The walkthrough's rule plus the usual dcgm-exporter rule, with another label pair.
TWO_LABEL_PAIRS = (
    (CONVERT / "walkthrough.yaml").read_text()
    + """\
- seriesQuery: 'DCGM_FI_DEV_GPU_UTIL{exported_namespace!="",exported_pod!=""}'
  resources:
    overrides:
      exported_namespace: {resource: "namespace"}
      exported_pod: {resource: "pod"}
  name: {as: "gpu_utilization_dcgm"}
  metricsQuery: 'avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
"""
)


async def test_a_rule_with_another_label_pair_keeps_it_per_metric(
    prom: PrometheusServer, tmp_path: Path
) -> None:
    converted = convert(TWO_LABEL_PAIRS, "config.yaml")
    assert converted.labels == ("kubernetes_namespace", "kubernetes_pod_name")
    assert converted.metrics[-1]["prometheus"] == {
        "query": "avg(DCGM_FI_DEV_GPU_UTIL{<<matchers>>}) by (<<groupBy>>)",
        "namespaceLabel": "exported_namespace",
        "podLabel": "exported_pod",
    }
    # prometheus-adapter expands the dcgm rule for namespaces/ml/pods/* as:
    await round_trip(
        prom,
        tmp_path,
        TWO_LABEL_PAIRS,
        "gpu_utilization_dcgm",
        'avg(DCGM_FI_DEV_GPU_UTIL{exported_namespace="ml",exported_pod=~"llm-0"}) '
        "by (exported_pod)",
        [("ml", "llm-0")],
    )
    # ... and the walkthrough's rule, in the same file, still reads its own labels.
    await round_trip(
        prom,
        tmp_path,
        TWO_LABEL_PAIRS,
        "http_requests_per_second",
        'sum(rate(http_requests_total{kubernetes_namespace="production",'
        'kubernetes_pod_name=~"frontend-a|frontend-b"}[2m])) by (kubernetes_pod_name)',
        [("production", "frontend-a"), ("production", "frontend-b")],
    )


async def test_default_config_round_trip_with_discovery(
    prom: PrometheusServer, tmp_path: Path
) -> None:
    lister = _series_lister(prom.url, 10)
    text = (CONVERT / "default-config.yaml").read_text()
    await round_trip(
        prom,
        tmp_path,
        text,
        "cpu_usage",
        'sum(rate(container_cpu_usage_seconds_total{namespace="ml",pod=~"web-0",'
        'container!="POD"}[5m])) by (pod)',
        [("ml", "web-0")],
        lister,
    )
    await round_trip(
        prom,
        tmp_path,
        text,
        "memory_working_set_bytes",
        'sum(container_memory_working_set_bytes{namespace="ml",pod=~"web-0",container!="POD"}) '
        "by (pod)",
        [("ml", "web-0")],
        lister,
    )
