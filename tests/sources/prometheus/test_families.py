"""Family rules without a server: validation, query count, winners, units, failures, matchers."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from adapter.core.catalogue import Aggregation
from adapter.core.errors import SourceError
from adapter.core.model import MetricName
from adapter.core.selectors import EVERYTHING, parse_selector
from adapter.sources.prometheus import PrometheusSource, histogram, promql
from adapter.sources.prometheus.families import (
    FAMILIES,
    PRESETS,
    SERIES_LABEL,
    families_for,
    format_quantile,
)
from adapter.sources.prometheus.promql import LabelMatcher, MatchOp, PromQLError
from adapter.sources.prometheus.rules import FamilyRule, PromLabels, RuleError, parse_rule
from adapter.sources.prometheus.transport import PromSample
from tests.fakes.clock import FakeClock
from tests.fakes.prometheus_api import FakePrometheusAPI

from .helpers import deployment_target, pod_key, pod_target, spec

LATENCY = MetricName("inference_latency_p95")
QUEUE = MetricName("inference_queue_depth")
NOW = 1_000_000.0


def rule(metric: str, aggregate: Aggregation, **options: Any) -> FamilyRule:
    parsed = parse_rule(spec(metric, {"families": "all", **options}, aggregate), PromLabels())
    assert isinstance(parsed, FamilyRule)
    return parsed


def latency(**options: Any) -> FamilyRule:
    return rule(LATENCY, Aggregation.HISTOGRAM, **options)


def queue(**options: Any) -> FamilyRule:
    return rule(QUEUE, Aggregation.SUM, **options)


def test_documented_order_and_every_family_in_it() -> None:
    for metric, families in FAMILIES.items():
        names = [f.name for f in families]
        assert names == [p for p in PRESETS if p in names], metric
    assert [f.name for f in families_for("inference_latency_p95", ["tgi", "vllm", "tgi"])] == [
        "tgi",
        "vllm",
    ]
    with pytest.raises(ValueError, match="unknown family 'ollama'"):
        families_for("inference_latency_p95", ["ollama"])


@pytest.mark.parametrize(
    ("metric", "aggregate", "options", "expected"),
    [
        (
            "inference_kv_cache_utilization",
            Aggregation.MEAN,
            {"families": ["tgi"]},
            [
                "prometheus.families: no series for inference_kv_cache_utilization in 'tgi' "
                "(families with one: vllm, sglang, trtllm-serve, triton-trtllm, nim)"
            ],
        ),
        (
            "inference_queue_depth",
            Aggregation.SUM,
            {"families": "vllm"},
            ["prometheus.families: must be a list of family names or 'all'"],
        ),
        (
            "inference_queue_depth",
            Aggregation.SUM,
            {"window": "2m"},
            ["prometheus.window: inference_queue_depth is a gauge: no window"],
        ),
        (
            "inference_latency_p95",
            Aggregation.MEAN,
            {},
            ["aggregate: latency families merge histograms: use histogram"],
        ),
        (
            "my_metric",
            Aggregation.SUM,
            {},
            [
                "prometheus.families: 'my_metric' has no built-in families (they exist for gpu_utilization, "
                "inference_kv_cache_utilization, inference_latency_p95, inference_queue_depth, "
                "inference_requests_running); use histogram, gauge or query"
            ],
        ),
        (
            "inference_queue_depth",
            Aggregation.SUM,
            {"selector": 'model_name=~"a(?=b)"'},
            [
                "prometheus.selector: 'a(?=b)': lookaround and backreferences are not RE2",
            ],
        ),
    ],
)
def test_invalid_family_rules(
    metric: str, aggregate: Aggregation, options: dict[str, Any], expected: list[str]
) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(spec(metric, {"families": "all", **options}, aggregate), PromLabels())
    assert [f"{path}: {message}" for path, message in caught.value.problems] == expected


def test_queries_are_one_per_family_and_name_the_series() -> None:
    queries = dict(queue(families=["triton-trtllm", "knative"]).queries())
    assert list(queries) == ["triton-trtllm", "knative"]
    assert queries["triton-trtllm"] == (
        'label_replace(sum by (namespace, pod) (nv_trt_llm_request_metrics{namespace!="",'
        'pod!="",request_type="waiting"}), "adapter_part", "value", "", "") or '
        "label_replace(min by (namespace, pod) (timestamp(nv_trt_llm_request_metrics{"
        'namespace!="",pod!="",request_type="waiting"})), "adapter_part", "timestamp", "", "")'
    )
    assert queries["knative"].count(f'"{SERIES_LABEL}", "0"') == 1
    assert queries["knative"].count(f'"{SERIES_LABEL}", "1"') == 1
    triton = dict(latency(families=["triton"], quantile=0.99).queries())["triton"]
    assert 'nv_inference_request_summary_us{namespace!="",pod!="",quantile="0.99"}' in triton
    assert "max by (namespace, pod)" in triton


@pytest.mark.parametrize(("q", "text"), [(0.95, "0.95"), (0.5, "0.5"), (1, "1"), (0.999, "0.999")])
def test_quantile_labels_as_client_libraries_write_them(q: float, text: str) -> None:
    assert format_quantile(q) == text


def hist_rows(pod: str, buckets: dict[str, float], series: int | None = None) -> list[PromSample]:
    tag = {} if series is None else {SERIES_LABEL: str(series)}
    return [
        PromSample({"namespace": "ml", "pod": pod, "le": le, **tag}, NOW, rate)
        for le, rate in buckets.items()
    ]


def gauge_rows(pod: str, value: float, series: int | None = None) -> list[PromSample]:
    tag = {} if series is None else {SERIES_LABEL: str(series)}
    labels = {"namespace": "ml", "pod": pod, **tag}
    return [
        PromSample({**labels, promql.PART_LABEL: promql.PART_VALUE}, NOW, value),
        PromSample({**labels, promql.PART_LABEL: promql.PART_TIMESTAMP}, NOW, NOW - 1),
    ]


def answering(table: dict[str, list[PromSample]]) -> FakePrometheusAPI:
    """A fake Prometheus answering each query by the first series name it contains."""

    def answer(expr: str) -> list[PromSample]:
        for name, rows in table.items():
            if f"{name}{{" in expr or f"{name}_bucket{{" in expr:
                return rows
        return []

    return FakePrometheusAPI(answer)


async def test_query_count_is_fixed_whatever_the_pods_and_requests() -> None:
    api = answering({"vllm:num_requests_waiting": gauge_rows("a", 3)})
    source = PrometheusSource(api, [queue(), latency()], clock=FakeClock(NOW))
    await source.refresh_once()
    per_refresh = len(FAMILIES[QUEUE]) + len(FAMILIES[LATENCY])
    assert len(api.calls) == per_refresh
    pods = [pod_target("ml", f"p{i}") for i in range(500)]
    for _ in range(20):
        await source.fetch(QUEUE, pods, EVERYTHING)
    await source.refresh_once()
    assert len(api.calls) == 2 * per_refresh


async def test_units_are_converted_exactly_and_per_pod_first_series_wins() -> None:
    api = answering(
        {
            "kn_serving_invocation_duration_seconds": [  # the query reads both names
                *hist_rows("old", {"100": 1.0, "1000": 4.0, "+Inf": 4.0}, series=1),
                *hist_rows("both", {"1": 1.0, "+Inf": 2.0}, series=0),
                *hist_rows("both", {"100": 1.0, "+Inf": 2.0}, series=1),
            ],
            "nv_inference_request_summary_us": gauge_rows("triton", 123456.0),
        }
    )
    source = PrometheusSource(api, [latency()], clock=FakeClock(NOW))
    await source.refresh_once()
    old, both, triton = (pod_target("ml", n) for n in ("old", "both", "triton"))
    got = await source.fetch(LATENCY, [old, both, triton], EVERYTHING)
    # rank 3.8 of 4 in (100, 1000] ms: 100 + 900 * 2.8 / 3 ms; the quantile in ms, then / 1000.
    in_ms = histogram.bucket_quantile(0.95, [(100, 1.0), (1000, 4.0), (math.inf, 4.0)])
    assert in_ms == pytest.approx(940, rel=1e-12)
    assert got[old.obj].value == in_ms / 1000
    assert got[both.obj].value == 1.0  # the new (seconds) name wins: rank 1.9 hits +Inf
    assert got[triton.obj].value == 123456.0 / 1e6
    assert {s.family for s in got.values()} == {"knative", "triton"}


async def test_fleet_p95_of_mixed_units_merges_converted_bounds() -> None:
    api = answering(
        {
            "kn_serving_invocation_duration_seconds": [
                *hist_rows("new", {"0.1": 1.0, "1": 2.0, "+Inf": 2.0}, series=0),
                *hist_rows("old", {"100": 1.0, "1000": 2.0, "+Inf": 2.0}, series=1),
            ],
            "nv_inference_request_summary_us": gauge_rows("triton", 5.0),
        }
    )
    source = PrometheusSource(api, [latency()], clock=FakeClock(NOW))
    await source.refresh_once()
    kn = deployment_target("ml", "kn", ["new", "old"])
    mixed = deployment_target("ml", "mixed", ["new", "triton"])
    got = await source.fetch(LATENCY, [kn, mixed], EVERYTHING)
    # Merged: 2 at <= 0.1 s, 4 at <= 1 s; rank 3.8 in (0.1, 1]: 0.1 + 0.9 * 1.8 / 2.
    assert got[kn.obj].value == pytest.approx(0.1 + 0.9 * 1.8 / 2, rel=1e-12)
    assert got[kn.obj].family == "knative"
    assert mixed.obj not in got  # a summary cannot be merged into a fleet quantile


async def test_one_failed_family_keeps_the_previous_snapshot_whole() -> None:
    clock = FakeClock(NOW)
    vllm_up = True

    def answer(expr: str) -> list[PromSample]:
        if "vllm:" in expr:
            if not vllm_up:
                raise SourceError("the Prometheus query failed")
            return gauge_rows("a", 3)
        return gauge_rows("a", 9) if "inference_queue_depth{" in expr else []

    source = PrometheusSource(FakePrometheusAPI(answer), [queue()], clock=clock)
    await source.refresh_once()
    a = pod_target("ml", "a")
    assert (await source.fetch(QUEUE, [a], EVERYTHING))[a.obj] == (3.0, NOW - 1, None, "vllm")
    vllm_up = False
    clock.advance(10)
    await source.refresh_once()
    # Never the generic 9 because vLLM's query failed: the last vLLM value, until the bound.
    assert (await source.fetch(QUEUE, [a], EVERYTHING))[a.obj] == (3.0, NOW - 1, None, "vllm")
    clock.advance(40)
    assert await source.fetch(QUEUE, [a], EVERYTHING) == {}


async def test_metric_label_selectors_apply_to_every_family_query() -> None:
    api = answering({"vllm:num_requests_waiting": gauge_rows("a", 3)})
    source = PrometheusSource(api, [queue(families=["vllm", "tgi"])], clock=FakeClock(NOW))
    a = pod_target("ml", "a")
    got = await source.fetch(QUEUE, [a], parse_selector("model_name=m"))
    assert got[a.obj].value == 3.0
    assert len(api.calls) == 2
    assert all('model_name="m"' in call for call in api.calls)


# --- PromQL matcher selectors ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'model_name="meta-llama/Llama-3.1-8B-Instruct"',
            'model_name="meta-llama/Llama-3.1-8B-Instruct"',
        ),
        ("{a='x', b!=\"y\",}", 'a="x",b!="y"'),
        ('a=~"v1|v2", b!~`^x\\d$`', 'a=~"v1|v2",b!~"^x\\\\d$"'),
        ('a="\\u00e9\\x41\\101\\n"', 'a="éAA\\n"'),
        # an escaped backslash before a digit, an escaped parenthesis: literals, RE2-valid
        ("a=~`x\\\\1`", 'a=~"x\\\\\\\\1"'),
        ("a=~`\\(?=x`", 'a=~"\\\\(?=x"'),
    ],
)
def test_promql_matchers_parse_and_render(text: str, expected: str) -> None:
    assert promql.render_matchers(promql.parse_matchers(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('model_name="x" or vector(1)', "expected ',' between matchers"),
        ('a="x', "never closed"),
        ("a=x", "expected a quoted value"),
        ('__name__="x"', "reserved"),
        ('a=~"("', "not a valid regex"),
        ("a=~`(a)\\1`", "backreferences are not RE2"),
        ("a=~`x\\\\\\1`", "backreferences are not RE2"),  # \\ then \1
        ("a=~`a(?=b)`", "lookaround"),
        ("a!~`(?<!b)a`", "lookaround"),
        ('a="\\q"', "unknown escape"),
        ("", "empty matcher list"),
        ('a-b="x"', "expected a matcher"),
    ],
)
def test_bad_promql_matchers(text: str, message: str) -> None:
    with pytest.raises(PromQLError, match=message):
        promql.parse_matchers(text)


@given(
    name=st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
        lambda n: not n.startswith("__")
    ),
    op=st.sampled_from([MatchOp.EQ, MatchOp.NE]),
    value=st.text(max_size=20),
)
def test_rendered_matchers_parse_back_to_the_same_value(name: str, op: MatchOp, value: str) -> None:
    matcher = LabelMatcher(name, op, value)
    assert promql.parse_matchers(str(matcher)) == (matcher,)


@example(name="_", op=MatchOp.RE, values=["\\1"])  # a literal backslash before a digit
@given(
    name=st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
        lambda n: not n.startswith("__")
    ),
    op=st.sampled_from([MatchOp.RE, MatchOp.NRE]),
    values=st.lists(st.text(max_size=10), min_size=1, max_size=3),
)
def test_rendered_regex_matchers_parse_back(name: str, op: MatchOp, values: list[str]) -> None:
    pattern = "|".join(promql.regex_escape(v) for v in values)
    matcher = LabelMatcher(name, op, pattern)
    assert promql.parse_matchers(str(matcher)) == (matcher,)


async def test_a_family_without_a_value_still_owns_its_pod() -> None:
    nan = gauge_rows("a", math.nan)
    api = answering(
        {
            "vllm:num_requests_waiting": nan,
            "vllm:e2e_request_latency_seconds": hist_rows("a", {"1": 0.0, "+Inf": 0.0}),
            "inference_duration_seconds": hist_rows("a", {"1": 5.0, "+Inf": 5.0}),
            "inference_queue_depth": gauge_rows("a", 9),
        }
    )
    source = PrometheusSource(api, [queue(), latency()], clock=FakeClock(NOW))
    await source.refresh_once()
    a = pod_target("ml", "a")
    # An idle vLLM pod (no traffic: NaN p95) and a NaN queue: no values, never the generic ones.
    assert await source.fetch(QUEUE, [a], EVERYTHING) == {}
    assert await source.fetch(LATENCY, [a], EVERYTHING) == {}
    for metric in (QUEUE, LATENCY):
        snap = source.snapshot[metric]
        assert snap.pods[pod_key("ml", "a")].family == "vllm"
        assert snap.dropped["shadowed"] == 1
