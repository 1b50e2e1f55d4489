"""components/dcgm-exporter: gpu_utilization from dcgm-exporter, and dropping our collector.

The component's rules file is the base's plus one entry (checked, so the two cannot drift),
the adapter accepts it and sends dcgm-exporter's query; the nested
``without-gpu-collector`` removes exactly the collector's objects, whatever other
components put there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from adapter.app import catalogue_holder
from adapter.core.model import DEPLOYMENTS, PODS, STATEFULSETS, MetricName
from adapter.sources.prometheus.catalogue import queries_of as prometheus_queries
from tests.deploy.support import DEPLOY, find, kustomize_text, render

GPU_NS = "inference-metrics-gpu"
COLLECTOR_READER = "inference-metrics-adapter:gpu-collector-pod-reader"
DCGM_ENTRY = {
    "name": "gpu_utilization",
    "source": "prometheus",
    "resources": ["pods", "deployments.apps", "statefulsets.apps"],
    "description": "GPU utilization from dcgm-exporter (DCGM_FI_DEV_GPU_UTIL); "
    "per pod the mean over its GPUs",
    "prometheus": {
        "families": ["dcgm-exporter"],
        "namespaceLabel": "exported_namespace",
        "podLabel": "exported_pod",
    },
}


def _rules(docs: tuple[dict[str, Any], ...]) -> str:
    return str(find(docs, "ConfigMap", "inference-metrics-adapter-rules")["data"]["rules.yaml"])


def test_the_components_rules_are_the_bases_plus_gpu_utilization_from_dcgm() -> None:
    base = yaml.safe_load(_rules(render("base")))
    mine = yaml.safe_load(_rules(render("components/dcgm-exporter")))
    assert mine == {**base, "metrics": [*base["metrics"], DCGM_ENTRY]}
    # Nothing else changes: the collector still runs unless the nested component drops it.
    others = [d for d in render("components/dcgm-exporter") if d["kind"] != "ConfigMap"]
    assert others == [d for d in render("base") if d["kind"] != "ConfigMap"]


def test_the_adapter_accepts_the_components_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(_rules(render("components/dcgm-exporter")))
    catalogue = catalogue_holder(path)()
    spec = catalogue.metrics[MetricName("gpu_utilization")]
    assert spec.source == "prometheus"
    assert spec.unit == "percent"
    assert spec.resources == (PODS, DEPLOYMENTS, STATEFULSETS)
    ((family, query),) = prometheus_queries(catalogue)[MetricName("gpu_utilization")]
    assert family == "dcgm-exporter"
    assert query.startswith(
        "label_replace(avg by (exported_namespace, exported_pod) "
        '(DCGM_FI_DEV_GPU_UTIL{exported_namespace!="",exported_pod!=""})'
    )


def _names(docs: tuple[dict[str, Any], ...]) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of each object."""
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs}


def _collector_objects(docs: tuple[dict[str, Any], ...]) -> set[tuple[str, str, str]]:
    return {
        name for name in _names(docs) if name[1] == GPU_NS or name[2] in {GPU_NS, COLLECTOR_READER}
    }


def test_without_gpu_collector_removes_exactly_the_collector() -> None:
    # With every component that touches the collector, listed before, and settings after.
    others = [
        "components/gke",
        "components/aks",
        "components/shared-gpu",
        "components/high-priority",
        "components/kube-prometheus",
        "components/dcgm-exporter",
    ]
    kept = tuple(
        d for d in yaml.safe_load_all(kustomize_text({"resources": ["base"], "components": others}))
    )
    dropped = tuple(
        d
        for d in yaml.safe_load_all(
            kustomize_text(
                {
                    "resources": ["base"],
                    "components": [
                        *others,
                        "components/dcgm-exporter/without-gpu-collector",
                        "components/settings",
                    ],
                }
            )
        )
    )
    removed = _collector_objects(kept)
    assert removed == {
        ("Namespace", "", GPU_NS),
        ("ServiceAccount", GPU_NS, "gpu-collector"),
        ("DaemonSet", GPU_NS, "gpu-collector"),
        ("NetworkPolicy", GPU_NS, "gpu-collector"),
        ("PodMonitor", GPU_NS, "gpu-collector"),
        ("ClusterRole", "", COLLECTOR_READER),
        ("ClusterRoleBinding", "", COLLECTOR_READER),
        ("Role", GPU_NS, "inference-metrics-adapter:prometheus-k8s"),
        ("RoleBinding", GPU_NS, "inference-metrics-adapter:prometheus-k8s"),
        ("ResourceQuota", GPU_NS, "inference-metrics-adapter-critical-pods"),
    }
    assert _names(dropped) == _names(kept) - removed
    # The rest is untouched, in the same order; the rules say dcgm-exporter.
    assert list(dropped) == [d for d in kept if not _names((d,)) & removed]
    assert yaml.safe_load(_rules(dropped))["metrics"][-1] == DCGM_ENTRY


def test_the_nested_component_is_documented() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    assert "`components/dcgm-exporter/without-gpu-collector`" in readme
