"""adapter_served_value names the inference-server family each value was read from."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from adapter.api.telemetry import Telemetry
from adapter.core.model import (
    DEPLOYMENTS,
    PODS,
    MetricName,
    MetricValue,
    Namespace,
    ObjectRef,
    Sample,
)


def test_served_value_carries_the_family_label() -> None:
    registry = CollectorRegistry()
    telemetry = Telemetry(registry, clock=lambda: 100.0)
    metric = MetricName("inference_queue_depth")
    telemetry.served(
        [
            MetricValue(
                ObjectRef(PODS, "a", Namespace("ml")), metric, Sample(7.0, 99.0, None, "vllm")
            ),
            MetricValue(ObjectRef(PODS, "b", Namespace("ml")), metric, Sample(2.0, 99.0)),
        ]
    )
    telemetry.served(
        [
            MetricValue(
                ObjectRef(DEPLOYMENTS, "web", Namespace("ml")),
                metric,
                Sample(9.0, 99.0, None, "mixed"),
            )
        ]
    )
    lines = {
        line
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith("adapter_served_value{")
    }
    assert lines == {
        'adapter_served_value{family="vllm",kind="Pod",metric="inference_queue_depth",name="a",namespace="ml"} 7.0',
        'adapter_served_value{family="",kind="Pod",metric="inference_queue_depth",name="b",namespace="ml"} 2.0',
        'adapter_served_value{family="mixed",kind="Deployment",metric="inference_queue_depth",name="web",namespace="ml"} 9.0',
    }
