"""Every PromQL expression of the dashboard and the alerts, against the real Prometheus of the demo
stack (fed by the adapter, the collectors and the simulated fleet): it parses, and every series it
reads exists with the labels it selects on. Dashboard panels must also return data.

Series from outside the project (kube-state-metrics' HPA series, kube-apiserver's
aggregator_unavailable_apiservice) come from a stand-in exporter below, with the label sets the
real exporters use; ``up`` comes from Prometheus itself.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from adapter.demo.stack import DemoStack, free_port
from tests.deploy.support import promql_expressions, series_names
from tests.support.kubectl import kubectl

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(300)]
ROOT = Path(__file__).parents[2]
ALERTS = ROOT / "deploy" / "monitoring" / "alerts.rules.yaml"
P = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml"


def stand_in_for_cluster_exporters() -> tuple[Any, int]:
    registry = CollectorRegistry()
    target = Gauge(
        "kube_horizontalpodautoscaler_spec_target_metric",
        "kube-state-metrics",
        ["namespace", "horizontalpodautoscaler", "metric_name", "metric_target_type"],
        registry=registry,
    )
    for metric, value in (
        ("inference_latency_p95", 0.5),
        ("inference_queue_depth", 10),
        ("gpu_utilization", 70),
    ):
        target.labels("ml", "llm", metric, "average").set(value)
    condition = Gauge(
        "kube_horizontalpodautoscaler_status_condition",
        "kube-state-metrics",
        ["namespace", "horizontalpodautoscaler", "condition", "status"],
        registry=registry,
    )
    for status, value in (("true", 1), ("false", 0), ("unknown", 0)):
        condition.labels("ml", "llm", "ScalingActive", status).set(value)
    unavailable = Gauge(
        "aggregator_unavailable_apiservice", "kube-apiserver", ["name"], registry=registry
    )
    for version in ("v1beta1", "v1beta2"):
        unavailable.labels(f"{version}.custom.metrics.k8s.io").set(0)
    port = free_port()
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    return server, port


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    server, port = stand_in_for_cluster_exporters()
    try:
        with DemoStack(
            tmp_path_factory.mktemp("monitoring"),
            rule_files=(ALERTS,),
            extra_scrape=(("kube-state-metrics", f"127.0.0.1:{port}"),),
        ) as running:
            yield running
    finally:
        server.shutdown()
        server.server_close()


def query(stack: DemoStack, expr: str) -> list[dict[str, Any]]:
    url = f"{stack.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def selectors(expr: str) -> set[str]:
    """Each series the expression reads, with the matchers it applies: ``name{a="b"}``."""
    found = set()
    for name in series_names(expr):
        for match in re.finditer(rf"(?<![\w:]){re.escape(name)}\s*(\{{[^}}]*\}})?(?!\s*\()", expr):
            found.add(name + (match.group(1) or ""))
    return found


@pytest.fixture(scope="module")
def warmed(stack: DemoStack) -> DemoStack:
    """HPA-like reads so the adapter has served values, and a minute of samples for rate()."""

    async def read_all() -> None:
        for metric in ("inference_latency_p95", "inference_queue_depth", "gpu_utilization"):
            result = await kubectl(
                stack.kubeconfig, "get", "--raw", f"{P}/pods/%2A/{metric}?labelSelector=app%3Dllm"
            )
            assert result.returncode == 0, result.stderr

    import asyncio  # noqa: PLC0415

    wanted = (
        'adapter_served_value{metric="gpu_utilization"}',
        "adapter_gpu_snapshot_age_seconds",
        "inference_duration_seconds_bucket",
        "gpu_collector_mig_utilization_percent",
        "rate(adapter_http_request_duration_seconds_bucket[1m])",
        "kube_horizontalpodautoscaler_spec_target_metric",
    )
    started = time.monotonic()
    while True:
        asyncio.run(read_all())
        missing = [s for s in wanted if not query(stack, f"count({s})")]
        elapsed = time.monotonic() - started
        if not missing and elapsed > 15:  # 15 s of samples for the rate() windows
            return stack
        assert elapsed < 120, f"the demo stack never produced {missing}"
        time.sleep(2)


EXPRESSIONS = promql_expressions()


@pytest.mark.parametrize(("where", "expr"), EXPRESSIONS, ids=[w for w, _ in EXPRESSIONS])
def test_expression_runs_and_reads_existing_series(
    warmed: DemoStack, where: str, expr: str
) -> None:
    query(warmed, expr)  # parses and evaluates
    for selector in selectors(expr):
        assert query(warmed, f"count({selector})"), f"{where}: no series for {selector}"
    if where.startswith("dashboard"):
        assert query(warmed, expr), f"{where}: the panel would be empty"


def test_no_availability_alert_fires_on_a_healthy_stack(warmed: DemoStack) -> None:
    firing = {a["metric"]["alertname"] for a in query(warmed, 'ALERTS{alertstate="firing"}')}
    assert not firing & {
        "InferenceMetricsAdapterDown",
        "InferenceMetricsAdapterReplicaDown",
        "GpuCollectorDown",
        "CustomMetricsAPIServiceUnavailable",
        "InferenceMetricsPrometheusSnapshotStale",
        "InferenceMetricsGpuSnapshotStale",
        "GpuCollectorsNotAnswering",
    }
