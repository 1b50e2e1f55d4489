"""Sharded refresh queries: the partition property, joining answers, the planner, the source.

A shard's matcher is emulated as Prometheus applies it: ``=~`` fully anchored
(``re.fullmatch``), ``!~`` its negation, with ``.`` matching a newline or not
(Prometheus 3 does, 2.x does not): the partition must hold either way.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from adapter.core.catalogue import Aggregation
from adapter.core.model import MetricName
from adapter.core.selectors import parse_selector
from adapter.settings import PrometheusSettings
from adapter.sources.prometheus import PrometheusSource, promql
from adapter.sources.prometheus.promql import LabelMatcher, MatchOp, parse_matchers
from adapter.sources.prometheus.rules import FamilyRule, PrometheusRule, PromLabels, parse_rule
from adapter.sources.prometheus.shards import (
    ALPHABET,
    MAX_SHARDS,
    ShardPlanner,
    join,
    queries_of,
    shard_matchers,
    shards_for,
)
from adapter.sources.prometheus.snapshot import RuleSnapshot
from adapter.sources.prometheus.transport import (
    Columns,
    PrometheusUnavailable,
    PromSample,
    TransportOptions,
    decode,
)
from adapter.sources.prometheus.transport import _vector as vector_of
from tests.fakes.clock import FakeClock
from tests.fakes.prometheus_api import FakePrometheusAPI

from .helpers import latency_rule, queue_rule, spec
from .test_decode import body_of, comparable

LATENCY = MetricName("inference_latency_p95")
QUEUE = MetricName("inference_queue_depth")
NOW = 1_000_000.0


def accepts(matcher: LabelMatcher, value: str, flags: int) -> bool:
    """Whether Prometheus keeps a series whose label is ``value`` (regexes anchored)."""
    if matcher.op is MatchOp.EQ:
        return value == matcher.value
    if matcher.op is MatchOp.NE:
        return value != matcher.value
    found = re.fullmatch(matcher.value, value, flags) is not None
    return found if matcher.op is MatchOp.RE else not found


def shard_of(matchers: Sequence[Sequence[LabelMatcher]], value: str, flags: int) -> list[int]:
    """The shards that keep ``value`` (the partition property: exactly one)."""
    return [i for i, own in enumerate(matchers) if all(accepts(m, value, flags) for m in own)]


DNS_1123 = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
POD_VALUES = st.one_of(
    DNS_1123,
    st.text(),  # any string: empty, a newline, a ']' or a '\' last, non-ASCII
    st.text().map(lambda text: text + "\n"),
    st.sampled_from(["", "\n", "a\nb", "-", "]", "\\", "^", "é", "A", "p-0"]),
)


@settings(max_examples=600)
@given(st.integers(1, MAX_SHARDS), st.lists(POD_VALUES, max_size=12))
def test_every_pod_value_falls_in_exactly_one_shard(count: int, values: list[str]) -> None:
    matchers = shard_matchers("pod", count)
    assert len(matchers) == count
    for flags in (0, re.DOTALL):
        for value in values:
            assert len(shard_of(matchers, value, flags)) == 1, (count, value, matchers)


@settings(max_examples=400)
@given(
    st.integers(2, 8).flatmap(
        lambda count: st.tuples(
            st.just(count),
            st.lists(st.characters(exclude_categories=["Cs"]), min_size=count, unique=True),
        )
    ),
    st.lists(st.text(), max_size=8),
)
def test_any_alphabet_is_escaped_into_a_partition(
    sharding: tuple[int, list[str]], values: list[str]
) -> None:
    """Characters special in a class (``]``, ``\\``, ``^``, ``-``), control characters and
    non-ASCII ones in the alphabet: each shard keeps exactly the values ending in its own."""
    count, chars = sharding
    alphabet = "".join(chars)
    matchers = shard_matchers("pod", count, alphabet)
    named = [alphabet[i::count] for i in range(count - 1)]
    for value in [*values, *(v + c for v in values for c in alphabet), *alphabet]:
        want = next(
            (i for i, own in enumerate(named) if value and value[-1] in own and "\n" not in value),
            None,
        )
        for flags in (0, re.DOTALL):
            got = shard_of(matchers, value, flags)
            assert len(got) == 1, (alphabet, value)
            if want is not None:
                assert got == [want], (alphabet, value)


@given(st.integers(1, MAX_SHARDS))
def test_shard_matchers_read_back_from_the_query_text(count: int) -> None:
    """Rendered into PromQL and parsed back, each matcher is the same (quoting is exact)."""
    for own in shard_matchers("exported_pod", count, ALPHABET + "]\\^-\"'\n"):
        for matcher in own:
            assert parse_matchers(str(matcher)) == (matcher,)


def test_the_shards_of_four_are_dealt_round_robin() -> None:
    rendered = [promql.render_matchers(own) for own in shard_matchers("pod", 4)]
    assert rendered == [
        'pod=~".*[048cgkosw]"',
        'pod=~".*[159dhlptx]"',
        'pod=~".*[26aeimquy]"',
        'pod!~".*[048cgkosw159dhlptx26aeimquy]"',
    ]
    assert shard_matchers("pod", 1) == ((),)
    assert promql.render_matchers(shard_matchers("pod", 2, "a]-b")[0]) == r'pod=~".*[a\\-]"'


@pytest.mark.parametrize("count", [0, MAX_SHARDS + 1])
def test_shard_counts_outside_the_range_are_refused(count: int) -> None:
    with pytest.raises(ValueError, match=r"within 1\.\.16"):
        shard_matchers("pod", count)


def test_an_alphabet_too_short_or_repeating_is_refused() -> None:
    with pytest.raises(ValueError, match="distinct"):
        shard_matchers("pod", 3, "ab")
    with pytest.raises(ValueError, match="distinct"):
        shard_matchers("pod", 2, "aa")


@pytest.mark.parametrize(
    ("series", "expected"),
    [(None, 1), (0, 1), (1, 1), (20_000, 1), (20_001, 2), (60_000, 3), (180_000, 4), (10**9, 4)],
)
def test_shards_for_a_size(series: int | None, expected: int) -> None:
    assert shards_for(series, 20_000, 4) == expected


def test_shards_for_with_no_split_allowed() -> None:
    assert shards_for(180_000, 20_000, 1) == 1


# --- joining the shards' answers ---

LABELS = st.sampled_from(["", "ml", "p-0", "p-1", "0.25", "+Inf", "a b", "x,y"])


@st.composite
def shard_answers(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """2 to 5 answers of one query: each series has the same label names, some empty."""
    names = draw(st.lists(st.sampled_from(["le", "namespace", "pod"]), unique=True, min_size=1))
    parts = []
    for _ in range(draw(st.integers(2, 5))):
        rows = [
            {
                "metric": {name: draw(LABELS) for name in names},
                "value": [draw(st.floats(0, 4e9)), draw(st.sampled_from(["1", "NaN", "+Inf"]))],
            }
            for _ in range(draw(st.integers(0, 6)))
        ]
        parts.append(rows)
    return parts


@settings(max_examples=300)
@given(shard_answers())
def test_concat_equals_decoding_the_concatenated_answer(parts: list[list[dict[str, Any]]]) -> None:
    decoded = [decode(body_of(rows)) for rows in parts]
    whole = vector_of(decode(body_of([row for rows in parts for row in rows])))
    nonempty = [part for part in decoded if len(part)]
    assert all(isinstance(part, Columns) for part in nonempty)
    if nonempty:
        concatenated = Columns.concat(nonempty)
        assert comparable(concatenated) == comparable(whole)
        assert concatenated.names == nonempty[0].names
        names = ["pod", "namespace", "le", "missing"]
        assert isinstance(whole, Columns)
        assert [repr(r) for r in concatenated.rows(names)] == [repr(r) for r in whole.rows(names)]
    assert comparable(join([vector_of(part) for part in decoded])) == comparable(whole)


def test_join_falls_back_to_a_list_when_a_part_is_not_columns() -> None:
    columns = vector_of(decode(body_of([{"metric": {"pod": "a"}, "value": [1, "2"]}])))
    other = vector_of(decode(body_of([{"metric": {"job": "x"}, "value": [1, "3"]}])))
    plain = [PromSample({"pod": "b"}, 1.0, 4.0)]
    assert isinstance(columns, Columns)
    for parts in ([columns, plain], [columns, other]):
        joined = join(parts)
        assert isinstance(joined, list)
        assert comparable(joined) == comparable([*parts[0], *parts[1]])
    assert join([[], columns, []]) is columns  # one non-empty part: itself
    assert list(join([[], []])) == []
    with pytest.raises(ValueError, match="different label names"):
        Columns.concat([columns, other])  # type: ignore[list-item]


# --- which queries split, and the planner ---


def family_rule(metric: str, aggregate: Aggregation) -> FamilyRule:
    parsed = parse_rule(spec(metric, {"families": "all"}, aggregate), PromLabels())
    assert isinstance(parsed, FamilyRule)
    return parsed


def test_queries_of_each_rule_form() -> None:
    latency = latency_rule()
    assert [(q.render(()), q.pod_label, q.splittable) for q in queries_of(latency)] == [
        (latency.query(), "pod", True)
    ]
    family = family_rule("inference_latency_p95", Aggregation.HISTOGRAM)
    assert [q.render(()) for q in queries_of(family)] == [expr for _, expr in family.queries()]
    extra = (LabelMatcher("pod", MatchOp.RE, ".*[a]"),)
    assert [q.render(extra) for q in queries_of(family)] == [e for _, e in family.queries(extra)]
    assert all(q.splittable for q in queries_of(family))
    gpu = family_rule("gpu_utilization", Aggregation.MEAN)
    assert {q.pod_label for q in queries_of(gpu)} == {"exported_pod"}  # dcgm-exporter's own
    template = parse_rule(
        spec(
            "requests_per_second",
            {"query": "sum by (<<groupBy>>) (rate(http_requests_total{<<matchers>>}[1m]))"},
        ),
        PromLabels(),
    )
    assert [q.splittable for q in queries_of(template)] == [False]


def test_every_split_query_groups_by_the_pod() -> None:
    """The partition property of the answers: a split query aggregates by (namespace, pod)."""
    rules: list[PrometheusRule] = [
        latency_rule(),
        queue_rule(),
        family_rule("inference_latency_p95", Aggregation.HISTOGRAM),
        family_rule("inference_queue_depth", Aggregation.SUM),
        family_rule("gpu_utilization", Aggregation.MEAN),
    ]
    for rule in rules:
        for query in queries_of(rule):
            expr = query.render(())
            groupings = re.findall(r"\bby \(([^)]*)\)", expr)
            assert groupings, expr
            for grouping in groupings:
                assert query.pod_label in [g.strip() for g in grouping.split(",")], expr


def test_the_planner_splits_after_a_large_answer_and_forgets_removed_rules() -> None:
    planner = ShardPlanner(max_shards=4, series_per_shard=10)
    rule, other = latency_rule(), queue_rule()
    (query,) = queries_of(rule)
    assert planner.shards(rule, 0, query) == 1  # size unknown
    planner.answered(rule, 0, 25)
    assert planner.shards(rule, 0, query) == 3
    assert planner.planned(rule) == 3
    planner.answered(other, 0, 5)
    planner.retain([other])
    assert planner.shards(rule, 0, query) == 1
    assert planner.planned(other) == 1
    with pytest.raises(ValueError, match="max_shards"):
        ShardPlanner(max_shards=0)
    with pytest.raises(ValueError, match="series_per_shard"):
        ShardPlanner(series_per_shard=0)


# --- the source, on a fake Prometheus that applies the shards' matchers ---

SHARD_MATCHER = re.compile(r'\b(pod|exported_pod)(=~|!~)("(?:[^"\\]|\\.)*")')
POD_NAMES = [
    *(f"llm-7d9f8c-{suffix}" for suffix in ("x2k4p", "b7q9z", "mnb5s", "4tq8w", "zz9dv")),
    *(f"web-{i}" for i in range(12)),
    "db-0",
    "cache-abcde",
]


def fleet_rows(expr: str) -> list[dict[str, Any]]:
    """The answer a real Prometheus gives ``expr`` for a fixed fleet, in two namespaces."""
    if "_bucket" in expr:
        rows = [
            {"namespace": ns, "pod": pod, "le": le, "value": value}
            for ns in ("ml", "web")
            for i, pod in enumerate(POD_NAMES)
            for le, value in (("0.1", i * 1.0), ("0.5", i * 2.0), ("+Inf", i * 2.0 + 1))
        ]
    else:
        rows = [
            {"namespace": ns, "pod": pod, promql.PART_LABEL: part, "value": value}
            for ns in ("ml", "web")
            for i, pod in enumerate(POD_NAMES)
            for part, value in (
                (promql.PART_VALUE, math.nan if i == 3 else float(i)),
                (promql.PART_TIMESTAMP, NOW - 1),
            )
        ]
    return rows


class ShardingPrometheus(FakePrometheusAPI):
    """Answers the fleet's rows that a query's shard matchers keep, decoded as the
    transport decodes Prometheus' layout (``Columns``), or as PromSamples."""

    def __init__(self, *, as_columns: bool = True) -> None:
        super().__init__(self._answer)
        self.as_columns = as_columns
        self.fail_when: str | None = None

    def _answer(self, expr: str) -> Sequence[PromSample]:
        if self.fail_when is not None and self.fail_when in expr:
            raise PrometheusUnavailable("the Prometheus query failed")
        kept = [
            matcher
            for name, op, literal in SHARD_MATCHER.findall(expr)
            for matcher in parse_matchers(f"{name}{op}{literal}")
        ]
        rows = [row for row in fleet_rows(expr) if all(accepts(m, row["pod"], 0) for m in kept)]
        series = [
            {
                "metric": {k: v for k, v in row.items() if k != "value"},
                "value": [NOW, "NaN" if math.isnan(row["value"]) else repr(row["value"])],
            }
            for row in rows
        ]
        body = json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": series}},
            separators=(",", ":"),
        ).encode()
        vector = vector_of(decode(body))
        return vector if self.as_columns else list(vector)


def same(a: RuleSnapshot, b: RuleSnapshot) -> bool:
    return (
        repr(sorted(a.pods.items())) == repr(sorted(b.pods.items()))
        and a.dropped == b.dropped
        and a.fetched_at == b.fetched_at
    )


def make_source(api: FakePrometheusAPI, **kwargs: Any) -> PrometheusSource:
    return PrometheusSource(
        api,
        [latency_rule(), queue_rule()],
        refresh_interval=15,
        clock=FakeClock(NOW),
        **kwargs,
    )


@pytest.mark.parametrize("as_columns", [True, False])
async def test_a_large_answer_is_split_next_time_into_an_identical_snapshot(
    as_columns: bool,
) -> None:
    """40 pods' buckets are 120 series: with 40 per shard the next refresh sends 3 shards."""
    api = ShardingPrometheus(as_columns=as_columns)
    registry = CollectorRegistry()
    source = make_source(api, series_per_shard=40, max_query_shards=4, registry=registry)
    reference = make_source(ShardingPrometheus(as_columns=as_columns), max_query_shards=1)
    await reference.refresh_once()
    await source.refresh_once()
    assert len(api.calls) == 2  # the first refresh: one query per rule
    get = registry.get_sample_value
    assert get("adapter_prometheus_refresh_queries", {"metric": str(LATENCY)}) == 3
    assert get("adapter_prometheus_refresh_queries", {"metric": str(QUEUE)}) == 2  # 80 series
    api.calls.clear()
    await source.refresh_once()
    latency = latency_rule().query
    queue = queue_rule().query  # type: ignore[union-attr]
    assert sorted(api.calls) == sorted(
        [
            latency(shard_matchers("pod", 3)[0]),
            latency(shard_matchers("pod", 3)[1]),
            latency(shard_matchers("pod", 3)[2]),
            queue(shard_matchers("pod", 2)[0]),
            queue(shard_matchers("pod", 2)[1]),
        ]
    )
    assert sum('pod=~".*[0369cfilorux]"' in call for call in api.calls) == 1
    for metric in (LATENCY, QUEUE):
        assert same(source.snapshot[metric], reference.snapshot[metric]), metric
    assert source.snapshot[LATENCY].samples == 2 * len(POD_NAMES)
    assert source.snapshot[QUEUE].dropped == {"nan": 2}
    assert get("adapter_prometheus_query_duration_seconds_count", {"metric": str(LATENCY)}) == 2


async def test_selector_queries_are_never_split() -> None:
    api = ShardingPrometheus()
    source = make_source(api, series_per_shard=1, max_query_shards=16)
    await source.refresh_once()
    await source.refresh_once()
    api.calls.clear()
    await source.fetch(LATENCY, [], parse_selector("model=m"))
    assert len(api.calls) == 1
    assert "=~" not in api.calls[0]


async def test_a_failed_shard_fails_the_query_once_and_keeps_the_previous_snapshot() -> None:
    api = ShardingPrometheus()
    registry = CollectorRegistry()
    source = make_source(api, series_per_shard=40, max_query_shards=4, registry=registry)
    await source.refresh_once()
    kept = source.snapshot[LATENCY]
    api.fail_when = str(shard_matchers("pod", 3)[1][0])
    await source.refresh_once()
    assert source.snapshot[LATENCY] is kept  # not a partial snapshot of two shards
    get = registry.get_sample_value
    assert get("adapter_prometheus_query_errors_total", {"metric": str(LATENCY)}) == 1
    assert get("adapter_prometheus_query_errors_total", {"metric": str(QUEUE)}) == 0
    assert get("adapter_prometheus_refresh_queries", {"metric": str(LATENCY)}) == 3  # size kept
    api.fail_when = None
    await source.refresh_once()
    assert source.snapshot[LATENCY] is not kept
    assert same(source.snapshot[LATENCY], kept)


async def test_a_family_rule_splits_only_its_large_family_and_fails_whole() -> None:
    """A failed shard of one family fails the rule: no pod moves to a later family."""
    rule = family_rule("inference_latency_p95", Aggregation.HISTOGRAM)
    big = rule.families[0].series[0].name  # the first family answers for every pod

    class Families(ShardingPrometheus):
        def _answer(self, expr: str) -> Sequence[PromSample]:
            if f"{big}_bucket{{" in expr:
                return super()._answer(expr)
            if f"{rule.families[1].series[0].name}_bucket{{" in expr:  # one pod, shadowed
                return super()._answer(expr)[:3]
            return []

    api = Families()
    source = PrometheusSource(
        api, [rule], refresh_interval=15, clock=FakeClock(NOW), series_per_shard=40
    )
    reference = PrometheusSource(
        Families(), [rule], refresh_interval=15, clock=FakeClock(NOW), max_query_shards=1
    )
    await reference.refresh_once()
    await source.refresh_once()
    api.calls.clear()
    await source.refresh_once()
    assert len(api.calls) == len(rule.families) + 2  # the first family in 3 shards
    assert sum(f"{big}_bucket{{" in call for call in api.calls) == 3
    assert same(source.snapshot[LATENCY], reference.snapshot[LATENCY])
    assert source.snapshot[LATENCY].dropped == {"shadowed": 1}
    kept = source.snapshot[LATENCY]
    api.fail_when = str(shard_matchers("pod", 3)[2][0])
    await source.refresh_once()
    assert source.snapshot[LATENCY] is kept


async def test_a_bug_in_a_shard_is_not_a_failed_query() -> None:
    """An exception that is not a SourceError propagates as it did (logged, counted once)."""
    api = ShardingPrometheus()
    registry = CollectorRegistry()
    source = make_source(api, series_per_shard=40, registry=registry)
    await source.refresh_once()
    kept = source.snapshot[LATENCY]

    def broken(expr: str) -> Sequence[PromSample]:
        raise RuntimeError("a bug")

    api.answer = broken
    await source.refresh_once()
    assert source.snapshot[LATENCY] is kept
    assert (
        registry.get_sample_value("adapter_prometheus_query_errors_total", {"metric": str(LATENCY)})
        == 1
    )
    assert not source.unavailable


async def test_a_shard_finding_prometheus_unavailable_makes_selectors_fail_fast() -> None:
    api = ShardingPrometheus()
    source = PrometheusSource(
        api, [latency_rule()], refresh_interval=15, clock=FakeClock(NOW), series_per_shard=40
    )
    await source.refresh_once()
    api.fail_when = str(shard_matchers("pod", 3)[0][0])
    await source.refresh_once()
    assert source.unavailable
    api.fail_when = None
    await source.refresh_once()
    assert not source.unavailable


@pytest.mark.parametrize(("cap", "threads"), [(1, 4), (2, 4), (4, 8), (16, 32)])
def test_the_refresh_client_has_a_thread_for_every_shard_and_more(cap: int, threads: int) -> None:
    """A shard waiting for a thread would not overlap the others: 2 x the cap, at least 4."""
    settings = PrometheusSettings(url="http://127.0.0.1:9090", max_query_shards=cap)
    options = TransportOptions.from_settings(settings)
    assert options.max_concurrency == threads
    assert options.for_selectors(settings).max_concurrency == settings.selector_concurrency
