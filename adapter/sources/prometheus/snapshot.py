"""Immutable per-rule snapshots: built from one query's answer, read by requests.

A :class:`RuleSnapshot` maps (namespace, pod) to that pod's value and, for
histogram rules, its bucket rates, so objects made of several pods get a true
merged-histogram quantile. Building and answering are pure functions of their
arguments (the time is passed in), tested without a server.

Freshness is measured without trusting the two clocks to agree: a value's age
when fetched is computed on Prometheus' clock (evaluation time minus sample
time), its age since on ours, and ``fresh_until`` is their sum's limit on our
clock. Missing, NaN, ±Inf and stale values are left out, never made 0.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from sys import intern

from adapter.core.catalogue import Aggregation
from adapter.core.model import Namespace, ObjectRef, PodName, Sample, Target
from adapter.sources.prometheus import histogram, promql
from adapter.sources.prometheus.histogram import Bucket
from adapter.sources.prometheus.rules import GaugeRule, HistogramRule, PrometheusRule
from adapter.sources.prometheus.transport import PromSample

PodKey = tuple[Namespace, PodName]


@dataclass(frozen=True, slots=True)
class PodValue:
    """One pod's part of a snapshot.

    ``sample`` is None when the pod has no finite value of its own (e.g. a
    histogram without traffic in the window), while its ``buckets`` still
    count towards a merged histogram, exactly as in ``sum by (le)``.

    Memory layout (10,000 pods is 180,000 buckets): the upper bounds are one
    tuple shared by every pod with the same ``le`` set, the counts one packed
    ``array('d')`` per pod; :attr:`buckets` pairs them on demand, which only
    objects made of several pods need.
    """

    sample: Sample | None
    timestamp: float
    """When the value was sampled (Prometheus' clock), even without a finite sample."""
    fresh_until: float
    """The last moment on our clock it may be served."""
    bounds: tuple[float, ...] = ()
    counts: Sequence[float] = ()

    @property
    def buckets(self) -> tuple[Bucket, ...]:
        """``(upper_bound, cumulative_count)`` pairs, sorted and coalesced."""
        return tuple(zip(self.bounds, self.counts, strict=True))


@dataclass(frozen=True, slots=True)
class RuleSnapshot:
    rule: PrometheusRule
    fetched_at: float
    pods: Mapping[PodKey, PodValue]
    dropped: Mapping[str, int] = field(default_factory=dict)
    """Series or pods left out while building, by reason (for self metrics)."""

    @property
    def samples(self) -> int:
        """Pods with a value of their own."""
        return sum(1 for value in self.pods.values() if value.sample is not None)


def build(
    rule: PrometheusRule, vector: Sequence[PromSample], fetched_at: float, staleness: float
) -> RuleSnapshot:
    """The snapshot of one rule from its query's instant vector."""
    if isinstance(rule, HistogramRule):
        pods, dropped = _build_histogram(rule, vector, fetched_at + staleness)
    elif isinstance(rule, GaugeRule):
        pods, dropped = _build_gauge(rule, vector, fetched_at + staleness, staleness)
    else:
        pods, dropped = _build_plain(rule, vector, fetched_at + staleness)
    return RuleSnapshot(rule, fetched_at, pods, dict(dropped))


def _pod_key(rule: PrometheusRule, labels: Mapping[str, str]) -> PodKey | None:
    namespace = labels.get(rule.labels.namespace, "")
    pod = labels.get(rule.labels.pod, "")
    if not namespace or not pod:
        return None
    return (Namespace(intern(namespace)), PodName(pod))


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _build_histogram(
    rule: HistogramRule, vector: Sequence[PromSample], fresh_until: float
) -> tuple[dict[PodKey, PodValue], Counter[str]]:
    dropped: Counter[str] = Counter()
    grouped: dict[PodKey, list[Bucket]] = {}
    times: dict[PodKey, float] = {}
    for row in vector:
        key = _pod_key(rule, row.labels)
        upper = histogram.parse_le(row.labels.get("le", ""))
        if key is None or upper is None:
            dropped["unattributed" if key is None else "bad_le"] += 1
            continue
        grouped.setdefault(key, []).append((upper, row.value))
        times[key] = row.timestamp
    pods: dict[PodKey, PodValue] = {}
    shared_bounds: dict[tuple[float, ...], tuple[float, ...]] = {}
    shared_times: dict[float, float] = {}  # one float object per distinct time, not per pod
    for key, raw in grouped.items():
        buckets = histogram.coalesce(raw)
        value = histogram.quantile_of_coalesced(rule.quantile, buckets)
        bounds = tuple(upper for upper, _ in buckets)
        bounds = shared_bounds.setdefault(bounds, bounds)
        at = shared_times.setdefault(times[key], times[key])
        sample: Sample | None = None
        if _finite(value):
            sample = Sample(value, at, rule.window_seconds)
        else:
            dropped["nan" if math.isnan(value) else "inf"] += 1
        counts = array("d", (count for _, count in buckets))
        pods[key] = PodValue(sample, at, fresh_until, bounds, counts)
    return pods, dropped


def _build_gauge(
    rule: GaugeRule, vector: Sequence[PromSample], fresh_until: float, staleness: float
) -> tuple[dict[PodKey, PodValue], Counter[str]]:
    dropped: Counter[str] = Counter()
    values: dict[PodKey, PromSample] = {}
    stamps: dict[PodKey, PromSample] = {}
    for sample in vector:
        key = _pod_key(rule, sample.labels)
        part = sample.labels.get(promql.PART_LABEL)
        if key is None:
            dropped["unattributed"] += 1
        elif part == promql.PART_VALUE:
            values[key] = sample
        elif part == promql.PART_TIMESTAMP:
            stamps[key] = sample
    pods: dict[PodKey, PodValue] = {}
    for key, row in values.items():
        stamp = stamps.get(key)
        if stamp is None or not _finite(stamp.value):
            dropped["no_timestamp"] += 1
        elif not _finite(row.value):
            dropped["nan" if math.isnan(row.value) else "inf"] += 1
        else:
            # Age on Prometheus' clock at evaluation; the rest is counted on ours.
            until = fresh_until - max(0.0, stamp.timestamp - stamp.value)
            if until < fresh_until - staleness:
                dropped["stale"] += 1
                continue
            pods[key] = PodValue(Sample(row.value, stamp.value), stamp.value, until)
    return pods, dropped


def _build_plain(
    rule: PrometheusRule, vector: Sequence[PromSample], fresh_until: float
) -> tuple[dict[PodKey, PodValue], Counter[str]]:
    dropped: Counter[str] = Counter()
    pods: dict[PodKey, PodValue] = {}
    ambiguous: set[PodKey] = set()
    for sample in vector:
        key = _pod_key(rule, sample.labels)
        if key is None:
            dropped["unattributed"] += 1
        elif key in pods or key in ambiguous:
            # Several series for one pod: the template does not group by pod alone.
            ambiguous.add(key)
            pods.pop(key, None)
        elif not _finite(sample.value):
            dropped["nan" if math.isnan(sample.value) else "inf"] += 1
        else:
            pods[key] = PodValue(
                Sample(sample.value, sample.timestamp, rule.window_seconds),
                sample.timestamp,
                fresh_until,
            )
    dropped["duplicate"] += len(ambiguous)
    return pods, +dropped


def answer(
    snapshot: RuleSnapshot, targets: Iterable[Target], now: float
) -> dict[ObjectRef, Sample]:
    """At most one Sample per target, from the fresh values of its pods only.

    A single pod is answered with its own value. Several pods are combined by
    the rule's aggregate: HISTOGRAM takes the quantile of the pods' summed
    bucket rates (Prometheus' ``histogram_quantile`` over ``sum by (le)``);
    MEAN, SUM and MAX combine the pods that have a value. No fresh value, no
    answer.
    """
    result: dict[ObjectRef, Sample] = {}
    for target in targets:
        fresh = [
            value
            for value in (snapshot.pods.get(pod.key) for pod in target.pods)
            if value is not None and value.fresh_until >= now
        ]
        if not fresh:
            continue
        one = len(target.pods) == 1
        sample = fresh[0].sample if one else _combine(snapshot.rule, fresh)
        if sample is not None:
            result[target.obj] = sample
    return result


def _combine(rule: PrometheusRule, values: Sequence[PodValue]) -> Sample | None:
    if rule.aggregate is Aggregation.HISTOGRAM and isinstance(rule, HistogramRule):
        merged = histogram.merge(value.buckets for value in values)
        quantile = histogram.quantile_of_coalesced(rule.quantile, merged)
        if not _finite(quantile):
            return None
        timestamp = min(value.timestamp for value in values)
        return Sample(quantile, timestamp, rule.window_seconds)
    samples = [value.sample for value in values if value.sample is not None]
    if not samples:
        return None
    numbers = [s.value for s in samples]
    if rule.aggregate is Aggregation.SUM:
        total = math.fsum(numbers)
    elif rule.aggregate is Aggregation.MAX:
        total = max(numbers)
    else:
        total = math.fsum(numbers) / len(numbers)
    return Sample(total, min(s.timestamp for s in samples), rule.window_seconds)
