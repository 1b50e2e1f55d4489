"""``explain`` agrees with the real HPA controller: the desired replicas it computes from what
the adapter serves (read through the real aggregator) are what the controller then sets, for a
scale-up, a hold and a scale-down of a Deployment on ``inference_queue_depth``.

The scenario keeps the fleet's total queue fixed between changes, spread over the Ready pods,
so the controller's answer does not move while replicas come and go: 45 queued, target 10 per
pod -> 5 (then 9 per pod: inside the tolerance, a hold); 90 -> 9; 12 -> 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.cluster.conftest import Cluster, Scenario, wait_for
from tests.cluster.test_hpa import (
    DEPLOYMENT,
    _deploy,
    _hpa_status,
    _pods_metric,
    _replicas,
    workload,
)

__all__ = ["workload"]  # the fixture, shared with test_hpa


def _explain(cluster: Cluster, namespace: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "adapter", "explain", "-n", namespace, "--hpa", DEPLOYMENT,
         "--kubeconfig", str(cluster.plane.admin_kubeconfig), "-o", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _explained_desired(cluster: Cluster, namespace: str, expected_usage_milli: int) -> int:
    """explain's desiredReplicas, once the adapter serves the new scenario (its usage)."""
    found: dict[str, Any] = {}

    def sees_scenario() -> bool:
        report = _explain(cluster, namespace)
        (metric,) = report["metrics"]
        # the per-pod average moves with the pod count; the total (usage x counted pods) not
        counted = sum(1 for p in metric["pods"] if p["hpa"] == "counted")
        if metric["usageMilli"] is None or counted == 0:
            return False
        total: int = metric["usageMilli"] * counted
        found.update(report)
        return abs(total - expected_usage_milli) <= counted  # integer mean rounding

    wait_for(f"{namespace}: explain sees the scenario", sees_scenario, 180)
    return int(found["desiredReplicas"])


def _settled(cluster: Cluster, namespace: str, replicas: int) -> dict[str, Any]:
    def done() -> bool:
        status = _hpa_status(cluster, namespace)
        return (
            _replicas(cluster, namespace) == replicas
            and status.get("desiredReplicas") == replicas
            and status.get("currentReplicas") == replicas
        )

    wait_for(f"{namespace}: the HPA settles at {replicas}", done, 240)
    return _hpa_status(cluster, namespace)


def test_explain_equals_the_controller_up_hold_and_down(cluster: Cluster, workload: str) -> None:
    scenario = Scenario(workload, queue_total=45)
    _deploy(cluster, workload, scenario, _pods_metric("inference_queue_depth", "10"), 10)

    # scale-up from 2: explain's proposal, then what the controller sets
    assert _explained_desired(cluster, workload, 45_000) == 5
    assert _settled(cluster, workload, 5)["desiredReplicas"] == 5
    # hold: 9 per pod is inside the 0.1 tolerance of 10
    report = _explain(cluster, workload)
    assert (report["currentReplicas"], report["desiredReplicas"]) == (5, 5)
    assert _hpa_status(cluster, workload)["desiredReplicas"] == 5
    # up again, then down
    scenario.queue_total = 90
    assert _explained_desired(cluster, workload, 90_000) == 9
    assert _settled(cluster, workload, 9)["desiredReplicas"] == 9
    scenario.queue_total = 12
    assert _explained_desired(cluster, workload, 12_000) == 2
    assert _settled(cluster, workload, 2)["desiredReplicas"] == 2
