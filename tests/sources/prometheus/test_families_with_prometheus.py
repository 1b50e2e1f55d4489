"""The built-in families against the real Prometheus scraping every server's own series.

For each family: the served p95 equals Prometheus' ``histogram_quantile`` over
that server's histogram summed by pod (then the unit conversion), queue depth
the per-pod sum over engines/models, the winner is the documented one, renamed
series are found under either name, and every generated query parses.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from adapter.cli import main
from adapter.core.catalogue import Aggregation
from adapter.core.model import MetricName
from adapter.core.selectors import EVERYTHING
from adapter.sources.prometheus import PrometheusClient, PrometheusSource, TransportOptions
from adapter.sources.prometheus.families import FAMILIES, PRESETS
from adapter.sources.prometheus.rules import FamilyRule, PromLabels, parse_rule
from tests.support.prometheus_server import PrometheusServer

from .helpers import deployment_target, pod_key, pod_target, spec
from .servers import NS, serving

pytestmark = pytest.mark.prometheus

LATENCY = MetricName("inference_latency_p95")
QUEUE = MetricName("inference_queue_depth")
KV = MetricName("inference_kv_cache_utilization")
RUNNING = MetricName("inference_requests_running")
GPU = MetricName("gpu_utilization")
AGGREGATES = {
    LATENCY: Aggregation.HISTOGRAM,
    QUEUE: Aggregation.SUM,
    KV: Aggregation.MEAN,
    RUNNING: Aggregation.SUM,
    GPU: Aggregation.MEAN,
}


def family_rule(metric: MetricName, **options: Any) -> FamilyRule:
    rule = parse_rule(
        spec(metric, {"families": "all", **options}, AGGREGATES[metric]), PromLabels()
    )
    assert isinstance(rule, FamilyRule)
    return rule


@pytest.fixture(scope="module")
def prom() -> Iterator[PrometheusServer]:
    with serving() as target, PrometheusServer([target]) as server:
        # Rates need two scrapes of every histogram; wait until each pod has one.
        server.wait_for(
            "count(sum by (pod) (rate({__name__=~'.+_bucket',namespace='srv'}[2m])) > 0)",
            timeout=60,
            predicate=lambda result: bool(result) and float(result[0]["value"][1]) >= 9,
        )
        yield server


@pytest.fixture
async def client(prom: PrometheusServer) -> Any:
    client = PrometheusClient(TransportOptions(url=prom.url, timeout=10))
    yield client
    client.close()


def one(prom: PrometheusServer, expr: str, at: float) -> float:
    result = prom.query(expr, at=at)
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def close(ours: float, theirs: float) -> bool:
    """Equal but for float noise: a scrape between the two evaluations changes the
    rates' last bits (their ratios, hence the quantile, are otherwise fixed)."""
    return math.isclose(ours, theirs, rel_tol=1e-12)


# (pod, family, PromQL over the server's own histogram, conversion)
P95_CASES = [
    ("vllm-0", "vllm", "vllm:e2e_request_latency_seconds", ""),
    ("vllm-1", "vllm", "vllm:e2e_request_latency_seconds", ""),
    ("sglang-0", "sglang", "sglang:e2e_request_latency_seconds", ""),
    ("tgi-0", "tgi", "tgi_request_duration", ""),
    ("trtllm-serve-0", "trtllm-serve", "trtllm_e2e_request_latency_seconds", ""),
    ("nim-0", "nim", "e2e_request_latency_seconds", ""),
    ("kn-new-0", "knative", "kn_serving_invocation_duration_seconds", ""),
    ("kn-old-0", "knative", "revision_app_request_latencies", " / 1000"),
    ("both-0", "vllm", "vllm:e2e_request_latency_seconds", ""),
]


async def test_p95_per_family_equals_histogram_quantile_of_the_servers_histogram(
    prom: PrometheusServer, client: PrometheusClient
) -> None:
    source = PrometheusSource(client, [family_rule(LATENCY)])
    targets = {name: pod_target(NS, name) for name, *_ in P95_CASES}
    fleet = deployment_target(NS, "vllm", ["vllm-0", "vllm-1"])
    mismatches: list[Any] = []
    for _attempt in range(10):  # a scrape landing between our query and the reference
        await source.refresh_once()
        snap = source.snapshot[LATENCY]
        at = snap.pods[pod_key(NS, "vllm-0")].timestamp
        got = await source.fetch(LATENCY, [*targets.values(), fleet], EVERYTHING)
        mismatches = []
        for name, family, series, convert in P95_CASES:
            expected = one(
                prom,
                f"histogram_quantile(0.95, sum by (namespace, pod, le) "
                f'(rate({series}_bucket{{namespace="{NS}",pod="{name}"}}[2m]))){convert}',
                at,
            )
            sample = got[targets[name].obj]
            if not close(sample.value, expected) or sample.family != family:
                mismatches.append((name, sample, expected, family))
        fleet_expected = one(
            prom,
            "histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket"
            f'{{namespace="{NS}",pod=~"vllm-0|vllm-1"}}[2m])))',
            at,
        )
        if not close(got[fleet.obj].value, fleet_expected):
            mismatches.append(("fleet", got[fleet.obj], fleet_expected))
        if not mismatches:
            break
        await asyncio.sleep(0.3)
    assert mismatches == []
    assert got[fleet.obj].family == "vllm"
    assert got[fleet.obj].window_seconds == 120
    # The known distributions, independent of Prometheus: both-0 observes only <= 0.3 s.
    assert got[targets["both-0"].obj].value == pytest.approx(0.95 * 0.3, rel=1e-9)
    # Knative <= 1.18 reports ms: rank 95 of (30, 60, 10) lies in (1000, 2000] ms.
    assert got[targets["kn-old-0"].obj].value == pytest.approx(1.5, rel=1e-9)


async def test_triton_p95_only_from_the_summary_quantile(
    prom: PrometheusServer, client: PrometheusClient
) -> None:
    source = PrometheusSource(client, [family_rule(LATENCY)])
    await source.refresh_once()
    t0, t1 = pod_target(NS, "triton-0"), pod_target(NS, "triton-1")
    fleet = deployment_target(NS, "triton", ["triton-0", "triton-1"])
    got = await source.fetch(LATENCY, [t0, t1, fleet], EVERYTHING)
    # max over models of quantile="0.95", µs -> s, exactly PromQL's division.
    at = source.snapshot[LATENCY].pods[pod_key(NS, "triton-0")].timestamp
    expected = one(
        prom,
        'max by (namespace, pod) (nv_inference_request_summary_us{pod="triton-0",'
        'quantile="0.95"}) / 1e6',
        at,
    )
    assert got[t0.obj].value == expected == 0.25
    assert got[t0.obj].family == "triton"
    assert got[t0.obj].window_seconds is None
    # triton-1 has only the µs counters: no p95 (never the mean), and summaries
    # cannot be merged into a fleet quantile: the Deployment has none either.
    assert t1.obj not in got
    assert fleet.obj not in got


GAUGE_CASES = {
    QUEUE: {
        "vllm-0": (7.0, "vllm"),  # 3 + 4 over the two engines
        "vllm-old": (1.0, "vllm"),
        "sglang-0": (5.0, "sglang"),
        "tgi-0": (2.0, "tgi"),
        "triton-0": (3.0, "triton"),  # 1 + 2 over the models
        "triton-1": (4.0, "triton"),
        "triton-trtllm-0": (6.0, "triton-trtllm"),  # request_type="waiting", not Triton's 0
        "trtllm-serve-0": (1.0, "trtllm-serve"),
        "nim-0": (2.0, "nim"),
        "kn-new-0": (3.0, "knative"),
        "kn-old-0": (4.0, "knative"),
        "both-0": (8.0, "vllm"),  # not the generic 99
    },
    RUNNING: {
        "vllm-0": (7.0, "vllm"),
        "sglang-0": (9.0, "sglang"),
        "tgi-0": (6.0, "tgi"),
        "triton-trtllm-0": (3.0, "triton-trtllm"),
        "trtllm-serve-0": (2.0, "trtllm-serve"),
        "nim-0": (1.0, "nim"),
    },
    KV: {
        "vllm-0": (((0.25 + 0.5) / 2) * 100, "vllm"),
        "vllm-old": (0.8 * 100, "vllm"),  # the pre-0.9 name
        "sglang-0": (0.42 * 100, "sglang"),
        "triton-trtllm-0": (0.5 * 100, "triton-trtllm"),
        "trtllm-serve-0": (0.3 * 100, "trtllm-serve"),
        "nim-0": (0.6 * 100, "nim"),
    },
}


@pytest.mark.parametrize("metric", list(GAUGE_CASES))
async def test_gauges_per_pod_exact_with_their_family(
    client: PrometheusClient, metric: MetricName
) -> None:
    source = PrometheusSource(client, [family_rule(metric)])
    await source.refresh_once()
    pods = [pod_target(NS, name) for name in [*GAUGE_CASES[metric], "nobody"]]
    got = await source.fetch(metric, pods, EVERYTHING)
    values = {str(obj.name): (s.value, s.family) for obj, s in got.items()}
    assert values == GAUGE_CASES[metric]  # every other pod: no value, never 0
    fleet = deployment_target(NS, "vllm", ["vllm-0", "vllm-old"])
    combined = (await source.fetch(metric, [fleet], EVERYTHING)).get(fleet.obj)
    if metric is QUEUE:
        assert combined is not None
        assert (combined.value, combined.family) == (8.0, "vllm")
    elif metric is KV:
        assert combined is not None
        assert combined.value == (37.5 + 80.0) / 2


async def test_the_winner_is_visible_and_later_families_are_shadowed(
    client: PrometheusClient,
) -> None:
    source = PrometheusSource(client, [family_rule(QUEUE)])
    await source.refresh_once()
    snap = source.snapshot[QUEUE]
    assert snap.pods[pod_key(NS, "both-0")].family == "vllm"
    assert snap.pods[pod_key(NS, "triton-trtllm-0")].family == "triton-trtllm"
    # both-0's generic series and triton-trtllm-0's pending count lost to earlier families.
    assert snap.dropped["shadowed"] == 2


async def test_presets_restrict_and_order_the_families(client: PrometheusClient) -> None:
    rule = family_rule(QUEUE, families=["generic", "triton"])
    source = PrometheusSource(client, [rule])
    await source.refresh_once()
    both, trt = pod_target(NS, "both-0"), pod_target(NS, "triton-trtllm-0")
    got = await source.fetch(QUEUE, [both, trt, pod_target(NS, "vllm-0")], EVERYTHING)
    assert {str(o.name): (s.value, s.family) for o, s in got.items()} == {
        "both-0": (99.0, "generic"),
        "triton-trtllm-0": (0.0, "triton"),  # a real, measured 0 of Triton's own gauge
    }


async def test_promql_selectors_reach_series_with_any_label_value(
    client: PrometheusClient,
) -> None:
    rule = family_rule(RUNNING, selector='model_name="meta-llama/Llama-3.1-8B-Instruct"')
    source = PrometheusSource(client, [rule])
    await source.refresh_once()
    got = await source.fetch(
        RUNNING, [pod_target(NS, "vllm-0"), pod_target(NS, "sglang-0")], EVERYTHING
    )
    assert {str(o.name): s.value for o, s in got.items()} == {"vllm-0": 7.0}
    rule = family_rule(RUNNING, selector='{engine!="1", model_name=~"meta-llama/.*"}')
    source = PrometheusSource(client, [rule])
    await source.refresh_once()
    got = await source.fetch(RUNNING, [pod_target(NS, "vllm-0")], EVERYTHING)
    assert [s.value for s in got.values()] == [2.0]


# --- every generated query parses and evaluates, one per family ---

_names = st.lists(st.sampled_from(PRESETS), min_size=1, max_size=4, unique=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    metric=st.sampled_from(list(FAMILIES)),
    names=_names,
    quantile=st.sampled_from([0.5, 0.9, 0.95, 0.99, 0.999]),
    window=st.sampled_from(["30s", "2m", "1h5m"]),
    value=st.text(max_size=12),
    op=st.sampled_from(["=", "!=", "=~", "!~"]),
)
def test_every_generated_query_is_valid_promql(
    prom: PrometheusServer,
    metric: MetricName,
    names: list[str],
    quantile: float,
    window: str,
    value: str,
    op: str,
) -> None:
    known = {family.name for family in FAMILIES[metric]}
    chosen = [name for name in names if name in known] or [FAMILIES[metric][0].name]
    options: dict[str, Any] = {"families": chosen}
    if metric == LATENCY:
        options |= {"quantile": quantile, "window": window}
    if op in ("=~", "!~"):
        value = "".join(c for c in value if c.isalnum())  # a valid regex
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    options["selector"] = f'model_name{op}"{escaped}"'
    try:
        rule = family_rule(metric, **options)
    except ValueError:
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in value) or "\n" in value or "\r" in value
        return
    queries = rule.queries()
    assert [family for family, _ in queries] == chosen  # one query per family, in order
    for _, query in queries:
        prom.query(query)  # raises with Prometheus' message when it does not parse


def test_check_config_shows_each_pods_family(
    prom: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["check-config", "--preset", "tgi", "--preset", "vllm", "--prometheus-url", prom.url])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    winners = out[out.index("inference_queue_depth: pods per family in Prometheus now") :]
    assert winners[:3] == [
        "inference_queue_depth: pods per family in Prometheus now",
        "  tgi: 1 (srv/tgi-0)",
        "  vllm: 4 (srv/both-0, srv/vllm-0, srv/vllm-1, srv/vllm-old)",
    ]


async def test_family_pods_self_metric(client: PrometheusClient) -> None:
    registry = CollectorRegistry()
    source = PrometheusSource(client, [family_rule(KV)], registry=registry)
    await source.refresh_once()
    pods = {
        family: registry.get_sample_value(
            "adapter_prometheus_family_pods", {"metric": str(KV), "family": family}
        )
        for family in PRESETS
    }
    assert pods == {
        "vllm": 3.0,  # vllm-0, vllm-1, vllm-old (the old name)
        "sglang": 1.0,
        "trtllm-serve": 1.0,
        "triton-trtllm": 1.0,
        "triton": None,
        "tgi": None,
        "nim": 1.0,
        "knative": None,
        "generic": None,
        "dcgm-exporter": None,
    }
