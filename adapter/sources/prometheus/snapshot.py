"""Immutable per-rule snapshots: built from one query's answer, read by requests.

A :class:`RuleSnapshot` maps (namespace, pod) to that pod's value and, for
histogram rules, its bucket rates, so objects made of several pods get a true
merged-histogram quantile. Building and answering are pure functions of their
arguments (the time is passed in), tested without a server.

Freshness is measured without trusting the two clocks to agree: a value's age
when fetched is computed on Prometheus' clock (evaluation time minus sample
time), its age since on ours, and ``fresh_until`` is their sum's limit on our
clock. Missing, NaN, ±Inf and stale values are left out, never made 0.

For a :class:`FamilyRule` (one query per server family), :func:`build_families`
builds each family's part like a histogram or gauge rule's and keeps, per pod,
the first family (in the rule's order) that has data; ``PodValue.family`` names
it and ``Sample.family`` carries it to the served value.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from sys import intern
from typing import Final

from adapter.core.catalogue import Aggregation
from adapter.core.model import Namespace, ObjectRef, PodName, Sample, Target
from adapter.sources.prometheus import families, histogram, promql
from adapter.sources.prometheus.families import Family, Kind, Series
from adapter.sources.prometheus.histogram import Bucket
from adapter.sources.prometheus.rules import (
    FamilyRule,
    GaugeRule,
    HistogramRule,
    PrometheusRule,
    PromLabels,
)
from adapter.sources.prometheus.transport import Columns, PromSample

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
    """Bucket upper bounds in the series' own unit (``scale`` converts them)."""
    counts: Sequence[float] = ()
    """Bucket rates, one per bound."""
    family: str = ""
    """The server family the value comes from ("" for rules without families)."""
    scale: Series | None = None
    """The family series whose unit conversion applies to the bounds."""

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

    def by_family(self) -> dict[str, list[PodKey]]:
        """The pods each server family won, sorted, families in the rule's order
        (only those that won a pod; a rule without families has all under "")."""
        found: dict[str, list[PodKey]] = {}
        for key, value in sorted(self.pods.items()):
            found.setdefault(value.family, []).append(key)
        order = [f.name for f in self.rule.families] if isinstance(self.rule, FamilyRule) else []
        return {name: found[name] for name in [*order, ""] if name in found}


def build(
    rule: PrometheusRule, vector: Sequence[PromSample], fetched_at: float, staleness: float
) -> RuleSnapshot:
    """The snapshot of one rule from its query's instant vector."""
    if isinstance(rule, FamilyRule):
        raise TypeError("a FamilyRule is built from one vector per family: build_families")
    if isinstance(rule, HistogramRule):
        pods, dropped = _build_histogram(rule, vector, fetched_at + staleness)
    elif isinstance(rule, GaugeRule):
        pods, dropped = _build_gauge(rule, vector, fetched_at + staleness, staleness)
    else:
        pods, dropped = _build_plain(rule, vector, fetched_at + staleness)
    return RuleSnapshot(rule, fetched_at, pods, dict(dropped))


def build_families(
    rule: FamilyRule,
    vectors: Sequence[Sequence[PromSample]],
    fetched_at: float,
    staleness: float,
) -> RuleSnapshot:
    """The snapshot of a family rule from its queries' answers, one per family in order.

    Per pod the first family with any series for the pod wins, even when those
    series give no value (the pod then has none); within a family the first
    renamed series with data. ``dropped["shadowed"]`` counts pods for
    which a later family also had data.
    """
    pods: dict[PodKey, PodValue] = {}
    dropped: Counter[str] = Counter()
    for position, (family, vector) in enumerate(zip(rule.families, vectors, strict=True)):
        names = rule.labels_for(position)
        by_series = _by_series(vector)
        own: dict[PodKey, PodValue] = {}
        for index in sorted(by_series):
            if index >= len(family.series):
                continue
            part, part_dropped = _family_part(
                rule,
                names,
                family,
                family.series[index],
                by_series[index],
                fetched_at=fetched_at,
                staleness=staleness,
            )
            dropped.update(part_dropped)
            for key, value in part.items():
                own.setdefault(key, value)
        # A pod whose series exist but give no value (NaN, stale) still belongs to this
        # family: its value is omitted, never taken from a later family.
        pairs = map(_PAIR, _rows(names, vector, families.SERIES_LABEL))
        for namespace, pod in dict.fromkeys(pairs):  # each pod once, in the answer's order
            present = _key_of(namespace, pod)
            if present is not None and present not in own:
                own[present] = PodValue(
                    None, fetched_at, fetched_at + staleness, family=family.name
                )
        for key, value in own.items():
            if key in pods:
                dropped["shadowed"] += 1
            else:
                pods[key] = value
    return RuleSnapshot(rule, fetched_at, pods, dict(+dropped))


_PAIR: Final = itemgetter(0, 1)
"""(namespace, pod) of a :func:`_rows` row."""


def _series_index(tag: str | None) -> int:
    """The renamed series a family answer's row belongs to (``SERIES_LABEL``, 0 without)."""
    tag = "0" if tag is None else tag
    return int(tag) if tag.isdigit() else 0


def _by_series(vector: Sequence[PromSample]) -> Mapping[int, Sequence[PromSample]]:
    """A family answer's rows by series index, each in the answer's order."""
    if isinstance(vector, Columns):
        return vector.split(families.SERIES_LABEL, _series_index)
    by_series: dict[int, list[PromSample]] = {}
    for row in vector:
        by_series.setdefault(_series_index(row.labels.get(families.SERIES_LABEL)), []).append(row)
    return by_series


def _family_part(
    rule: FamilyRule,
    names: PromLabels,
    family: Family,
    series: Series,
    vector: Sequence[PromSample],
    *,
    fetched_at: float,
    staleness: float,
) -> tuple[dict[PodKey, PodValue], Counter[str]]:
    """One renamed series' pods, their values converted to the metric's unit."""
    fresh_until = fetched_at + staleness
    if family.kind is Kind.HISTOGRAM:
        assert rule.window_seconds is not None  # the parser guarantees it
        pods, dropped = _histogram_pods(
            names, rule.quantile, rule.window_seconds, vector, fresh_until
        )
    else:
        pods, dropped = _gauge_pods(names, vector, fresh_until, staleness)
    converted = {
        key: PodValue(
            None if value.sample is None else _converted(value.sample, series, family.name),
            value.timestamp,
            value.fresh_until,
            value.bounds,
            value.counts,
            family.name,
            series,
        )
        for key, value in pods.items()
    }
    return converted, dropped


def _converted(sample: Sample, series: Series, family: str) -> Sample:
    return Sample(series.convert(sample.value), sample.timestamp, sample.window_seconds, family)


def _pod_key(names: PromLabels, labels: Mapping[str, str]) -> PodKey | None:
    """The pod a series names in ``names``' labels, or None when either is empty."""
    return _key_of(labels.get(names.namespace, ""), labels.get(names.pod, ""))


def _key_of(namespace: str, pod: str) -> PodKey | None:
    if not namespace or not pod:
        return None
    return (Namespace(intern(namespace)), PodName(pod))


def _rows(
    names: PromLabels, vector: Sequence[PromSample], label: str
) -> Iterable[tuple[str, str, str, float, float]]:
    """Per series: its namespace, pod and ``label`` ("" when absent), time and value.

    A :class:`Columns` answer is read column-wise, without a PromSample per series.
    """
    namespace, pod = names.namespace, names.pod
    if isinstance(vector, Columns):
        return vector.rows((namespace, pod, label))
    return (
        (
            row.labels.get(namespace, ""),
            row.labels.get(pod, ""),
            row.labels.get(label, ""),
            row.timestamp,
            row.value,
        )
        for row in vector
    )


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _build_histogram(
    rule: HistogramRule, vector: Sequence[PromSample], fresh_until: float
) -> tuple[dict[PodKey, PodValue], Counter[str]]:
    return _histogram_pods(rule.labels, rule.quantile, rule.window_seconds, vector, fresh_until)


def _histogram_pods(
    names: PromLabels,
    quantile: float,
    window_seconds: int,
    vector: Sequence[PromSample],
    fresh_until: float,
) -> tuple[dict[PodKey, PodValue], Counter[str]]:
    dropped: Counter[str] = Counter()
    # Per (namespace, pod) its bounds and rates as packed floats: no object per series.
    grouped: dict[tuple[str, str], tuple[array[float], array[float]]] = {}
    times: dict[tuple[str, str], float] = {}  # the last series' time, per pod
    les: dict[str, float | None] = {}  # a fleet has a few dozen distinct le values
    for namespace, pod, le, timestamp, value in _rows(names, vector, "le"):
        if not namespace or not pod:
            dropped["unattributed"] += 1
            continue
        if le in les:
            upper = les[le]
        else:
            upper = les[le] = histogram.parse_le(le)
        if upper is None:
            dropped["bad_le"] += 1
            continue
        pair = (namespace, pod)
        group = grouped.get(pair)
        if group is None:
            group = grouped[pair] = (array("d"), array("d"))
        group[0].append(upper)
        group[1].append(value)
        times[pair] = timestamp
    pods: dict[PodKey, PodValue] = {}
    shared_bounds: dict[tuple[float, ...], tuple[float, ...]] = {}
    shared_times: dict[float, float] = {}  # one float object per distinct time, not per pod
    for (namespace, pod), (uppers, rates) in grouped.items():
        key = (Namespace(intern(namespace)), PodName(pod))
        buckets = histogram.coalesce(zip(uppers, rates, strict=True))
        value = histogram.quantile_of_coalesced(quantile, buckets)
        bounds = tuple(upper for upper, _ in buckets)
        bounds = shared_bounds.setdefault(bounds, bounds)
        at = shared_times.setdefault(times[namespace, pod], times[namespace, pod])
        sample: Sample | None = None
        if _finite(value):
            sample = Sample(value, at, window_seconds)
        else:
            dropped["nan" if math.isnan(value) else "inf"] += 1
        counts = array("d", (count for _, count in buckets))
        pods[key] = PodValue(sample, at, fresh_until, bounds, counts)
    return pods, dropped


def _build_gauge(
    rule: GaugeRule, vector: Sequence[PromSample], fresh_until: float, staleness: float
) -> tuple[dict[PodKey, PodValue], Counter[str]]:
    return _gauge_pods(rule.labels, vector, fresh_until, staleness)


def _gauge_pods(
    names: PromLabels, vector: Sequence[PromSample], fresh_until: float, staleness: float
) -> tuple[dict[PodKey, PodValue], Counter[str]]:
    dropped: Counter[str] = Counter()
    values: dict[PodKey, float] = {}
    stamps: dict[PodKey, tuple[float, float]] = {}  # (evaluated at, the sample's time)
    for namespace, pod, part, at, value in _rows(names, vector, promql.PART_LABEL):
        key = _key_of(namespace, pod)
        if key is None:
            dropped["unattributed"] += 1
        elif part == promql.PART_VALUE:
            values[key] = value
        elif part == promql.PART_TIMESTAMP:
            stamps[key] = (at, value)
    pods: dict[PodKey, PodValue] = {}
    for key, value in values.items():
        stamp = stamps.get(key)
        if stamp is None or not _finite(stamp[1]):
            dropped["no_timestamp"] += 1
        elif not _finite(value):
            dropped["nan" if math.isnan(value) else "inf"] += 1
        else:
            evaluated, sampled = stamp
            # Age on Prometheus' clock at evaluation; the rest is counted on ours.
            until = fresh_until - max(0.0, evaluated - sampled)
            if until < fresh_until - staleness:
                dropped["stale"] += 1
                continue
            pods[key] = PodValue(Sample(value, sampled), sampled, until)
    return pods, dropped


def _build_plain(
    rule: PrometheusRule, vector: Sequence[PromSample], fresh_until: float
) -> tuple[dict[PodKey, PodValue], Counter[str]]:
    dropped: Counter[str] = Counter()
    pods: dict[PodKey, PodValue] = {}
    ambiguous: set[PodKey] = set()
    for sample in vector:
        key = _pod_key(rule.labels, sample.labels)
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
    if isinstance(rule, FamilyRule):
        return _combine_families(rule, values)
    if rule.aggregate is Aggregation.HISTOGRAM and isinstance(rule, HistogramRule):
        merged = histogram.merge(value.buckets for value in values)
        quantile = histogram.quantile_of_coalesced(rule.quantile, merged)
        if not _finite(quantile):
            return None
        timestamp = min(value.timestamp for value in values)
        return Sample(quantile, timestamp, rule.window_seconds)
    return _combine_samples(rule.aggregate, rule.window_seconds, values)


def _combine_samples(
    aggregate: Aggregation, window_seconds: int | None, values: Sequence[PodValue]
) -> Sample | None:
    samples = [value.sample for value in values if value.sample is not None]
    if not samples:
        return None
    numbers = [s.value for s in samples]
    if aggregate is Aggregation.SUM:
        total = math.fsum(numbers)
    elif aggregate is Aggregation.MAX:
        total = max(numbers)
    else:
        total = math.fsum(numbers) / len(numbers)
    return Sample(total, min(s.timestamp for s in samples), window_seconds)


MIXED: Final = "mixed"
"""``Sample.family`` of a value combined from pods of different families."""


def _combine_families(rule: FamilyRule, values: Sequence[PodValue]) -> Sample | None:
    """Several pods of a family rule: merged histograms for latency, else the aggregate.

    Pods of one renamed series merge in the series' unit and convert once (so a
    fleet p95 equals the server's ``histogram_quantile(sum by (le))`` then the
    conversion); mixed units merge with converted bounds. A pod whose p95 is a
    server-side summary has no buckets: the fleet then has no p95 (omitted).
    """
    names = {value.family for value in values}
    family = names.pop() if len(names) == 1 else MIXED
    if rule.aggregate is not Aggregation.HISTOGRAM:
        plain = _combine_samples(rule.aggregate, None, values)
        return None if plain is None else plain._replace(family=family)
    if any(not value.buckets or value.scale is None for value in values):
        return None
    scales = {value.scale for value in values}
    if len(scales) == 1:
        merged = histogram.merge(value.buckets for value in values)
        quantile = histogram.quantile_of_coalesced(rule.quantile, merged)
        quantile = next(iter(scales)).convert(quantile)  # type: ignore[union-attr]
    else:
        merged = histogram.merge(
            tuple((value.scale.convert(upper), rate) for upper, rate in value.buckets)  # type: ignore[union-attr]
            for value in values
        )
        quantile = histogram.quantile_of_coalesced(rule.quantile, merged)
    if not _finite(quantile):
        return None
    timestamp = min(value.timestamp for value in values)
    return Sample(quantile, timestamp, rule.window_seconds, family)
