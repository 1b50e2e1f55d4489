"""The real HPA controller scales a real Deployment on each metric, reading through the real
aggregator; unready and warming pods are left out as documented (never served as 0).

Scenario values follow ../shared/kube/README.md: ceil(ratio x pods) away from integers and from
the 0.1 tolerance band. Where the per-pod value would not depend on the replica count (latency,
GPU), the HPA would keep scaling, so those run between minReplicas and maxReplicas, and the
values the HPA read are checked in its status. Latency observations sit inside a bucket
(1.75 s in (1.5, 2] gives p95 1.975 s; 0.4 s in (0.3, 0.5] gives 0.49 s).
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.conftest import Cluster, Scenario, wait_for
from tests.cluster.controlplane import ApiError

DEPLOYMENT = "server"
HIGH_P95, LOW_P95 = 1.975, 0.49


def _deployment(replicas: int) -> dict[str, Any]:
    labels = {"app": DEPLOYMENT}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                # Never pulled or run: there is no kubelet. The test marks pods Running/Ready.
                "spec": {"containers": [{"name": "server", "image": "registry.invalid/server:1"}]},
            },
        },
    }


def _hpa(metric: dict[str, Any], low: int, high: int) -> dict[str, Any]:
    fast = {"stabilizationWindowSeconds": 0,
            "policies": [{"type": "Percent", "value": 900, "periodSeconds": 5}]}  # fmt: skip
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": DEPLOYMENT},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [metric],
            "behavior": {"scaleUp": fast, "scaleDown": fast},
        },
    }


def _pods_metric(name: str, average: str) -> dict[str, Any]:
    return {"type": "Pods", "pods": {"metric": {"name": name},
                                      "target": {"type": "AverageValue", "averageValue": average}}}  # fmt: skip


@pytest.fixture
def workload(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of its own per test; the fleet forgets it afterwards."""
    short = request.node.name.removeprefix("test_")[:40].replace("_", "-").strip("-")
    namespace = cluster.namespace(f"hpa-{short}")
    yield namespace
    cluster.fleet.drop(namespace)
    with contextlib.suppress(ApiError):
        cluster.plane.request("DELETE", f"/api/v1/namespaces/{namespace}")


def _create(cluster: Cluster, namespace: str, kind: str, body: dict[str, Any]) -> None:
    path = {
        "Deployment": f"/apis/apps/v1/namespaces/{namespace}/deployments",
        "HorizontalPodAutoscaler": f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers",
    }[kind]
    cluster.plane.request("POST", path, body)


def _deploy(
    cluster: Cluster, namespace: str, scenario: Scenario, metric: dict[str, Any], high: int
) -> None:
    """``scenario`` on the fleet, a Deployment of 2 replicas and an HPA on ``metric`` that
    scales it between 1 and ``high`` at once (no stabilization)."""
    cluster.fleet.set(scenario)
    _create(cluster, namespace, "Deployment", _deployment(2))
    _create(cluster, namespace, "HorizontalPodAutoscaler", _hpa(metric, 1, high))


def _replicas(cluster: Cluster, namespace: str) -> int:
    deployment = cluster.plane.request(
        "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{DEPLOYMENT}"
    )
    return int(deployment["spec"]["replicas"])


def _hpa_status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    hpa = cluster.plane.request(
        "GET", f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{DEPLOYMENT}"
    )
    status: dict[str, Any] = hpa.get("status", {})
    return status


def _current(cluster: Cluster, namespace: str) -> float | None:
    """The value the HPA last read (averageValue for Pods, value for Object)."""
    metrics = _hpa_status(cluster, namespace).get("currentMetrics") or []
    if not metrics:
        return None
    (metric,) = metrics
    block = metric["pods"] if metric["type"] == "Pods" else metric["object"]
    current = block["current"]
    return _quantity(current.get("averageValue") or current.get("value"))


def _quantity(text: str | None) -> float | None:
    if text is None:
        return None
    suffixes = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3}
    if text[-1] in suffixes:
        return float(text[:-1]) * suffixes[text[-1]]
    return float(text)


def _scale_and_read(cluster: Cluster, namespace: str, replicas: int, value: float,
                    tolerance: float = 0.0) -> None:  # fmt: skip
    """Wait until the Deployment has ``replicas`` and the HPA read ``value``, then assert both."""

    def reached() -> bool:
        current = _current(cluster, namespace)
        return (
            _replicas(cluster, namespace) == replicas
            and current is not None
            and abs(current - value) <= tolerance + 1e-9
        )

    try:
        wait_for(f"{namespace}: {replicas} replicas reading {value}", reached, 240)
    except TimeoutError:
        status = json.dumps(_hpa_status(cluster, namespace), indent=1)[-3000:]
        raise AssertionError(
            f"replicas {_replicas(cluster, namespace)}; HPA status:\n{status}\n"
            f"fleet errors: {cluster.fleet.errors[-3:]}\nadapter:\n{cluster.adapter.tail(15)}"
        ) from None
    assert _replicas(cluster, namespace) == replicas
    conditions = {c["type"]: c["status"] for c in _hpa_status(cluster, namespace)["conditions"]}
    assert conditions["ScalingActive"] == "True"


def test_queue_depth_scales_up_and_down(cluster: Cluster, workload: str) -> None:
    """45 queued requests spread over the Ready pods, target 10 per pod: ceil(4.5) = 5 pods
    (9 each: inside the tolerance, so it stays); then 12: ceil(1.2) = 2 pods (6 each)."""
    scenario = Scenario(workload, queue_total=45)
    _deploy(cluster, workload, scenario, _pods_metric("inference_queue_depth", "10"), 10)
    _scale_and_read(cluster, workload, 5, 9.0)
    scenario.queue_total = 12
    _scale_and_read(cluster, workload, 2, 6.0)


def test_latency_p95_per_pod_scales_up_and_down(cluster: Cluster, workload: str) -> None:
    """p95 1.975 s against 1 s from 2 pods: ceil(3.95) = 4 (the maximum); 0.49 s: down to 1."""
    scenario = Scenario(workload, latency=1.75)
    _deploy(cluster, workload, scenario, _pods_metric("inference_latency_p95", "1"), 4)
    _scale_and_read(cluster, workload, 4, HIGH_P95, tolerance=0.002)
    scenario.latency = 0.4
    _scale_and_read(cluster, workload, 1, LOW_P95, tolerance=0.002)


def test_fleet_p95_of_the_deployment_scales_up_and_down(cluster: Cluster, workload: str) -> None:
    """The Object metric: the Deployment's p95 over its pods' merged histograms."""
    scenario = Scenario(workload, latency=1.75)
    metric = {
        "type": "Object",
        "object": {
            "metric": {"name": "inference_latency_p95"},
            "describedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT},
            "target": {"type": "Value", "value": "1"},
        },
    }
    _deploy(cluster, workload, scenario, metric, 4)
    _scale_and_read(cluster, workload, 4, HIGH_P95, tolerance=0.002)
    scenario.latency = 0.4
    _scale_and_read(cluster, workload, 1, LOW_P95, tolerance=0.002)


def test_gpu_utilization_scales_up_and_down(cluster: Cluster, workload: str) -> None:
    """80 % against 50 from 2 pods: ceil(3.2) = 4 (the maximum); 10 %: down to 1."""
    scenario = Scenario(workload, gpu=80)
    _deploy(cluster, workload, scenario, _pods_metric("gpu_utilization", "50"), 4)
    _scale_and_read(cluster, workload, 4, 80.0)
    scenario.gpu = 10
    _scale_and_read(cluster, workload, 1, 10.0)


def test_unready_and_warming_pods_are_left_out(cluster: Cluster, workload: str) -> None:
    """Four pods: two Ready for long (queues 6 and 9), one Ready just now (warming up: its
    server reports an empty queue, 0), one never Ready. The adapter serves only the first two;
    the HPA's average is 7.5, not the 5 a served 0 would make (min = max = 4 holds the size)."""
    scenario = Scenario(workload, auto_ready=False)
    cluster.fleet.set(scenario)
    _create(cluster, workload, "Deployment", _deployment(4))
    plane = cluster.plane
    wait_for("four pods", lambda: len(plane.pods(workload, "app=server")) == 4, 120)
    pods = sorted(plane.pods(workload, "app=server"), key=lambda p: p["metadata"]["name"])
    now = datetime.datetime.now(datetime.UTC)
    old = now - datetime.timedelta(minutes=10)
    steady, warming, pending = pods[:2], pods[2], pods[3]
    for i, pod in enumerate(steady):
        plane.mark_running(pod, ready=True, ready_since=old, ip=f"198.51.100.{200 + i}")
    plane.mark_running(warming, ready=True, ready_since=now, ip="198.51.100.210")
    names = [p["metadata"]["name"] for p in steady]
    scenario.queue_by_pod = {names[0]: 6, names[1]: 9, warming["metadata"]["name"]: 0}
    path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{workload}/pods/%2A/inference_queue_depth?labelSelector=app%3Dserver"

    def served() -> dict[str, str]:
        body = plane.request("GET", path)
        return {i["describedObject"]["name"]: i["value"] for i in body["items"]}

    wait_for("the two steady pods served", lambda: served() == {names[0]: "6", names[1]: "9"}, 120)
    assert pending["metadata"]["name"] not in served()
    _create(cluster, workload, "HorizontalPodAutoscaler",
            _hpa(_pods_metric("inference_queue_depth", "10"), 4, 4))  # fmt: skip
    wait_for("the HPA's first read", lambda: _current(cluster, workload) is not None, 90)
    assert _current(cluster, workload) == 7.5
    # The premise held: the pod was still inside the suite's 120 s warm-up (conftest.RULES).
    assert (datetime.datetime.now(datetime.UTC) - now).total_seconds() < 120
