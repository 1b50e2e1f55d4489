"""HorizontalPodAutoscaler objects as the tests and benchmarks write them."""

from __future__ import annotations

from typing import Any


def hpa_object(
    *,
    name: str = "web",
    target: str = "web",
    low: int = 1,
    high: int = 10,
    metric: str = "inference_queue_depth",
    average: str = "10",
    behavior: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``autoscaling/v2`` HPA ``ml/<name>`` that scales Deployment ``target`` between
    ``low`` and ``high`` replicas on one Pods metric's ``AverageValue`` (``average``),
    with ``behavior`` in its spec when given."""
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": low,
        "maxReplicas": high,
        "metrics": [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": metric},
                    "target": {"type": "AverageValue", "averageValue": average},
                },
            }
        ],
    }
    if behavior is not None:
        spec["behavior"] = behavior
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": spec,
    }
