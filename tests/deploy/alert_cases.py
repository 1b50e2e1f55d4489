"""promtool unit tests for deploy/monitoring/alerts.rules.yaml: each alert firing and not firing.

Each case feeds series, evaluates once, and lists the alerts expected with their labels and
``$value``. Expected annotations are rendered here from the rules' templates by a small,
independent implementation of the few template forms they use, so a wrong label or value in an
annotation fails the test too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "alerts.rules.yaml"

ADAPTER = 'job="inference-metrics-adapter",namespace="inference-metrics"'
COLLECTOR = 'job="gpu-collector",namespace="inference-metrics"'

# (alertname, eval_time, input series {series: values}, expected [(labels, value)]).
# Every case's series include some that must not fire.
CASES: list[tuple[str, str, dict[str, str], list[tuple[dict[str, str], float]]]] = [
    (
        "InferenceMetricsAdapterDown",
        "10m",
        {f'up{{{ADAPTER},pod="a"}}': "0x10", f'up{{{ADAPTER},pod="b"}}': "0x10"},
        [({}, 1)],
    ),
    (
        "InferenceMetricsAdapterDown",
        "10m",  # one replica up: not down
        {f'up{{{ADAPTER},pod="a"}}': "0x10", f'up{{{ADAPTER},pod="b"}}': "1x10"},
        [],
    ),
    (
        "InferenceMetricsAdapterDown",
        "3m",  # nothing scraped at all, but not for 5m yet
        {'up{job="other"}': "1x10"},
        [],
    ),
    (
        "InferenceMetricsAdapterReplicaDown",
        "15m",
        {f'up{{{ADAPTER},pod="a"}}': "0x15", f'up{{{ADAPTER},pod="b"}}': "1x15"},
        [({"job": "inference-metrics-adapter", "namespace": "inference-metrics", "pod": "a"}, 0)],
    ),
    (
        "CustomMetricsAPIServiceUnavailable",
        "10m",
        {
            'aggregator_unavailable_apiservice{name="v1beta2.custom.metrics.k8s.io",instance="x"}': "1x10",
            'aggregator_unavailable_apiservice{name="v1beta1.custom.metrics.k8s.io",instance="x"}': "0x10",
            'aggregator_unavailable_apiservice{name="v1beta1.metrics.k8s.io",instance="x"}': "1x10",
        },
        [({"name": "v1beta2.custom.metrics.k8s.io"}, 1)],
    ),
    (
        "InferenceMetricsPrometheusSnapshotStale",
        "10m",
        {
            f'adapter_prometheus_snapshot_age_seconds{{{ADAPTER},pod="a",metric="inference_queue_depth"}}': "200x10",
            f'adapter_prometheus_snapshot_age_seconds{{{ADAPTER},pod="a",metric="inference_latency_p95"}}': "10x10",
        },
        [({"metric": "inference_queue_depth"}, 200)],
    ),
    (
        "InferenceMetricsPrometheusQueryErrors",
        "20m",
        {
            f'adapter_prometheus_query_errors_total{{{ADAPTER},pod="a",metric="inference_latency_p95"}}': "0+5x20",
            f'adapter_prometheus_query_duration_seconds_count{{{ADAPTER},pod="a",metric="inference_latency_p95"}}': "0+10x20",
            f'adapter_prometheus_query_errors_total{{{ADAPTER},pod="a",metric="inference_queue_depth"}}': "0x20",
            f'adapter_prometheus_query_duration_seconds_count{{{ADAPTER},pod="a",metric="inference_queue_depth"}}': "0+10x20",
        },
        [({"metric": "inference_latency_p95"}, 0.5)],
    ),
    (
        "InferenceMetricsGpuSnapshotStale",
        "10m",
        {
            f'adapter_gpu_snapshot_age_seconds{{{ADAPTER},pod="a",node="gpu-1",simulated="false"}}': "60x10",
            f'adapter_gpu_snapshot_age_seconds{{{ADAPTER},pod="a",node="gpu-2",simulated="false"}}': "5x10",
        },
        [({"node": "gpu-1"}, 60)],
    ),
    (
        "GpuCollectorsNotAnswering",
        "10m",
        {
            f'adapter_gpu_collectors{{{ADAPTER},pod="a",state="discovered"}}': "3x10",
            f'adapter_gpu_collectors{{{ADAPTER},pod="a",state="answering"}}': "2x10",
            f'adapter_gpu_collectors{{{ADAPTER},pod="b",state="discovered"}}': "3x10",
            f'adapter_gpu_collectors{{{ADAPTER},pod="b",state="answering"}}': "3x10",
        },
        [({"job": "inference-metrics-adapter", "namespace": "inference-metrics", "pod": "a"}, 1)],
    ),
    (
        "GpuCollectorDown",
        "10m",
        {f'up{{{COLLECTOR},pod="c1"}}': "0x10", f'up{{{COLLECTOR},pod="c2"}}': "1x10"},
        [({"job": "gpu-collector", "namespace": "inference-metrics", "pod": "c1"}, 0)],
    ),
    (
        "GpuCollectorNvmlErrors",
        "20m",
        {
            f'gpu_collector_nvml_errors_total{{{COLLECTOR},node="gpu-1",gpu="0",kind="gpu_lost"}}': "0+6x20",
            f'gpu_collector_nvml_errors_total{{{COLLECTOR},node="gpu-1",gpu="1",kind="gpu_lost"}}': "0x20",
        },
        [({"node": "gpu-1", "gpu": "0", "kind": "gpu_lost"}, 0.1)],
    ),
    (
        "GpuUnhealthy",
        "10m",
        {
            f'gpu_collector_gpu_status{{{COLLECTOR},node="gpu-1",gpu="0",uuid="GPU-a",status="lost"}}': "1x10",
            f'gpu_collector_gpu_status{{{COLLECTOR},node="gpu-1",gpu="1",uuid="GPU-b",status="ok"}}': "1x10",
        },
        [({"node": "gpu-1", "gpu": "0", "uuid": "GPU-a", "status": "lost"}, 1)],
    ),
    (
        "InferenceMetricsManyPodsOmitted",
        "30m",
        {
            # a: half the pods have no value.
            f'adapter_pods_omitted_total{{{ADAPTER},pod="a",metric="inference_queue_depth",reason="no_value"}}': "0+6x30",
            f'adapter_values_served_total{{{ADAPTER},pod="a",metric="inference_queue_depth"}}': "0+6x30",
            # b: a few warming pods among many served: fine.
            f'adapter_pods_omitted_total{{{ADAPTER},pod="a",metric="inference_latency_p95",reason="warming_up"}}': "0+1x30",
            f'adapter_values_served_total{{{ADAPTER},pod="a",metric="inference_latency_p95"}}': "0+30x30",
            # c: nothing served at all (the worst case must still fire).
            f'adapter_pods_omitted_total{{{ADAPTER},pod="a",metric="gpu_utilization",reason="not_ready"}}': "0+3x30",
        },
        [
            ({"metric": "inference_queue_depth", "reason": "no_value"}, 0.5),
            ({"metric": "gpu_utilization", "reason": "not_ready"}, 1),
        ],
    ),
    (
        "HorizontalPodAutoscalerCannotReadInferenceMetrics",
        "15m",
        {
            # h1 scales on our metric and cannot read it.
            'kube_horizontalpodautoscaler_status_condition{namespace="ml",horizontalpodautoscaler="h1",condition="ScalingActive",status="false"}': "1x15",
            'kube_horizontalpodautoscaler_spec_target_metric{namespace="ml",horizontalpodautoscaler="h1",metric_name="inference_queue_depth",metric_target_type="average"}': "10x15",
            # h2 cannot scale, but on CPU: not ours.
            'kube_horizontalpodautoscaler_status_condition{namespace="ml",horizontalpodautoscaler="h2",condition="ScalingActive",status="false"}': "1x15",
            'kube_horizontalpodautoscaler_spec_target_metric{namespace="ml",horizontalpodautoscaler="h2",metric_name="cpu",metric_target_type="utilization"}': "70x15",
            # h3 is ours and healthy.
            'kube_horizontalpodautoscaler_status_condition{namespace="ml",horizontalpodautoscaler="h3",condition="ScalingActive",status="false"}': "0x15",
            'kube_horizontalpodautoscaler_spec_target_metric{namespace="ml",horizontalpodautoscaler="h3",metric_name="inference_latency_p95",metric_target_type="average"}': "0.5x15",
        },
        [({"namespace": "ml", "horizontalpodautoscaler": "h1"}, 1)],
    ),
]


def _humanize_duration(v: float) -> str:
    if abs(v) < 1:
        return f"{v:.4g}s"
    seconds = int(v)
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h {minutes}m {secs}s"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{v:.4g}s"


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


_TEMPLATE = re.compile(r"\{\{\s*\$(labels\.(\w+)|value)\s*(?:\|\s*(\w+)\s*)?\}\}")


def render(template: str, labels: dict[str, str], value: float) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(2):
            return labels.get(m.group(2), "")
        fn = m.group(3)
        if fn == "humanizeDuration":
            return _humanize_duration(value)
        if fn == "humanizePercentage":
            return f"{value * 100:.4g}%"
        assert fn is None, f"template function {fn} not implemented here"
        return _number(value)

    out = _TEMPLATE.sub(one, template)
    assert "{{" not in out, f"unsupported template in {template!r}"
    return out


def _rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def promtool_tests(rule_file: str) -> dict[str, Any]:
    rules = _rules()
    tests = []
    for name, at, series, expected in CASES:
        rule = rules[name]
        alerts = []
        for labels, value in expected:
            all_labels = {**labels, **rule.get("labels", {})}
            annotations = {
                k: render(v, all_labels, value) for k, v in rule.get("annotations", {}).items()
            }
            alerts.append({"exp_labels": all_labels, "exp_annotations": annotations})
        tests.append(
            {
                "name": f"{name} at {at}" + ("" if expected else " (not firing)"),
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": alerts}],
            }
        )
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}


def alerts_covered() -> tuple[set[str], set[str]]:
    """(alerts with a firing case, alerts with a not-firing case or non-firing series)."""
    firing = {name for name, _, _, expected in CASES if expected}
    quiet = {
        name for name, _, series, expected in CASES if not expected or len(series) > len(expected)
    }
    return firing, quiet
