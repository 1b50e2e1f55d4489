"""The explain report from given views: the README's three troubleshooting cases, exactly.

The views are what ``?explain=true`` returns (``adapter.api.explain``), trimmed to
the fields the report reads; the pods are the API server's list for the selector.
"""

from __future__ import annotations

from typing import Any

from adapter.explain.report import MetricInput, build_report, render_table
from adapter.hpa.calculator import PodState
from adapter.hpa.spec import parse_hpa
from tests.support.hpa import hpa_object

# The default rule's query, as adapter.sources.prometheus builds it.
QUERY = (
    'label_replace(sum by (namespace, pod) (inference_queue_depth{namespace!="",pod!=""}), '
    '"adapter_part", "value", "", "") or label_replace(min by (namespace, pod) '
    '(timestamp(inference_queue_depth{namespace!="",pod!=""})), "adapter_part", "timestamp", '
    '"", "")'
)


def hpa(metric: str = "inference_queue_depth", target: str = "10") -> Any:
    return parse_hpa(hpa_object(name="llm", target="llm", metric=metric, average=target))


def row(name: str, milli: int | None, reason: str | None, *, ready: bool = True) -> dict[str, Any]:
    value = None if milli is None else f"{milli}m"
    return {"name": name, "phase": "Running", "ready": ready, "deleting": False,
            "value": value, "milliValue": milli, "reason": reason}  # fmt: skip


def view(rows: list[dict[str, Any]], query: str = QUERY, form: str = "gauge") -> dict[str, Any]:
    return {
        "source": "prometheus",
        "rule": {"form": form, "query": query, "snapshotAgeSeconds": 4.2},
        "pods": rows,
        "items": [
            {"name": r["name"], "value": r["value"], "milliValue": r["milliValue"]}
            for r in rows
            if r["milliValue"] is not None
        ],
    }


def test_a_pod_that_is_not_ready() -> None:
    spec = hpa()
    rows = [row("llm-0", 30_000, None), row("llm-1", None, "not_ready", ready=False)]
    pods = [PodState("llm-0"), PodState("llm-1", ready=False)]
    report = build_report(spec, 2, 2, pods, [MetricInput(spec.metrics[0], view(rows))])
    assert render_table(report) == NOT_READY
    assert (report["desiredReplicas"], report["metrics"][0]["desiredReplicas"]) == (3, 3)


NOT_READY = """\
HPA ml/llm -> Deployment/llm: 2 replicas (min 1, max 10) -> desired 3
\nPods metric inference_queue_depth (target AverageValue 10)
  source prometheus, form gauge, snapshot 4s old
  query: label_replace(sum by (namespace, pod) (inference_queue_depth{namespace!="",pod!=""}), "adapter_part", "value", "", "") or label_replace(min by (namespace, pod) (timestamp(inference_queue_depth{namespace!="",pod!=""})), "adapter_part", "timestamp", "", "")
  POD    PHASE    READY  VALUE  HPA      REASON
  llm-0  Running  true   30     counted  -
  llm-1  Running  false  -      missing  not_ready
  -> usage 30; ratio 3.000; over 1 pods with values; missing pods counted as 0; rebalanced ratio 1.500 -> desired 3
\nLargest proposal 3; within min/max and behavior: 3 (DesiredWithinRange)
"""


def test_no_samples_in_the_window() -> None:
    spec = hpa("inference_latency_p95", "500m")
    query = (
        "sum by (namespace, pod, le) (rate(inference_duration_seconds_bucket"
        '{namespace!="",pod!=""}[2m]))'
    )
    rows = [row("llm-0", 400, None), row("llm-1", None, "nan")]
    pods = [PodState("llm-0"), PodState("llm-1")]
    report = build_report(
        spec, 2, 2, pods, [MetricInput(spec.metrics[0], view(rows, query, "histogram"))]
    )
    assert render_table(report) == NO_SAMPLES
    assert report["desiredReplicas"] == 2
    assert report["holdBack"] == []


NO_SAMPLES = """\
HPA ml/llm -> Deployment/llm: 2 replicas (min 1, max 10) -> desired 2
\nPods metric inference_latency_p95 (target AverageValue 500m)
  source prometheus, form histogram, snapshot 4s old
  query: sum by (namespace, pod, le) (rate(inference_duration_seconds_bucket{namespace!="",pod!=""}[2m]))
  POD    PHASE    READY  VALUE  HPA      REASON
  llm-0  Running  true   0.4    counted  -
  llm-1  Running  true   -      missing  nan
  -> usage 0.4; ratio 0.800; over 1 pods with values; missing pods counted as the target; rebalanced ratio 0.900; within the 0.1 tolerance: keep the current count -> desired 2
\nLargest proposal 2; within min/max and behavior: 2 (DesiredWithinRange)
"""


def test_the_selector_matches_nothing() -> None:
    spec = hpa()
    report = build_report(spec, 2, 2, [], [MetricInput(spec.metrics[0], view([]))])
    assert render_table(report) == NOTHING
    assert (report["desiredReplicas"], report["proposal"], report["metrics"][0]["error"]) == (
        2,
        None,
        "failed to get pods metric value: unable to get metric inference_queue_depth: "
        "no metrics returned from custom metrics API",
    )


NOTHING = """\
HPA ml/llm -> Deployment/llm: 2 replicas (min 1, max 10) -> desired 2
\nPods metric inference_queue_depth (target AverageValue 10)
  source prometheus, form gauge, snapshot 4s old
  query: label_replace(sum by (namespace, pod) (inference_queue_depth{namespace!="",pod!=""}), "adapter_part", "value", "", "") or label_replace(min by (namespace, pod) (timestamp(inference_queue_depth{namespace!="",pod!=""})), "adapter_part", "timestamp", "", "")
  no pod matches the HPA's selector
  -> no proposal: failed to get pods metric value: unable to get metric inference_queue_depth: no metrics returned from custom metrics API
\nThe HPA does not scale: invalid metrics (1 invalid out of 1), first error is: failed to get pods metric value: unable to get metric inference_queue_depth: no metrics returned from custom metrics API
"""


def test_served_values_the_hpa_does_not_count_are_listed() -> None:
    spec = hpa()
    # The adapter still serves llm-old, which the API server no longer lists (deleted),
    # and llm-2 is Pending to the HPA: its value is dropped.
    rows = [row("llm-0", 10_000, None), row("llm-2", 50_000, None), row("llm-old", 90_000, None)]
    pods = [PodState("llm-0"), PodState("llm-2", phase="Pending", ready=False)]
    report = build_report(spec, 2, 2, pods, [MetricInput(spec.metrics[0], view(rows))])
    metric = report["metrics"][0]
    assert [(p["name"], p["hpa"], p["reason"]) for p in metric["pods"]] == [
        ("llm-0", "counted", None),
        ("llm-2", "unready", None),
        ("llm-old", "not_listed", "deleted"),
    ]
    assert metric["notCounted"] == [
        {
            "name": "llm-2",
            "value": 50_000,
            "why": "served, but the HPA drops values of Pending, Failed and deleting pods",
        },
        {
            "name": "llm-old",
            "value": 90_000,
            "why": "served for a pod the HPA's selector does not list: averaged in anyway",
        },
    ]
    # (10 + 90) / 2 = 50 -> ratio 5; llm-2 unready counts 0 on a scale-up: 100 / 3 = 33.333
    # -> 3.3333 -> ceil(10.0) = 10.
    assert (metric["usageMilli"], metric["rebalancedRatio"], metric["desiredReplicas"]) == (
        50_000,
        3.3333,
        10,
    )
    assert report["desiredReplicas"] == 4  # no behavior: at most max(2 x 2, 4) this sync
    assert report["holdBack"] == [
        "scale-up rate limit: 10 wanted, 4 allowed this sync by at most max(2 x current, 4) per "
        "sync (no behavior set); more follows in later syncs"
    ]


def test_scale_down_is_held_by_the_window_and_said_so() -> None:
    spec = hpa()
    rows = [row("llm-0", 2_000, None), row("llm-1", 2_000, None)]
    pods = [PodState("llm-0"), PodState("llm-1")]
    report = build_report(spec, 2, 2, pods, [MetricInput(spec.metrics[0], view(rows))])
    assert report["desiredReplicas"] == 1
    assert report["holdBack"] == [
        "scale-down stabilization: the HPA goes to 1 only once every recommendation of the "
        "last 300s is at most 1; until then it applies the highest of them"
    ]


def test_an_unreachable_adapter_is_the_metrics_error() -> None:
    spec = hpa()
    metric = MetricInput(spec.metrics[0], None, "cannot reach https://127.0.0.1:1: refused")
    report = build_report(spec, 2, 2, [PodState("llm-0")], [metric])
    assert report["metrics"][0]["error"] == (
        "failed to get pods metric value: unable to get metric inference_queue_depth: "
        "cannot reach https://127.0.0.1:1: refused"
    )
    assert report["desiredReplicas"] == 2


def object_hpa(target: dict[str, str]) -> Any:
    return parse_hpa(
        {
            "metadata": {"name": "llm", "namespace": "ml"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
                "maxReplicas": 10,
                "metrics": [
                    {
                        "type": "Object",
                        "object": {
                            "describedObject": {
                                "apiVersion": "apps/v1",
                                "kind": "Deployment",
                                "name": "llm",
                            },
                            "metric": {"name": "inference_latency_p95"},
                            "target": target,
                        },
                    }
                ],
            },
        }
    )


def object_view(milli: int) -> dict[str, Any]:
    return {
        "source": "prometheus",
        "rule": {},
        "pods": [row("llm-0", None, None), row("llm-1", None, "not_ready", ready=False)],
        "items": [{"name": "llm", "value": f"{milli}m", "milliValue": milli}],
    }


def test_object_metric_value_target_counts_ready_pods() -> None:
    spec = object_hpa({"type": "Value", "value": "500m"})
    pods = [PodState("llm-0"), PodState("llm-1", ready=False)]
    report = build_report(spec, 2, 2, pods, [MetricInput(spec.metrics[0], object_view(1_500))])
    metric = report["metrics"][0]
    # ratio 3 over the 1 Running-and-Ready pod: ceil(3 * 1) = 3.
    assert (metric["describedObject"], metric["ratio"], metric["readyPods"]) == (
        "Deployment/llm",
        3.0,
        1,
    )
    assert (metric["desiredReplicas"], report["desiredReplicas"]) == (3, 3)


def test_object_metric_average_value_target_uses_status_replicas() -> None:
    spec = object_hpa({"type": "AverageValue", "averageValue": "500m"})
    report = build_report(spec, 2, 4, [], [MetricInput(spec.metrics[0], object_view(1_500))])
    metric = report["metrics"][0]
    # 1500 / (500 * 4 status replicas) = 0.75 -> ceil(1500 / 500) = 3; usage ceil(1500 / 4).
    assert (metric["ratio"], metric["desiredReplicas"], metric["usageMilli"]) == (0.75, 3, 375)


def test_object_metric_without_a_value_fails_like_the_controller() -> None:
    spec = object_hpa({"type": "Value", "value": "500m"})
    view = {**object_view(1), "items": []}
    report = build_report(spec, 2, 2, [PodState("llm-0")], [MetricInput(spec.metrics[0], view)])
    assert report["metrics"][0]["error"] == (
        "failed to get object metric value: unable to get metric inference_latency_p95: "
        "no value for the object"
    )
    assert (report["proposal"], report["desiredReplicas"]) == (None, 2)


def test_the_hpas_own_conditions_close_the_table() -> None:
    spec = hpa()
    rows = [row("llm-0", 10_000, None)]
    report = build_report(
        spec, 1, 1, [PodState("llm-0")], [MetricInput(spec.metrics[0], view(rows))]
    )
    report["hpaStatus"] = {
        "conditions": [
            {"type": "AbleToScale", "status": "True", "reason": "ScaleDownStabilized",
             "message": "recent recommendations were higher than current one"},
        ]
    }  # fmt: skip
    assert render_table(report).splitlines()[-1] == (
        "HPA condition AbleToScale=True ScaleDownStabilized: "
        "recent recommendations were higher than current one"
    )


def test_a_family_reported_by_the_adapter_gets_a_column() -> None:
    spec = hpa()
    rows = [{**row("llm-0", 10_000, None), "family": "vllm"}, row("llm-1", None, "no_value")]
    pods = [PodState("llm-0"), PodState("llm-1")]
    report = build_report(spec, 2, 2, pods, [MetricInput(spec.metrics[0], view(rows))])
    assert report["metrics"][0]["pods"][0]["family"] == "vllm"
    assert "family" not in report["metrics"][0]["pods"][1]
    table = render_table(report).splitlines()
    start = table.index("  POD    PHASE    READY  VALUE  HPA      REASON    FAMILY")
    assert table[start + 1 : start + 3] == [
        "  llm-0  Running  true   10     counted  -         vllm",
        "  llm-1  Running  true   -      missing  no_value  -",
    ]
