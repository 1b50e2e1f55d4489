"""deploy/examples/servers: a PodMonitor and an HPA per inference server, consistent with the adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from adapter.rulesfile import BUILTIN_METRICS
from adapter.sources.prometheus.families import FAMILIES

from .support import DEPLOY, manifest_files

SERVERS = DEPLOY / "examples" / "servers"
# The scrape path each server serves its Prometheus text on (servers.md).
PATHS = {
    "vllm": "/metrics",
    "sglang": "/metrics",
    "tgi": "/metrics",
    "triton": "/metrics",
    "trtllm-serve": "/prometheus/metrics",
}


def docs(path: Path) -> dict[str, Any]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(path.read_text())}


def test_one_file_per_server_and_each_is_validated_with_the_rest() -> None:
    assert sorted(p.stem for p in SERVERS.glob("*.yaml")) == sorted(PATHS)
    assert set(SERVERS.glob("*.yaml")) <= set(manifest_files())


@pytest.mark.parametrize("server", sorted(PATHS))
def test_podmonitor_scrapes_the_servers_own_path(server: str) -> None:
    monitor = docs(SERVERS / f"{server}.yaml")["PodMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": server}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == PATHS[server]


@pytest.mark.parametrize("server", sorted(PATHS))
def test_hpa_uses_only_metrics_the_server_family_serves(server: str) -> None:
    hpa = docs(SERVERS / f"{server}.yaml")["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == server
    served = {str(entry["name"]) for entry in BUILTIN_METRICS}
    for metric in hpa["spec"]["metrics"]:
        assert metric["type"] == "Pods"  # summaries (Triton) cannot make a fleet p95
        name = metric["pods"]["metric"]["name"]
        assert name in served
        assert server in {family.name for family in FAMILIES[name]}, (server, name)
