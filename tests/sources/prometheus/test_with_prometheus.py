"""Against the real Prometheus (Debian package) scraping a simulated fleet every second.

The fleet observes the same exact latencies every tick, so every pod's and
every deployment's quantile is known to Prometheus, and ours must equal
``histogram_quantile`` evaluated at the same instant.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from adapter.core.catalogue import Aggregation
from adapter.core.errors import BadRequest
from adapter.core.model import MetricName
from adapter.core.selectors import EVERYTHING, Operator, parse_selector
from adapter.demo.fleet import FixedLoad, Fleet, SimulatedPod
from adapter.sources.prometheus import (
    PrometheusClient,
    PrometheusSource,
    TransportOptions,
    promql,
    shards,
)
from adapter.sources.prometheus.promql import PromQLError
from adapter.sources.prometheus.rules import PromLabels, parse_rule
from adapter.sources.prometheus.transport import Columns, _vector, decode
from tests.fakes.clock import FakeClock
from tests.support.prometheus_server import PrometheusServer, free_port

from .helpers import deployment_target, latency_rule, pod_key, pod_target, queue_rule, spec

pytestmark = pytest.mark.prometheus

LATENCY = MetricName("inference_latency_p95")
QUEUE = MetricName("inference_queue_depth")

LOADS = {
    # a's rank 95 of 100 falls inside (0.15, 0.2], never on a bucket's upper edge: at an edge,
    # 0.95 x total may round a hair above the bucket's count and land in the next bucket with
    # any increase ((1.5, 2]), in Prometheus and in ours alike.
    ("ml", "a"): FixedLoad([0.02] * 50 + [0.2] * 46 + [2.0] * 4, 7),
    ("ml", "b"): FixedLoad([0.06] * 30 + [0.4] * 60 + [8.0] * 10, 3),
    ("ml", "idle"): FixedLoad([], 0),  # series exist, no traffic: NaN latency, a real 0 queue
    ("other", "c"): FixedLoad([0.1] * 10 + [0.7] * 3, 1.5),
}

# Label values an attacker would try, exported as series so matchers can be checked.
TRICKY = [
    "plain", 'a"b', "a\\b", 'a\\"b', "x\ny", "}", "{", 'x"} or vector(1) or up{a="', " or ",
    "or", "é", "日本", "🙂", ".*", "a|b", "^$", "\t", "\\n", "a b", "'", "`", "a,b", "=~",
]  # fmt: skip


@pytest.fixture(scope="module")
def probe_target() -> Iterator[str]:
    registry = CollectorRegistry()
    gauge = Gauge(
        "probe_series", "Label values for the escaping tests.", ["probe"], registry=registry
    )
    for i, value in enumerate(TRICKY):
        gauge.labels(value).set(i)
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", registry)
    yield f"127.0.0.1:{port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    pods = [SimulatedPod(ns, name, load) for (ns, name), load in LOADS.items()]
    fleet = Fleet(pods, tick=0.25)
    with fleet.in_thread():
        yield fleet


@pytest.fixture(scope="module")
def prom(fleet: Fleet, probe_target: str) -> Iterator[PrometheusServer]:
    with PrometheusServer([*fleet.targets, probe_target]) as server:
        # Every pod's rate must be computable (two scrapes of each target, idle's included)
        # and the busy pods' must be positive before any test compares against Prometheus.
        server.wait_for(
            "sum by (pod) (rate(inference_duration_seconds_count[2m]))",
            timeout=90,
            predicate=lambda result: (
                len(result) == len(LOADS)
                and sum(float(r["value"][1]) > 0 for r in result) == len(LOADS) - 1
            ),
        )
        # The idle pod has no traffic, but its (zero) rates must exist: two scrapes of it.
        server.wait_for('rate(inference_duration_seconds_count{pod="idle"}[2m])', timeout=30)
        server.wait_for("probe_series", predicate=lambda result: len(result) == len(TRICKY))
        yield server


@pytest.fixture
async def client(prom: PrometheusServer) -> Any:
    client = PrometheusClient(TransportOptions(url=prom.url, timeout=5))
    yield client
    client.close()


def by_pod(result: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {(r["metric"]["namespace"], r["metric"]["pod"]): float(r["value"][1]) for r in result}


async def test_per_pod_and_fleet_quantiles_equal_prometheus(
    prom: PrometheusServer, client: PrometheusClient
) -> None:
    source = PrometheusSource(client, [latency_rule()])
    # Our query and the reference must see the same samples: a scrape landing between
    # them with a timestamp before the evaluation time can change the data, so retry
    # until a pair agrees. Under load (2 shared cores) that race is common: retry on a
    # deadline, not a count, then assert exactly on the last pair.
    deadline = time.monotonic() + 90
    while True:
        await source.refresh_once()
        snap = source.snapshot[LATENCY]
        at = snap.pods[pod_key("ml", "a")].timestamp  # the evaluation time Prometheus reported
        expected = by_pod(
            prom.query(
                "histogram_quantile(0.95, sum by (namespace, pod, le) "
                "(rate(inference_duration_seconds_bucket[2m])))",
                at=at,
            )
        )
        fleet_expected = prom.query(
            "histogram_quantile(0.95, sum by (le) (rate("
            'inference_duration_seconds_bucket{namespace="ml",pod=~"a|b|idle"}[2m])))',
            at=at,
        )
        targets = [pod_target(ns, name) for ns, name in LOADS]
        web = deployment_target("ml", "web", ["a", "b", "idle", "ghost"])
        got = await source.fetch(LATENCY, [*targets, web], EVERYTHING)
        ours: dict[tuple[str | None, str], float] = {
            (t.obj.namespace, t.obj.name): got[t.obj].value for t in targets if t.obj in got
        }
        fleet_ours = got[web.obj].value
        finite = {k: v for k, v in expected.items() if math.isfinite(v)}
        if (
            ("ml", "idle") in expected
            and ours.keys() == finite.keys()
            and all(math.isclose(ours[k], finite[k], rel_tol=1e-9) for k in finite)
            and math.isclose(fleet_ours, float(fleet_expected[0]["value"][1]), rel_tol=1e-9)
        ) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)  # step out of the scrape that raced us
    assert ours == pytest.approx(finite, rel=1e-9)
    assert fleet_ours == pytest.approx(float(fleet_expected[0]["value"][1]), rel=1e-9)
    assert set(ours) == {("ml", "a"), ("ml", "b"), ("other", "c")}  # idle is NaN: omitted
    assert math.isnan(expected[("ml", "idle")])
    # The known distributions: a's rank 95 of 100 is 45/46 into (0.15, 0.2]; b's is halfway
    # through (7.5, 10] (rates of one pod's buckets keep the ratios of the counts).
    assert ours[("ml", "a")] == pytest.approx(0.15 + 0.05 * 45 / 46, rel=1e-2)
    assert ours[("ml", "b")] == pytest.approx(8.75, rel=1e-2)
    sample = got[targets[0].obj]
    assert sample.window_seconds == 120
    assert abs(sample.timestamp - time.time()) < 10


async def test_prometheus_answers_are_read_by_column(
    prom: PrometheusServer, client: PrometheusClient
) -> None:
    """This Prometheus writes the compact layout the column decoder reads, for both
    built-in queries; the columns equal json's decoding of the same bytes."""
    for rule in (latency_rule(), queue_rule()):
        expr = rule.query()  # type: ignore[union-attr]
        vector = await client.query(expr)
        assert isinstance(vector, Columns)
        assert len(vector) > 0
        response = requests.get(f"{prom.url}/api/v1/query", params={"query": expr}, timeout=30)
        body = response.content
        assert isinstance(decode(body), Columns)
        assert list(_vector(decode(body))) == list(_vector(json.loads(body)["data"]["result"]))
    compressed = PrometheusClient(TransportOptions(url=prom.url, timeout=5, compression=True))
    try:  # a gzip-compressed answer decodes the same
        assert isinstance(await compressed.query(queue_rule().query()), Columns)  # type: ignore[union-attr]
    finally:
        compressed.close()


async def test_queue_depth_exact_with_sample_timestamps(client: PrometheusClient) -> None:
    source = PrometheusSource(client, [queue_rule()])
    await source.refresh_once()
    targets = [pod_target(ns, name) for ns, name in [*LOADS, ("ml", "ghost")]]
    web = deployment_target("ml", "web", ["a", "b", "idle", "ghost"])
    got = await source.fetch(QUEUE, [*targets, web], EVERYTHING)
    values = {(obj.namespace, obj.name): s.value for obj, s in got.items()}
    assert values == {
        ("ml", "a"): 7.0,
        ("ml", "b"): 3.0,
        ("ml", "idle"): 0.0,  # a real, measured zero is served; a missing pod is not
        ("other", "c"): 1.5,
        ("ml", "web"): 10.0,
    }
    for sample in got.values():
        assert sample.window_seconds is None
        assert time.time() - 10 < sample.timestamp <= time.time()


async def test_template_rule_equals_prometheus(
    prom: PrometheusServer, client: PrometheusClient
) -> None:
    template = (
        "sum by (<<groupBy>>) (rate(inference_duration_seconds_count{<<matchers>>}[<<window>>]))"
    )
    rule = parse_rule(
        spec("rps", {"query": template, "window": "1m"}, Aggregation.SUM), PromLabels()
    )
    source = PrometheusSource(client, [rule])
    await source.refresh_once()
    snap = source.snapshot[MetricName("rps")]
    at = snap.pods[pod_key("ml", "a")].timestamp
    expected = by_pod(
        prom.query("sum by (namespace, pod) (rate(inference_duration_seconds_count[1m]))", at=at)
    )
    targets = [pod_target(ns, name) for ns, name in LOADS]
    got = await source.fetch(MetricName("rps"), targets, EVERYTHING)
    ours: dict[tuple[str | None, str], float] = {
        (o.namespace, o.name): s.value for o, s in got.items()
    }
    assert ours.keys() == expected.keys()
    assert ours[("ml", "a")] == pytest.approx(expected[("ml", "a")], rel=1e-6)


async def test_metric_label_selector_queries(client: PrometheusClient) -> None:
    source = PrometheusSource(client, [latency_rule(), queue_rule()])
    a = pod_target("ml", "a")
    same = await source.fetch(QUEUE, [a], parse_selector("job=targets"))
    assert same[a.obj].value == 7.0
    assert await source.fetch(QUEUE, [a], parse_selector("job=nope")) == {}
    assert await source.fetch(QUEUE, [a], parse_selector("job notin (targets)")) == {}
    assert a.obj in await source.fetch(LATENCY, [a], parse_selector("job in (targets,other)"))
    with pytest.raises(BadRequest):
        await source.fetch(QUEUE, [a], parse_selector("app.kubernetes.io/name=web"))


async def test_missing_nan_and_stale_are_omitted(client: PrometheusClient) -> None:
    clock = FakeClock(time.time())
    source = PrometheusSource(client, [latency_rule(), queue_rule()], clock=clock)
    await source.refresh_once()
    idle, ghost, a = pod_target("ml", "idle"), pod_target("ml", "ghost"), pod_target("ml", "a")
    latency = await source.fetch(LATENCY, [idle, ghost, a], EVERYTHING)
    assert list(latency) == [a.obj]
    clock.advance(46)  # past the 45 s bound: gone, never 0
    assert await source.fetch(LATENCY, [a], EVERYTHING) == {}
    assert await source.fetch(QUEUE, [a, idle], EVERYTHING) == {}


# --- injection: generated matchers run against the real server ---


def series_labels(prom: PrometheusServer) -> list[dict[str, str]]:
    return [r["metric"] for r in prom.query("probe_series")]


def expected_match(op: Operator, values: list[str], actual: str) -> bool:
    """Kubernetes selector semantics over a label value ('' when absent)."""
    if op is Operator.EXISTS:
        return actual != ""
    if op is Operator.DOES_NOT_EXIST:
        return actual == ""
    if op in (Operator.EQUALS, Operator.IN):
        return actual in values
    return actual not in values


label_keys = st.one_of(st.sampled_from(["probe", "job", "absent_label"]), st.text(max_size=8))
label_values = st.one_of(st.sampled_from(TRICKY), st.text(max_size=12))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=label_keys,
    op=st.sampled_from(list(Operator)),
    values=st.lists(label_values, min_size=1, max_size=3),
)
def test_generated_matchers_only_match_literal_values(
    prom: PrometheusServer, key: str, op: Operator, values: list[str]
) -> None:
    if op in (Operator.EQUALS, Operator.NOT_EQUALS):
        values = values[:1]
    elif op in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
        values = []
    try:
        matcher = promql.matcher(key, op, values)
    except PromQLError:
        assert (
            not promql.LABEL_NAME_RE.fullmatch(key)
            or key.startswith("__")
            or any(0xD800 <= ord(c) <= 0xDFFF for v in values for c in v)
        )
        return
    # The matcher is a single well-formed term: Prometheus parses it, and the result
    # is exactly the series whose label equals one of the inputs literally.
    result = prom.query(f"probe_series{{{matcher}}}")
    got = sorted(r["metric"]["probe"] for r in result)
    expected = sorted(
        labels["probe"]
        for labels in ALL_SERIES(prom)
        if expected_match(op, values, labels.get(key, ""))
    )
    assert got == expected


_series_cache: dict[str, list[dict[str, str]]] = {}


def ALL_SERIES(prom: PrometheusServer) -> list[dict[str, str]]:
    if prom.url not in _series_cache:
        _series_cache[prom.url] = series_labels(prom)
    return _series_cache[prom.url]


@settings(max_examples=50, deadline=None)
@given(value=st.text(min_size=1, max_size=20))
def test_quoted_strings_read_back_exactly(prom: PrometheusServer, value: str) -> None:
    assume("$" not in value)  # label_replace expands $1 in its replacement, not our concern
    try:
        literal = promql.quote(value)
    except PromQLError:
        return
    result = prom.query(f'label_replace(vector(1), "probe", {literal}, "", "")')
    assert [r["metric"].get("probe") for r in result] == [value]


# --- sharded refresh queries: a partition in Prometheus' own regex engine ---

# The last characters of the TRICKY values, and the characters special in a class.
TRICKY_ALPHABET = "nb}{\"*$\t'`~ é本🙂\\]^-yr"


@pytest.mark.parametrize("alphabet", [shards.ALPHABET, TRICKY_ALPHABET])
@pytest.mark.parametrize("count", [2, 3, 4, 16])
def test_shards_partition_every_label_value_in_prometheus(
    prom: PrometheusServer, alphabet: str, count: int
) -> None:
    """Each probe value (quotes, newlines, non-ASCII, regex syntax) is kept by exactly one
    shard, as RE2 reads the matchers; with the tricky alphabet, by the shard of its last
    character."""
    found: list[str] = []
    for own in shards.shard_matchers("probe", count, alphabet):
        result = prom.query(f"probe_series{{{promql.render_matchers(own)}}}")
        found += [r["metric"]["probe"] for r in result]
    assert sorted(found) == sorted(TRICKY)
    if alphabet == TRICKY_ALPHABET:
        first = shards.shard_matchers("probe", count, alphabet)[0]
        result = prom.query(f"probe_series{{{promql.render_matchers(first)}}}")
        expected = [v for v in TRICKY if v[-1] in alphabet[::count] and "\n" not in v]
        assert sorted(r["metric"]["probe"] for r in result) == sorted(expected)


class Recording:
    """A PrometheusAPI that records the queries it passes on."""

    def __init__(self, api: PrometheusClient) -> None:
        self.api = api
        self.calls: list[str] = []

    async def query(self, expr: str, *, at: float | None = None) -> Any:
        self.calls.append(expr)
        return await self.api.query(expr, at=at)


async def test_a_sharded_refresh_equals_the_unsharded_one(client: PrometheusClient) -> None:
    """Forced to split (one shard per series, at most 4), the refresh sends 4 shards per
    query and serves what one query per rule serves. Both evaluate at their own moment, so
    compare until a pair agrees (a scrape may land between them), then exactly."""
    recording = Recording(client)
    rules = [latency_rule(), queue_rule()]
    sharded = PrometheusSource(recording, rules, series_per_shard=1, max_query_shards=4)
    plain = PrometheusSource(client, rules, max_query_shards=1)
    await sharded.refresh_once()
    assert len(recording.calls) == 2  # the first refresh: sizes unknown, one query each

    def values(source: PrometheusSource) -> dict[MetricName, dict[Any, float]]:
        """Per metric and pod its value, NaN for a pod without one."""
        return {
            metric: {
                key: math.nan if value.sample is None else value.sample.value
                for key, value in snap.pods.items()
            }
            for metric, snap in source.snapshot.items()
        }

    deadline = time.monotonic() + 90
    while True:
        recording.calls.clear()
        await sharded.refresh_once()
        await plain.refresh_once()
        got, expected = values(sharded), values(plain)
        agree = got.keys() == expected.keys() and all(
            got[m] == pytest.approx(expected[m], rel=1e-9, nan_ok=True) for m in got
        )
        if agree or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    assert len(recording.calls) == 8
    for rule in rules:
        for own in shards.shard_matchers("pod", 4):
            assert rule.query(own) in recording.calls  # type: ignore[union-attr]
    assert got.keys() == {LATENCY, QUEUE}
    for metric in got:
        assert got[metric].keys() == expected[metric].keys()
        assert got[metric] == pytest.approx(expected[metric], rel=1e-9, nan_ok=True)
        assert sharded.snapshot[metric].dropped == plain.snapshot[metric].dropped
    assert set(got[LATENCY]) == {pod_key("ml", "a"), pod_key("ml", "b"), pod_key("ml", "idle"),
                                 pod_key("other", "c")}  # fmt: skip
    assert got[QUEUE][pod_key("ml", "a")] == 7.0


# --- an outage: last values until the bound, then nothing, then values again ---


def test_outage_serves_last_values_until_the_bound_then_nothing(prometheus_factory: Any) -> None:
    pods = [SimulatedPod("ml", "q", FixedLoad([], 4))]
    with Fleet(pods, tick=0.25).in_thread() as fleet:
        prom = prometheus_factory(fleet.targets)
        prom.wait_for('inference_queue_depth{pod="q"}', timeout=60)
        asyncio.run(_outage(prom))


async def _outage(prom: PrometheusServer) -> None:
    clock = FakeClock(time.time())
    client = PrometheusClient(TransportOptions(url=prom.url, timeout=10))
    source = PrometheusSource(client, [queue_rule()], clock=clock)
    q = pod_target("ml", "q")
    try:
        await source.refresh_once()
        assert (await source.fetch(QUEUE, [q], EVERYTHING))[q.obj].value == 4.0

        prom.stop()
        clock.advance(20)
        await source.refresh_once()  # fails: the last values stay
        assert (await source.fetch(QUEUE, [q], EVERYTHING))[q.obj].value == 4.0
        clock.advance(30)  # the sample is now older than the 45 s bound
        await source.refresh_once()
        assert await source.fetch(QUEUE, [q], EVERYTHING) == {}  # omitted, never 0

        prom.start()
        prom.wait_for('timestamp(inference_queue_depth{pod="q"}) > time() - 2', timeout=60)
        await source.refresh_once()
        assert (await source.fetch(QUEUE, [q], EVERYTHING))[q.obj].value == 4.0
    finally:
        client.close()
