"""End to end on loopback: simulated fleet and GPU nodes, real Prometheus, real adapter, real kubectl."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from adapter.demo.stack import DemoStack
from tests.support.kubectl import kubectl

pytestmark = [pytest.mark.prometheus, pytest.mark.kubectl, pytest.mark.timeout(300)]
P = "/apis/custom.metrics.k8s.io/v1beta2"
READY_PODS = [
    "llm-6d9f7c8b5-b0000",
    "llm-6d9f7c8b5-c0001",
    "llm-6d9f7c8b5-d0002",
    "llm-6d9f7c8b5-f0003",
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    with DemoStack(tmp_path_factory.mktemp("demo")) as running:
        yield running


def promql(stack: DemoStack, expr: str) -> list[dict[str, Any]]:
    url = f"{stack.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def wait_for(predicate: Any, timeout: float = 60.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(every)


async def items(stack: DemoStack, path: str) -> list[dict[str, Any]]:
    result = await kubectl(stack.kubeconfig, "get", "--raw", path)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout)["items"])


async def wait_items(
    stack: DemoStack, path: str, count: int, timeout: float = 90.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        got = await items(stack, path)
        if len(got) >= count:
            return got
        assert time.monotonic() < deadline, f"{path}: {len(got)} items after {timeout}s"
        time.sleep(1)


@pytest.mark.parametrize(
    "metric", ["inference_latency_p95", "inference_queue_depth", "gpu_utilization"]
)
async def test_every_metric_per_pod_for_ready_pods_only(stack: DemoStack, metric: str) -> None:
    got = await wait_items(stack, f"{P}/namespaces/ml/pods/%2A/{metric}?labelSelector=app%3Dllm", 4)
    assert [
        i["describedObject"]["name"] for i in got
    ] == READY_PODS  # the unready pod is never served
    for item in got:
        assert item["value"] != "0" or metric == "inference_queue_depth"
        assert item["metric"] == {"name": metric, "selector": None}


async def test_object_and_node_metrics(stack: DemoStack) -> None:
    (fleet,) = await wait_items(
        stack, f"{P}/namespaces/ml/deployments.apps/llm/inference_latency_p95", 1
    )
    assert fleet["describedObject"] == {
        "kind": "Deployment",
        "namespace": "ml",
        "name": "llm",
        "apiVersion": "apps/v1",
    }
    assert fleet["windowSeconds"] == 120
    nodes = await wait_items(stack, f"{P}/nodes/%2A/gpu_utilization", 2)
    assert [n["describedObject"]["name"] for n in nodes] == ["gpu-node-1", "gpu-node-2"]
    assert all(n["windowSeconds"] == 10 for n in nodes)


def wait_for_pods(stack: DemoStack, expr: str, label: str) -> list[dict[str, Any]]:
    """Poll ``expr`` until its series name exactly the Ready pods (by ``label``).

    Each collector, and each read of the adapter, is scraped on its own schedule: a query
    between two scrapes sees some pods and not yet others. Wait for the whole set, then
    assert exactly on what was found.
    """

    def complete() -> list[dict[str, Any]]:
        series = promql(stack, expr)
        return series if sorted(s["metric"][label] for s in series) == READY_PODS else []

    return list(wait_for(complete, timeout=90.0))


def test_prometheus_scrapes_the_collectors_with_pod_labels(stack: DemoStack) -> None:
    series = wait_for_pods(
        stack, 'gpu_collector_pod_gpu_utilization_percent{namespace="ml"}', "pod"
    )
    assert sorted(s["metric"]["pod"] for s in series) == READY_PODS
    assert {s["metric"]["simulated"] for s in series} == {"true"}
    assert "exported_pod" not in series[0]["metric"]


async def test_prometheus_scrapes_the_adapter_over_mutual_tls(stack: DemoStack) -> None:
    await wait_items(
        stack, f"{P}/namespaces/ml/pods/%2A/inference_latency_p95?labelSelector=app%3Dllm", 4
    )
    served = wait_for_pods(
        stack, 'adapter_served_value{metric="inference_latency_p95",kind="Pod"}', "name"
    )
    assert sorted(s["metric"]["name"] for s in served) == READY_PODS
    assert {s["metric"]["namespace"] for s in served} == {"ml"}
    assert wait_for(lambda: promql(stack, 'up{job="inference-metrics-adapter"} == 1'))


async def test_a_collector_killed_mid_test_only_drops_its_own_pods(stack: DemoStack) -> None:
    path = f"{P}/namespaces/ml/pods/%2A/gpu_utilization?labelSelector=app%3Dllm"
    await wait_items(stack, path, 4)
    stack.kill("collector-gpu-node-2")
    deadline = time.monotonic() + 30
    seen_counts = []
    while True:
        got = await items(stack, path)
        seen_counts.append(len(got))
        assert all(i["value"] != "0" for i in got), got  # never a false zero on the way down
        if [i["describedObject"]["name"] for i in got] == READY_PODS[:2]:
            break
        assert time.monotonic() < deadline, f"node-2 pods still served: {got}"
        time.sleep(0.5)
    nodes = await items(stack, f"{P}/nodes/%2A/gpu_utilization")
    assert [n["describedObject"]["name"] for n in nodes] == ["gpu-node-1"]
    assert (
        seen_counts[0] == 4
    )  # served until the staleness bound, not dropped at the first failed pull
