"""Generate the checked-in artifacts that must stay consistent with deploy/monitoring sources.

``.venv/bin/python -m tests.deploy.sync`` rewrites:

- deploy/monitoring/dashboard.json          (built here: panels and their PromQL)
- deploy/base/configmap-dashboard.yaml      (dashboard.json in a ConfigMap, grafana_dashboard: "1")
- deploy/base/prometheusrule.yaml           (the groups of deploy/monitoring/alerts.rules.yaml)
- deploy/monitoring/alerts.test.yaml        (promtool unit tests from ``alert_cases.CASES``)

The tests call the same builders and fail when a checked-in file differs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import yaml

from tests.deploy import alert_cases

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MONITORING = DEPLOY / "monitoring"
BASE = DEPLOY / "base"
DASHBOARD = MONITORING / "dashboard.json"
DASHBOARD_CONFIGMAP = BASE / "configmap-dashboard.yaml"
ALERTS = MONITORING / "alerts.rules.yaml"
ALERTS_TEST = MONITORING / "alerts.test.yaml"
PROMETHEUS_RULE = BASE / "prometheusrule.yaml"

NAMESPACE = "inference-metrics"
LABELS = {
    "app.kubernetes.io/name": "inference-metrics-adapter",
    "app.kubernetes.io/part-of": "inference-metrics-adapter",
}
DS = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'

# (metric served, HPA target type shown beside it, unit)
SERVED = (
    ("inference_latency_p95", "s"),
    ("inference_queue_depth", "short"),
    ("gpu_utilization", "percent"),
)


# Series of ours and of kube-state-metrics that the dashboard reads: each selector gets CLUSTER.
_SERIES = re.compile(
    r'(?<![\w"])((?:adapter|gpu_collector|inference|kube_horizontalpodautoscaler)_\w*)(\{)?'
)
CLUSTER = 'cluster=~"$cluster"'


def with_cluster(expr: str) -> str:
    """Every series selector of ``expr`` restricted to the dashboard's ``$cluster``.

    With the "All" value (``.*``) a setup without a ``cluster`` label matches as before.
    """

    def one(m: re.Match[str]) -> str:
        name, brace = m.group(1), m.group(2)
        return f"{name}{{{CLUSTER}," if brace else f"{name}{{{CLUSTER}}}"

    return _SERIES.sub(one, expr)


@dataclass(frozen=True)
class Panel:
    """A timeseries panel's content; ``unit`` for every query, ``units`` (refId -> unit)
    where one differs. Where it stands is the layout's business (``_layout``)."""

    title: str
    targets: list[tuple[str, str]]
    unit: str
    description: str = ""
    units: dict[str, str] = field(default_factory=dict)


def _panel(pid: int, panel: Panel, x: int, y: int, w: int, h: int = 8) -> dict[str, Any]:
    overrides = [
        {
            "matcher": {"id": "byFrameRefID", "options": ref},
            "properties": [{"id": "unit", "value": value}],
        }
        for ref, value in sorted(panel.units.items())
    ]
    return {
        "id": pid,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": overrides},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom"},
            "tooltip": {"mode": "multi"},
        },
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DS,
                "expr": with_cluster(expr),
                "legendFormat": legend,
            }
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }


def _row(pid: int, title: str, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": [],
    }


def _layout(sections: list[tuple[str, list[list[Panel]]]]) -> list[dict[str, Any]]:
    """Grafana panels: each section a row header over lines of panels 8 high, the panels
    of a line side by side in equal widths of the 24 columns; ids numbered from 1."""
    panels: list[dict[str, Any]] = []
    pid = count(1)
    y = 0
    for title, lines in sections:
        panels.append(_row(next(pid), title, y))
        y += 1
        for line in lines:
            width = 24 // len(line)
            panels += [_panel(next(pid), p, width * i, y, width) for i, p in enumerate(line)]
            y += 8
    return panels


def dashboard() -> dict[str, Any]:
    served = [
        Panel(
            f"{metric}: served per pod vs HPA target",
            [
                (
                    f'max by (namespace, name) (adapter_served_value{{metric="{metric}",kind="Pod",{NS}}})',
                    "{{namespace}}/{{name}}",
                ),
                (
                    f'max by (namespace, horizontalpodautoscaler) (kube_horizontalpodautoscaler_spec_target_metric{{metric_name="{metric}",{NS}}})',
                    "target {{namespace}}/{{horizontalpodautoscaler}}",
                ),
            ],
            unit,
            description="The last value the adapter served for each pod (adapter_served_value) "
            "and the HPA's target from kube-state-metrics. Pods omitted (not Ready, warming up, "
            "no value) have no line.",
        )
        for metric, unit in SERVED
    ]
    hpa_sees = [
        served,
        [
            Panel(
                "Values served and age of the samples behind them",
                [
                    (
                        "sum by (metric) (rate(adapter_values_served_total[$__rate_interval]))",
                        "served/s {{metric}}",
                    ),
                    (
                        f"max by (metric) (adapter_served_sample_age_seconds{{{NS}}})",
                        "max sample age {{metric}}",
                    ),
                ],
                "ops",
                units={"B": "s"},
            ),
            Panel(
                "Pods omitted by reason",
                [
                    (
                        "sum by (metric, reason) (rate(adapter_pods_omitted_total[$__rate_interval]))",
                        "{{metric}} {{reason}}",
                    )
                ],
                "ops",
                description="Never served as zero: not_ready, warming_up (serving.warmup), no_value "
                "(no sample, NaN or stale).",
            ),
        ],
    ]
    workload = [
        [
            Panel(
                "Inference latency p50 / p95 per pod",
                [
                    (
                        f"histogram_quantile(0.95, sum by (le, namespace, pod) (rate(inference_duration_seconds_bucket{{{NS}}}[2m])))",
                        "p95 {{namespace}}/{{pod}}",
                    ),
                    (
                        f"histogram_quantile(0.5, sum by (le, namespace, pod) (rate(inference_duration_seconds_bucket{{{NS}}}[2m])))",
                        "p50 {{namespace}}/{{pod}}",
                    ),
                ],
                "s",
            ),
            Panel(
                "Queue depth per pod",
                [
                    (
                        f"sum by (namespace, pod) (inference_queue_depth{{{NS}}})",
                        "{{namespace}}/{{pod}}",
                    )
                ],
                "short",
            ),
            Panel(
                "GPU utilization per pod",
                [
                    (
                        f"max by (namespace, pod) (gpu_collector_pod_gpu_utilization_percent{{{NS}}})",
                        "{{namespace}}/{{pod}}",
                    )
                ],
                "percent",
            ),
        ],
        [
            Panel(
                "GPU utilization per GPU",
                [
                    (
                        "max by (node, gpu, uuid) (gpu_collector_gpu_utilization_percent)",
                        "{{node}} GPU {{gpu}}",
                    ),
                    (
                        "max by (node, gpu, mig_index) (gpu_collector_mig_utilization_percent)",
                        "{{node}} GPU {{gpu}} MIG {{mig_index}}",
                    ),
                ],
                "percent",
            ),
            Panel(
                "GPU memory used per GPU",
                [
                    (
                        "max by (node, gpu) (gpu_collector_gpu_memory_used_bytes) / max by (node, gpu) (gpu_collector_gpu_memory_total_bytes)",
                        "{{node}} GPU {{gpu}}",
                    )
                ],
                "percentunit",
            ),
        ],
    ]
    health = [
        [
            Panel(
                "Adapter requests by route and code",
                [
                    (
                        "sum by (route, code) (rate(adapter_http_requests_total[$__rate_interval]))",
                        "{{route}} {{code}}",
                    )
                ],
                "reqps",
            ),
            Panel(
                "Adapter request latency",
                [
                    (
                        "histogram_quantile(0.99, sum by (le, route) (rate(adapter_http_request_duration_seconds_bucket[$__rate_interval])))",
                        "p99 {{route}}",
                    ),
                    (
                        "histogram_quantile(0.5, sum by (le, route) (rate(adapter_http_request_duration_seconds_bucket[$__rate_interval])))",
                        "p50 {{route}}",
                    ),
                ],
                "s",
            ),
            Panel(
                "Snapshot age",
                [
                    (
                        "max by (metric) (adapter_prometheus_snapshot_age_seconds)",
                        "prometheus {{metric}}",
                    ),
                    ("max by (node) (adapter_gpu_snapshot_age_seconds)", "gpu {{node}}"),
                ],
                "s",
            ),
        ],
        [
            Panel(
                "Prometheus queries: latency and errors",
                [
                    (
                        "histogram_quantile(0.99, sum by (le, metric) (rate(adapter_prometheus_query_duration_seconds_bucket[$__rate_interval])))",
                        "p99 {{metric}}",
                    ),
                    (
                        "sum by (metric) (rate(adapter_prometheus_query_errors_total[$__rate_interval]))",
                        "errors/s {{metric}}",
                    ),
                ],
                "s",
                units={"B": "ops"},
            ),
            Panel(
                "GPU collectors",
                [
                    ("max by (state) (adapter_gpu_collectors)", "{{state}}"),
                    (
                        "sum by (reason) (rate(adapter_gpu_pull_errors_total[$__rate_interval]))",
                        "pull errors/s {{reason}}",
                    ),
                    ("max(adapter_gpu_pods)", "pods with GPU values"),
                ],
                "short",
                units={"B": "ops"},
            ),
            Panel(
                "NVML errors",
                [
                    (
                        "sum by (node, gpu, kind) (rate(gpu_collector_nvml_errors_total[$__rate_interval]))",
                        "{{node}} GPU {{gpu}} {{kind}}",
                    )
                ],
                "ops",
            ),
        ],
    ]
    panels = _layout(
        [
            ("What the HPA sees", hpa_sees),
            ("Workload signals", workload),
            ("Adapter health", health),
        ]
    )
    return {
        "uid": "inference-metrics-adapter",
        "title": "Inference metrics adapter",
        "tags": ["inference", "hpa", "gpu"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                },
                {
                    # The `cluster` label that multi-cluster setups (Thanos, Mimir, remote
                    # write) add as an external label; "All" also matches series without it.
                    "name": "cluster",
                    "label": "Cluster",
                    "type": "query",
                    "datasource": DS,
                    "query": {
                        "query": 'label_values(up{job="inference-metrics-adapter"}, cluster)',
                        "refId": "cluster",
                    },
                    "definition": 'label_values(up{job="inference-metrics-adapter"}, cluster)',
                    "includeAll": True,
                    "multi": False,
                    "allValue": ".*",
                    "current": {},
                    "hide": 0,
                    "refresh": 2,
                    "sort": 1,
                },
                {
                    "name": "namespace",
                    "label": "Namespace",
                    "type": "query",
                    "datasource": DS,
                    "query": {
                        "query": 'label_values(adapter_served_value{cluster=~"$cluster"}, namespace)',
                        "refId": "ns",
                    },
                    "definition": 'label_values(adapter_served_value{cluster=~"$cluster"}, namespace)',
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {},
                    "hide": 0,
                    "refresh": 2,
                    "sort": 1,
                },
            ]
        },
        "panels": panels,
    }


def dashboard_text() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def _header(source: str) -> str:
    return f"# Generated by `.venv/bin/python -m tests.deploy.sync` from {source}: do not edit.\n"


def dashboard_configmap() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "inference-metrics-adapter-dashboard",
            "namespace": NAMESPACE,
            # Grafana's dashboard sidecar (kube-prometheus-stack) loads ConfigMaps with this label.
            "labels": {**LABELS, "grafana_dashboard": "1"},
        },
        "data": {"inference-metrics-adapter.json": dashboard_text()},
    }


def prometheus_rule() -> dict[str, Any]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "inference-metrics-adapter",
            "namespace": NAMESPACE,
            "labels": dict(LABELS),
        },
        "spec": {"groups": groups},
    }


def _dump(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, width=100, allow_unicode=True)


def rendered() -> dict[Path, str]:
    return {
        DASHBOARD: dashboard_text(),
        DASHBOARD_CONFIGMAP: _header("deploy/monitoring/dashboard.json")
        + _dump(dashboard_configmap()),
        PROMETHEUS_RULE: _header("deploy/monitoring/alerts.rules.yaml") + _dump(prometheus_rule()),
        ALERTS_TEST: _header("tests/deploy/alert_cases.py")
        + _dump(alert_cases.promtool_tests(ALERTS.name)),
    }


def main() -> None:
    for path, text in rendered().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
