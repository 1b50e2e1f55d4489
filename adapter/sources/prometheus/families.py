"""Server families: the series real inference servers export, per built-in metric.

With no rules file, each built-in metric is read from every family below in
one query per family per refresh, and **per pod the first family with data
wins**, in this documented order (:data:`PRESETS`)::

    vllm, sglang, trtllm-serve, triton-trtllm, triton, tgi, nim, knative, generic

and one exporter family, ``dcgm-exporter``, for ``gpu_utilization`` (NVIDIA's
dcgm-exporter, ``DCGM_FI_DEV_GPU_UTIL``, percent 0-100, one series per GPU; per
pod the mean over the pod's GPUs, as our collector's value). Its series carry
the pod in ``exported_namespace``/``exported_pod`` (dcgm-exporter's own
``namespace``/``pod`` labels, renamed by a scrape without ``honorLabels``): a
family may name its own pod labels (:attr:`Family.namespace_label`,
:attr:`Family.pod_label`), which a metric's own ``namespaceLabel``/``podLabel``
override and which override the file's.

"Has data" means the family's query returned at least one series for the pod
(an idle vLLM pod whose histogram has no traffic in the window still belongs to
vLLM: its p95 is omitted, never taken from another family). The chosen family
is kept per pod in the snapshot (``PodValue.family``), on every Sample
(``Sample.family``), as the ``family`` label of ``adapter_served_value``, and
in ``check-config``'s output.

Every value is normalised: latency in seconds (Triton µs / 1e6, Knative <= 1.18
ms / 1000), queue depth and running requests in requests, KV-cache use in percent
0-100 (fractions * 100). The conversion is applied after the quantile or the
per-pod combination, so a value equals the server's own PromQL followed by the
same division or multiplication, bit for bit.

Renames between releases are alternatives of one family (newest name first):
per pod the first alternative with data is used. They are one query: each
alternative's part is tagged with ``adapter_series="<index>"`` and joined with
``or``.

Per pod, series of one family are combined: queue depth and running requests
summed over ``engine``/``model_name``/``model``; KV cache averaged; Triton's
p95 is the max of its per-model ``quantile="0.95"`` summaries (a server-side
quantile; never a mean passed off as a p95). A Deployment's p95 is the quantile
of its pods' merged bucket rates; pods whose p95 comes from a summary cannot be
merged, so such a Deployment has no p95 (its pods still have one each).

Series names, units and labels are those in ``servers.md`` (the servers' own
sources): see the table :data:`FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

from adapter.core.model import MetricName
from adapter.sources.prometheus import promql
from adapter.sources.prometheus.promql import LabelMatcher, MatchOp

__all__ = [
    "DCGM_EXPORTER",
    "DCGM_NAMESPACE_LABEL",
    "DCGM_POD_LABEL",
    "FAMILIES",
    "PRESETS",
    "SERIES_LABEL",
    "Family",
    "Kind",
    "Series",
    "families_for",
    "render_family_query",
]

SERIES_LABEL: Final = "adapter_series"
"""Tags each renamed alternative's part of a family query with its index."""


class Kind(Enum):
    HISTOGRAM = "histogram"
    """Classic histogram: per-pod bucket rates, the quantile computed here."""
    SUMMARY = "summary"
    """A server-side quantile series (``quantile="<q>"``); per pod the max over its series."""
    GAUGE = "gauge"
    """Per-pod combination (the metric's aggregate) of gauge series."""


@dataclass(frozen=True, slots=True)
class Series:
    """One series name, fixed matchers, and the conversion to the metric's unit.

    ``convert(v) = v * multiply / divide``; one of the two is always 1, so the
    result is exactly PromQL's ``v * multiply`` or ``v / divide``.
    """

    name: str
    matchers: tuple[LabelMatcher, ...] = ()
    multiply: float = 1.0
    divide: float = 1.0

    def convert(self, value: float) -> float:
        return value * self.multiply / self.divide

    @property
    def identity(self) -> bool:
        return self.multiply == 1.0 and self.divide == 1.0


@dataclass(frozen=True, slots=True)
class Family:
    """One server's way of exporting one metric; ``series`` are renames, newest first.

    ``namespace_label``/``pod_label``: the labels that carry the pod in this
    family's series when they are not the rules file's (None: the file's).
    ``per_gpu``: one series per GPU, so a node's value is not the mean over its
    pods (such a rule serves pods and workloads only).
    """

    name: str
    kind: Kind
    series: tuple[Series, ...]
    namespace_label: str | None = None
    pod_label: str | None = None
    per_gpu: bool = False


PRESETS: Final = (
    "vllm",
    "sglang",
    "trtllm-serve",
    "triton-trtllm",
    "triton",
    "tgi",
    "nim",
    "knative",
    "generic",
    "dcgm-exporter",
)
"""Every family name, in the documented first-with-data-wins order."""

DCGM_EXPORTER: Final = "dcgm-exporter"
DCGM_NAMESPACE_LABEL: Final = "exported_namespace"
DCGM_POD_LABEL: Final = "exported_pod"


def _eq(name: str, value: str) -> LabelMatcher:
    return LabelMatcher(name, MatchOp.EQ, value)


def _h(family: str, *series: Series) -> Family:
    return Family(family, Kind.HISTOGRAM, series)


def _g(family: str, *series: Series) -> Family:
    return Family(family, Kind.GAUGE, series)


PERCENT: Final = 100.0

LATENCY_P95: Final = MetricName("inference_latency_p95")
QUEUE_DEPTH: Final = MetricName("inference_queue_depth")
KV_CACHE: Final = MetricName("inference_kv_cache_utilization")
RUNNING: Final = MetricName("inference_requests_running")
GPU_UTILIZATION: Final = MetricName("gpu_utilization")

FAMILIES: Final[Mapping[MetricName, tuple[Family, ...]]] = {
    LATENCY_P95: (
        _h("vllm", Series("vllm:e2e_request_latency_seconds")),
        _h("sglang", Series("sglang:e2e_request_latency_seconds")),
        _h("trtllm-serve", Series("trtllm_e2e_request_latency_seconds")),
        # Triton's default latency series are µs counters (means only): the p95
        # exists only with --metrics-config summary_latencies=true.
        Family(
            "triton",
            Kind.SUMMARY,
            (Series("nv_inference_request_summary_us", divide=1e6),),
        ),
        _h("tgi", Series("tgi_request_duration")),
        _h("nim", Series("e2e_request_latency_seconds")),
        _h(
            "knative",
            Series("kn_serving_invocation_duration_seconds"),  # >= 1.19, seconds
            Series("revision_app_request_latencies", divide=1000.0),  # <= 1.18, ms
        ),
        _h("generic", Series("inference_duration_seconds")),
    ),
    QUEUE_DEPTH: (
        _g("vllm", Series("vllm:num_requests_waiting")),
        _g("sglang", Series("sglang:num_queue_reqs")),
        _g("trtllm-serve", Series("trtllm_num_requests_waiting")),
        _g(
            "triton-trtllm",
            Series("nv_trt_llm_request_metrics", (_eq("request_type", "waiting"),)),
        ),
        _g("triton", Series("nv_inference_pending_request_count")),
        _g("tgi", Series("tgi_queue_size")),
        _g("nim", Series("num_requests_waiting")),
        _g("knative", Series("kn_serving_queue_depth"), Series("revision_queue_depth")),
        _g("generic", Series("inference_queue_depth")),
    ),
    KV_CACHE: (
        _g(
            "vllm",
            Series("vllm:kv_cache_usage_perc", multiply=PERCENT),
            Series("vllm:gpu_cache_usage_perc", multiply=PERCENT),  # before 0.9
        ),
        _g("sglang", Series("sglang:token_usage", multiply=PERCENT)),
        _g("trtllm-serve", Series("trtllm_kv_cache_utilization", multiply=PERCENT)),
        _g(
            "triton-trtllm",
            Series(
                "nv_trt_llm_kv_cache_block_metrics",
                (_eq("kv_cache_block_type", "fraction"),),
                multiply=PERCENT,
            ),
        ),
        _g("nim", Series("gpu_cache_usage_perc", multiply=PERCENT)),
    ),
    RUNNING: (
        _g("vllm", Series("vllm:num_requests_running")),
        _g("sglang", Series("sglang:num_running_reqs")),
        _g("trtllm-serve", Series("trtllm_num_requests_running")),
        _g(
            "triton-trtllm",
            Series("nv_trt_llm_request_metrics", (_eq("request_type", "scheduled"),)),
        ),
        _g("tgi", Series("tgi_batch_current_size")),
        _g("nim", Series("num_requests_running")),
    ),
    GPU_UTILIZATION: (
        # dcgm-exporter: percent 0-100 per GPU (DCGM's own averaging); per pod the
        # mean over its GPUs (the metric's aggregate), as our collector reports it.
        # GPUs without a pod have no exported_pod: left out by the pod matchers.
        Family(
            DCGM_EXPORTER,
            Kind.GAUGE,
            (Series("DCGM_FI_DEV_GPU_UTIL"),),
            namespace_label=DCGM_NAMESPACE_LABEL,
            pod_label=DCGM_POD_LABEL,
            per_gpu=True,
        ),
    ),
}
"""Per built-in metric, its families in :data:`PRESETS` order."""


def families_for(metric: str, names: Sequence[str] | None = None) -> tuple[Family, ...]:
    """The families of ``metric``: all (``names`` None) or those named, in ``names``' order.

    Names with no series for this metric are skipped (a preset list applies to
    every metric); unknown names raise ValueError.
    """
    table = {family.name: family for family in FAMILIES.get(MetricName(metric), ())}
    if names is None:
        return tuple(table.values())
    unknown = [name for name in names if name not in PRESETS]
    if unknown:
        raise ValueError(
            f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(PRESETS)})"
        )
    return tuple(table[name] for name in dict.fromkeys(names) if name in table)


def render_family_query(
    family: Family,
    namespace_label: str,
    pod_label: str,
    matchers: Sequence[LabelMatcher],
    *,
    window_seconds: int | None,
    quantile: float,
    combine: str,
) -> str:
    """The one PromQL query that reads ``family`` for every pod.

    A histogram's part is ``sum by (ns, pod, le) (rate(<series>_bucket{...}[w]))``;
    a gauge's or summary's part is :func:`promql.render_gauge_query` (values and
    sample timestamps; a summary combines with ``max`` and selects
    ``quantile="<q>"``). With renames, each part is tagged with
    ``adapter_series="<index>"`` and the parts are joined with ``or``.
    """
    parts: list[str] = []
    for series in family.series:
        own = (*series.matchers, *matchers)
        if family.kind is Kind.HISTOGRAM:
            if window_seconds is None:
                raise promql.PromQLError("a histogram family needs a window")
            part = promql.render_histogram_query(
                series.name, namespace_label, pod_label, own, window_seconds
            )
        elif family.kind is Kind.SUMMARY:
            own = (*own, _eq("quantile", format_quantile(quantile)))
            part = promql.render_gauge_query(series.name, namespace_label, pod_label, own, "max")
        else:
            part = promql.render_gauge_query(series.name, namespace_label, pod_label, own, combine)
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    return " or ".join(
        f'label_replace({part}, "{SERIES_LABEL}", "{index}", "", "")'
        for index, part in enumerate(parts)
    )


def format_quantile(quantile: float) -> str:
    """A quantile as client libraries write the ``quantile`` label (Go's shortest form)."""
    text = repr(float(quantile))
    return text[:-2] if text.endswith(".0") else text
