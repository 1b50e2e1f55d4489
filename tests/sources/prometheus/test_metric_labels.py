"""Per-metric pod label names (``namespaceLabel``/``podLabel`` in a metric's block) and the
``dcgm-exporter`` family of ``gpu_utilization``, which names its own (``exported_*``).

Pure: the queries built, every validation message, the snapshot's attribution.
The real-Prometheus half is ``test_dcgm_with_prometheus.py``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from adapter.core.catalogue import Aggregation, MetricSpec
from adapter.core.model import DEPLOYMENTS, NODES, PODS, MetricName
from adapter.sources.prometheus import promql, snapshot
from adapter.sources.prometheus.families import DCGM_EXPORTER
from adapter.sources.prometheus.rules import (
    FamilyRule,
    PromLabels,
    RuleError,
    parse_prometheus_block,
    parse_rule,
)
from adapter.sources.prometheus.transport import PromSample

from .helpers import deployment_target, pod_key, pod_target, spec

GPU = MetricName("gpu_utilization")
FILE_LABELS = PromLabels(namespace="kubernetes_namespace", pod="kubernetes_pod_name")

# One block per form, without label keys.
FORMS: dict[str, tuple[str, dict[str, Any], Aggregation]] = {
    "histogram": (
        "my_latency",
        {"histogram": "my_duration_seconds", "selector": 'model="m"'},
        Aggregation.HISTOGRAM,
    ),
    "gauge": ("my_gauge", {"gauge": "my_queue", "selector": 'model="m"'}, Aggregation.SUM),
    "query": (
        "my_rate",
        {
            "query": "sum by (<<groupBy>>) (rate(my_total{<<matchers>>}[<<window>>]))",
            "window": "1m",
        },
        Aggregation.MEAN,
    ),
    "families": ("inference_queue_depth", {"families": ["vllm", "tgi"]}, Aggregation.SUM),
}


def queries(form: str, labels: PromLabels = FILE_LABELS, **own: str) -> list[str]:
    name, options, aggregate = FORMS[form]
    rule = parse_rule(spec(name, {**options, **own}, aggregate), labels)
    if isinstance(rule, FamilyRule):
        return [query for _, query in rule.queries()]
    return [rule.query()]


def gpu_spec(options: dict[str, Any], *resources: Any) -> MetricSpec:
    return MetricSpec(
        name=GPU,
        source="prometheus",
        resources=resources or (PODS, DEPLOYMENTS),
        aggregate=Aggregation.MEAN,
        options=options,
    )


DEFAULT = PromLabels()


def problems(parsed: MetricSpec, labels: PromLabels = DEFAULT) -> list[str]:
    with pytest.raises(RuleError) as caught:
        parse_rule(parsed, labels)
    return [f"{path}: {message}" for path, message in caught.value.problems]


# --- the metric's own labels override the file's, in every form ---


@pytest.mark.parametrize("form", list(FORMS))
def test_without_own_labels_the_files_are_used(form: str) -> None:
    for query in queries(form):
        assert "kubernetes_namespace" in query
        assert "kubernetes_pod_name" in query
        assert 'namespace!=""' not in query.replace("kubernetes_namespace", "")


@pytest.mark.parametrize("form", list(FORMS))
def test_own_labels_replace_the_files_for_this_metric_only(form: str) -> None:
    own = queries(form, podLabel="exported_pod", namespaceLabel="exported_namespace")
    files = queries(form)
    assert own == [
        q.replace("kubernetes_namespace", "exported_namespace").replace(
            "kubernetes_pod_name", "exported_pod"
        )
        for q in files
    ]


@pytest.mark.parametrize("form", list(FORMS))
def test_one_own_label_keeps_the_files_other(form: str) -> None:
    own = queries(form, podLabel="exported_pod")
    assert own == [q.replace("kubernetes_pod_name", "exported_pod") for q in queries(form)]


def test_exact_gauge_query_with_own_labels() -> None:
    assert queries("gauge", podLabel="exported_pod", namespaceLabel="exported_namespace") == [
        'label_replace(sum by (exported_namespace, exported_pod) (my_queue{exported_namespace!="",'
        'exported_pod!="",model="m"}), "adapter_part", "value", "", "") or label_replace(min by '
        '(exported_namespace, exported_pod) (timestamp(my_queue{exported_namespace!="",'
        'exported_pod!="",model="m"})), "adapter_part", "timestamp", "", "")'
    ]


def test_the_snapshot_attributes_by_the_metrics_own_labels() -> None:
    rule = parse_rule(
        spec("my_gauge", {"gauge": "my_queue", "podLabel": "exported_pod"}, Aggregation.SUM),
        PromLabels(),
    )
    at = 1000.0
    rows = [
        PromSample({"namespace": "ml", "exported_pod": "a", "pod": "exporter-x", **part}, at, v)
        for part, v in (
            ({promql.PART_LABEL: promql.PART_VALUE}, 3.0),
            ({promql.PART_LABEL: promql.PART_TIMESTAMP}, at),
        )
    ]
    snap = snapshot.build(rule, rows, at, 60.0)
    assert list(snap.pods) == [("ml", "a")]
    assert snap.pods[pod_key("ml", "a")].sample is not None
    sample = snap.pods[pod_key("ml", "a")].sample
    assert sample is not None
    assert sample.value == 3.0


# --- property: any valid label names, and only there ---

_RESERVED = {"le", promql.PART_LABEL, "adapter_series"}
_label_names = st.from_regex(promql.LABEL_NAME_RE, fullmatch=True).filter(
    lambda n: not n.startswith("__") and n not in _RESERVED
)


@given(form=st.sampled_from(list(FORMS)), namespace=_label_names, pod=_label_names)
def test_any_valid_label_names_land_only_where_the_pod_labels_go(
    form: str, namespace: str, pod: str
) -> None:
    assume(namespace != pod)
    assume(not {"NSLABEL", "PODLABEL"} & {namespace, pod})
    assume("NSLABEL" not in pod and "PODLABEL" not in namespace)
    placeholders = queries(form, podLabel="PODLABEL", namespaceLabel="NSLABEL")
    built = queries(form, podLabel=pod, namespaceLabel=namespace)
    # The same query text with the names substituted: the names change no structure.
    assert built == [q.replace("NSLABEL", namespace).replace("PODLABEL", pod) for q in placeholders]
    for query in built:
        promql.check_syntax(query)
        assert f'{namespace}!="",{pod}!=""' in query
        if form != "query":
            assert re.search(rf"by \({re.escape(namespace)}, {re.escape(pod)}[,)]", query)


@given(form=st.sampled_from(list(FORMS)), name=st.text(max_size=20))
def test_any_invalid_label_name_is_refused_never_rendered(form: str, name: str) -> None:
    assume(not promql.LABEL_NAME_RE.fullmatch(name) or name.startswith("__") or name in _RESERVED)
    metric, options, aggregate = FORMS[form]
    with pytest.raises(RuleError) as caught:
        parse_rule(spec(metric, {**options, "podLabel": name}, aggregate), PromLabels())
    assert [path for path, _ in caught.value.problems] == ["prometheus.podLabel"]


# --- every validation message ---


@pytest.mark.parametrize(
    ("own", "labels", "expected"),
    [
        (
            {"podLabel": 7},
            PromLabels(),
            ["prometheus.podLabel: must be a string"],
        ),
        (
            {"namespaceLabel": ["ns"]},
            PromLabels(),
            ["prometheus.namespaceLabel: must be a string"],
        ),
        (
            {"podLabel": "exported-pod"},
            PromLabels(),
            [
                "prometheus.podLabel: label name 'exported-pod' is not a valid Prometheus label "
                "name (letters, digits and '_', not starting with a digit)"
            ],
        ),
        (
            {"namespaceLabel": "1ns"},
            PromLabels(),
            [
                "prometheus.namespaceLabel: label name '1ns' is not a valid Prometheus label "
                "name (letters, digits and '_', not starting with a digit)"
            ],
        ),
        (
            {"podLabel": "__name__"},
            PromLabels(),
            ["prometheus.podLabel: label name '__name__' is reserved (names starting with '__')"],
        ),
        (
            {"podLabel": "le"},
            PromLabels(),
            ["prometheus.podLabel: 'le' is reserved for the adapter's own queries"],
        ),
        (
            {"namespaceLabel": "adapter_part"},
            PromLabels(),
            ["prometheus.namespaceLabel: 'adapter_part' is reserved for the adapter's own queries"],
        ),
        (
            {"podLabel": "adapter_series"},
            PromLabels(),
            ["prometheus.podLabel: 'adapter_series' is reserved for the adapter's own queries"],
        ),
        (
            {"podLabel": "namespace"},
            PromLabels(),
            ["prometheus.podLabel: must differ from namespaceLabel ('namespace')"],
        ),
        (
            {"namespaceLabel": "kubernetes_pod_name"},
            FILE_LABELS,
            ["prometheus.namespaceLabel: must differ from podLabel ('kubernetes_pod_name')"],
        ),
        (
            {"namespaceLabel": "x", "podLabel": "x"},
            PromLabels(),
            ["prometheus.podLabel: must differ from namespaceLabel ('x')"],
        ),
        (
            {"podLabel": "", "namespaceLabel": "ok"},
            PromLabels(),
            [
                "prometheus.podLabel: label name '' is not a valid Prometheus label "
                "name (letters, digits and '_', not starting with a digit)"
            ],
        ),
    ],
)
@pytest.mark.parametrize("form", list(FORMS))
def test_invalid_own_labels(
    form: str, own: dict[str, Any], labels: PromLabels, expected: list[str]
) -> None:
    name, options, aggregate = FORMS[form]
    assert problems(spec(name, {**options, **own}, aggregate), labels) == expected


def test_the_files_block_messages_are_unchanged() -> None:
    with pytest.raises(RuleError) as caught:
        parse_prometheus_block({"podLabel": "namespace", "namespaceLabel": "namespace", "x": 1})
    assert caught.value.problems == [
        ("prometheus.x", "unknown key (known: namespaceLabel, podLabel)"),
        ("prometheus.podLabel", "must differ from namespaceLabel"),
    ]


def test_unknown_keys_list_the_label_keys() -> None:
    assert problems(spec("my_gauge", {"gauge": "q", "podlabel": "p"})) == [
        "prometheus.podlabel: unknown key for a gauge rule (known: gauge, namespaceLabel, "
        "podLabel, selector)"
    ]


# --- the dcgm-exporter family ---

DCGM_QUERY = (
    "label_replace(avg by (exported_namespace, exported_pod) (DCGM_FI_DEV_GPU_UTIL"
    '{exported_namespace!="",exported_pod!=""}), "adapter_part", "value", "", "") or '
    "label_replace(min by (exported_namespace, exported_pod) (timestamp(DCGM_FI_DEV_GPU_UTIL"
    '{exported_namespace!="",exported_pod!=""})), "adapter_part", "timestamp", "", "")'
)


def dcgm_rule(labels: PromLabels = DEFAULT, **options: Any) -> FamilyRule:
    rule = parse_rule(gpu_spec({"families": [DCGM_EXPORTER], **options}), labels)
    assert isinstance(rule, FamilyRule)
    return rule


def test_dcgm_reads_exported_labels_by_default_whatever_the_files_labels() -> None:
    assert dcgm_rule().queries() == ((DCGM_EXPORTER, DCGM_QUERY),)
    assert dcgm_rule(FILE_LABELS).queries() == ((DCGM_EXPORTER, DCGM_QUERY),)
    assert dcgm_rule(FILE_LABELS).labels_for(0) == PromLabels("exported_namespace", "exported_pod")


def test_dcgm_with_honor_labels_switches_to_namespace_and_pod() -> None:
    rule = dcgm_rule(FILE_LABELS, namespaceLabel="namespace", podLabel="pod")
    ((_, query),) = rule.queries()
    assert query == DCGM_QUERY.replace("exported_namespace", "namespace").replace(
        "exported_pod", "pod"
    )
    # One key only: the other stays dcgm-exporter's default, not the file's.
    ((_, query),) = dcgm_rule(FILE_LABELS, podLabel="pod").queries()
    assert query == DCGM_QUERY.replace("exported_pod", "pod")


def test_dcgm_selector_and_label_clash_with_its_default() -> None:
    ((_, query),) = dcgm_rule(selector='job="dcgm"').queries()
    assert 'DCGM_FI_DEV_GPU_UTIL{exported_namespace!="",exported_pod!="",job="dcgm"}' in query
    assert problems(gpu_spec({"families": [DCGM_EXPORTER], "podLabel": "exported_namespace"})) == [
        "prometheus.podLabel: must differ from namespaceLabel "
        "('exported_namespace', dcgm-exporter's default)"
    ]


def test_dcgm_is_not_served_for_nodes() -> None:
    assert problems(gpu_spec({"families": [DCGM_EXPORTER]}, PODS, NODES)) == [
        "resources: nodes: dcgm-exporter has one series per GPU, attributed to pods; a node's "
        "value would be the mean over its pods, not over its GPUs: list pods and workloads only"
    ]


def test_dcgm_only_for_gpu_utilization() -> None:
    assert problems(
        spec("inference_queue_depth", {"families": [DCGM_EXPORTER]}, Aggregation.SUM)
    ) == [
        "prometheus.families: no series for inference_queue_depth in 'dcgm-exporter' "
        "(families with one: vllm, sglang, trtllm-serve, triton-trtllm, triton, tgi, nim, "
        "knative, generic)"
    ]


def test_dcgm_snapshot_means_over_a_pods_gpus_and_ignores_gpus_without_a_pod() -> None:
    rule = dcgm_rule()
    at = 5000.0

    def rows(labels: dict[str, str], value: float, stamp: float) -> list[PromSample]:
        return [
            PromSample({**labels, promql.PART_LABEL: promql.PART_VALUE}, at, value),
            PromSample({**labels, promql.PART_LABEL: promql.PART_TIMESTAMP}, at, stamp),
        ]

    # What Prometheus answers the query with: avg by (exported_*) already taken.
    vector = [
        *rows({"exported_namespace": "ml", "exported_pod": "a"}, 57.5, at - 1),
        *rows({"exported_namespace": "ml", "exported_pod": "nan"}, float("nan"), at - 1),
        *rows({"exported_namespace": "ml", "exported_pod": "old"}, 40.0, at - 120),
        # Never asked for, but must not land on a pod named after the exporter.
        *rows({"namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-x"}, 88.0, at - 1),
    ]
    snap = snapshot.build_families(rule, [vector], at, 45.0)
    values = {key: v.sample.value if v.sample else None for key, v in snap.pods.items()}
    # NaN and stale pods belong to the family but have no value of their own.
    assert values == {("ml", "a"): 57.5, ("ml", "nan"): None, ("ml", "old"): None}
    assert snap.pods[pod_key("ml", "a")].family == DCGM_EXPORTER
    assert dict(snap.dropped) == {"nan": 1, "stale": 1, "unattributed": 2}
    targets = [
        pod_target(ns, name) for ns, name in (*values, ("gpu-operator", "nvidia-dcgm-exporter-x"))
    ]
    fleet = deployment_target("ml", "llm", ["a", "nan", "old"])
    answered = snapshot.answer(snap, [*targets, fleet], at)
    assert {(ref.kind, ref.name): s.value for ref, s in answered.items()} == {
        (PODS, "a"): 57.5,
        (DEPLOYMENTS, "llm"): 57.5,  # the mean over the pods that have a value: only a
    }
