"""PrometheusSource with a counting fake PrometheusAPI and a fake clock."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from adapter.core.catalogue import Aggregation
from adapter.core.errors import BadRequest, ServiceUnavailable
from adapter.core.model import MetricName, Sample
from adapter.core.selectors import EVERYTHING, parse_selector
from adapter.sources.prometheus import PrometheusSource, PromSample
from adapter.sources.prometheus.rules import PromLabels, parse_rule
from tests.fakes.clock import FakeClock
from tests.fakes.prometheus_api import FakePrometheusAPI

from .helpers import (
    bucket_rows,
    deployment_target,
    gauge_rows,
    latency_rule,
    pod_target,
    queue_rule,
    spec,
)

LATENCY = MetricName("inference_latency_p95")
QUEUE = MetricName("inference_queue_depth")
NOW = 1_000_000.0

A = {"0.1": 50.0, "0.2": 70.0, "+Inf": 100.0}
B = {"0.1": 0.0, "0.2": 10.0, "+Inf": 20.0}
IDLE = {"0.1": 0.0, "0.2": 0.0, "+Inf": 0.0}


def answer(expr: str) -> list[PromSample]:
    if "_bucket" in expr:
        return [
            *bucket_rows("ml", "a", A, NOW),
            *bucket_rows("ml", "b", B, NOW),
            *bucket_rows("ml", "idle", IDLE, NOW),
            PromSample({"pod": "x", "le": "+Inf"}, NOW, 1.0),  # no namespace: unattributable
        ]
    return [
        *gauge_rows("ml", "a", 7.0, NOW - 2, NOW),
        *gauge_rows("ml", "b", 3.0, NOW - 1, NOW),
        *gauge_rows("ml", "idle", 0.0, NOW - 1, NOW),
        *gauge_rows("ml", "nan", math.nan, NOW - 1, NOW),
        *gauge_rows("ml", "old", 5.0, NOW - 100, NOW),
    ]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def api() -> FakePrometheusAPI:
    return FakePrometheusAPI(answer)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def source(
    api: FakePrometheusAPI, clock: FakeClock, registry: CollectorRegistry
) -> PrometheusSource:
    return PrometheusSource(
        api, [latency_rule(), queue_rule()], refresh_interval=15, clock=clock, registry=registry
    )


async def test_one_query_per_rule_per_refresh(
    source: PrometheusSource, api: FakePrometheusAPI
) -> None:
    await source.refresh_once()
    assert len(api.calls) == 2
    for _ in range(100):
        await source.fetch(LATENCY, [pod_target("ml", "a")], EVERYTHING)
    assert len(api.calls) == 2


async def test_snapshots_are_built_off_the_event_loop(
    source: PrometheusSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build at 10,000 pods is 0.3 s of Python: never on the loop's thread."""
    from adapter.sources.prometheus import snapshot  # noqa: PLC0415

    loop_thread = threading.get_ident()
    built_on: list[int] = []
    real_build = snapshot.build

    def recording_build(*args: Any, **kwargs: Any) -> snapshot.RuleSnapshot:
        built_on.append(threading.get_ident())
        return real_build(*args, **kwargs)

    monkeypatch.setattr(snapshot, "build", recording_build)
    await source.refresh_once()
    assert len(built_on) == 2  # the latency and the queue rule
    assert loop_thread not in built_on
    assert sorted(source.snapshot) == ["inference_latency_p95", "inference_queue_depth"]


async def test_after_refresh_runs_once_per_refresh_after_the_swap(
    api: FakePrometheusAPI, clock: FakeClock
) -> None:
    seen: list[tuple[int, list[str]]] = []
    refreshed = PrometheusSource(
        api,
        [latency_rule(), queue_rule()],
        clock=clock,
        after_refresh=lambda: seen.append((refreshed.version, sorted(refreshed.snapshot))),
    )
    await refreshed.refresh_once()
    api.fail = True  # a failed refresh is a refresh too: the hook still runs
    await refreshed.refresh_once()
    metrics = ["inference_latency_p95", "inference_queue_depth"]
    assert seen == [(1, metrics), (2, metrics)]


async def test_per_pod_values_and_omissions(source: PrometheusSource) -> None:
    await source.refresh_once()
    targets = [pod_target("ml", p) for p in ("a", "b", "idle", "ghost")]
    latency = await source.fetch(LATENCY, targets, EVERYTHING)
    # a: rank 95 of 100 falls into +Inf -> the second-highest bound; b: rank 19 of 20 likewise
    assert latency[targets[0].obj] == Sample(0.2, NOW, 120)
    assert latency[targets[1].obj] == Sample(0.2, NOW, 120)
    assert targets[2].obj not in latency  # no traffic: NaN, omitted, never 0
    assert targets[3].obj not in latency  # no series at all

    queue = await source.fetch(
        QUEUE, [pod_target("ml", p) for p in ("a", "idle", "nan", "old")], EVERYTHING
    )
    assert {obj.name: s.value for obj, s in queue.items()} == {"a": 7.0, "idle": 0.0}
    assert queue[pod_target("ml", "a").obj].timestamp == NOW - 2  # the sample's own time


async def test_fleet_quantile_merges_buckets(source: PrometheusSource) -> None:
    await source.refresh_once()
    web = deployment_target("ml", "web", ["a", "b", "idle", "ghost"])
    got = await source.fetch(LATENCY, [web], EVERYTHING)
    # merged: 0.1 -> 50, 0.2 -> 80, +Inf -> 120; rank 114 falls into +Inf -> 0.2
    assert got[web.obj] == Sample(0.2, NOW, 120)
    half = parse_rule(
        spec("inference_latency_p95", {"histogram": "h", "quantile": 0.5}, Aggregation.HISTOGRAM),
        PromLabels(),
    )
    source.update_rules([half, queue_rule()])
    await source.refresh_once()
    got = await source.fetch(LATENCY, [web], EVERYTHING)
    assert got[web.obj].value == pytest.approx(0.1 + 0.1 * 10 / 30)  # rank 60 of 120
    queue = await source.fetch(QUEUE, [web], EVERYTHING)
    assert queue[web.obj] == Sample(10.0, NOW - 2)  # sum of a, b and idle; oldest timestamp


async def test_objects_without_any_value_are_absent(source: PrometheusSource) -> None:
    await source.refresh_once()
    empty = deployment_target("ml", "empty", ["idle", "ghost"])
    assert await source.fetch(LATENCY, [empty], EVERYTHING) == {}


async def test_stale_values_disappear(source: PrometheusSource, clock: FakeClock) -> None:
    await source.refresh_once()
    a = pod_target("ml", "a")
    clock.advance(43)  # the gauge sample is 2 s old at fetch: 45 s bound reached at +43
    assert a.obj in await source.fetch(QUEUE, [a], EVERYTHING)
    assert a.obj in await source.fetch(LATENCY, [a], EVERYTHING)
    clock.advance(1)
    assert await source.fetch(QUEUE, [a], EVERYTHING) == {}
    assert a.obj in await source.fetch(LATENCY, [a], EVERYTHING)
    clock.advance(1.5)
    assert await source.fetch(LATENCY, [a], EVERYTHING) == {}


async def test_failed_refresh_keeps_last_values_until_the_bound(
    source: PrometheusSource, api: FakePrometheusAPI, clock: FakeClock, registry: CollectorRegistry
) -> None:
    await source.refresh_once()
    api.fail = True
    a = pod_target("ml", "a")
    clock.advance(30)
    await source.refresh_once()
    assert (await source.fetch(LATENCY, [a], EVERYTHING))[a.obj].value == 0.2
    assert (
        registry.get_sample_value(
            "adapter_prometheus_query_errors_total", {"metric": "inference_latency_p95"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "adapter_prometheus_snapshot_age_seconds", {"metric": "inference_latency_p95"}
        )
        == 30
    )
    clock.advance(16)
    await source.refresh_once()
    assert await source.fetch(LATENCY, [a], EVERYTHING) == {}
    api.fail = False
    await source.refresh_once()
    assert a.obj in await source.fetch(LATENCY, [a], EVERYTHING)


async def test_self_metrics(source: PrometheusSource, registry: CollectorRegistry) -> None:
    await source.refresh_once()
    get = registry.get_sample_value
    assert get("adapter_prometheus_snapshot_samples", {"metric": "inference_latency_p95"}) == 2
    assert get("adapter_prometheus_snapshot_samples", {"metric": "inference_queue_depth"}) == 3
    assert (
        get(
            "adapter_prometheus_snapshot_dropped",
            {"metric": "inference_latency_p95", "reason": "nan"},
        )
        == 1
    )
    assert (
        get(
            "adapter_prometheus_snapshot_dropped",
            {"metric": "inference_latency_p95", "reason": "unattributed"},
        )
        == 1
    )
    assert (
        get(
            "adapter_prometheus_snapshot_dropped",
            {"metric": "inference_queue_depth", "reason": "nan"},
        )
        == 1
    )
    assert (
        get(
            "adapter_prometheus_snapshot_dropped",
            {"metric": "inference_queue_depth", "reason": "stale"},
        )
        == 1
    )
    assert (
        get("adapter_prometheus_query_duration_seconds_count", {"metric": "inference_queue_depth"})
        == 1
    )
    source.update_rules([latency_rule()])
    await source.refresh_once()
    assert get("adapter_prometheus_snapshot_samples", {"metric": "inference_queue_depth"}) is None


async def test_update_rules_swaps_atomically(
    source: PrometheusSource, api: FakePrometheusAPI
) -> None:
    await source.refresh_once()
    source.update_rules([latency_rule()])
    # a removed metric stops at once, before any refresh
    assert await source.fetch(QUEUE, [pod_target("ml", "a")], EVERYTHING) == {}
    api.calls.clear()
    await source.refresh_once()
    assert len(api.calls) == 1
    with pytest.raises(ValueError, match="two rules"):
        source.update_rules([latency_rule(), latency_rule()])


async def test_concurrent_identical_selector_requests_share_one_query(
    source: PrometheusSource, api: FakePrometheusAPI
) -> None:
    api.gate = asyncio.Event()
    selector = parse_selector("model=llama")
    a = pod_target("ml", "a")
    requests = [asyncio.create_task(source.fetch(LATENCY, [a], selector)) for _ in range(50)]
    await asyncio.sleep(0.01)
    assert len(api.calls) == 1
    assert 'model="llama"' in api.calls[0]
    api.gate.set()
    results = await asyncio.gather(*requests)
    assert all(r[a.obj].value == 0.2 for r in results)
    assert len(api.calls) == 1


async def test_selector_cache_expires_after_ttl(
    source: PrometheusSource, api: FakePrometheusAPI, clock: FakeClock
) -> None:
    selector = parse_selector("model=llama")
    a = pod_target("ml", "a")
    await source.fetch(LATENCY, [a], selector)
    clock.advance(14.9)
    await source.fetch(LATENCY, [a], selector)
    assert len(api.calls) == 1
    await source.fetch(LATENCY, [a], parse_selector("model=mistral"))
    assert len(api.calls) == 2
    clock.advance(0.2)
    await source.fetch(LATENCY, [a], selector)
    assert len(api.calls) == 3


async def test_selector_failures_are_shared_not_cached(
    source: PrometheusSource, api: FakePrometheusAPI
) -> None:
    api.fail = True
    api.gate = asyncio.Event()
    selector = parse_selector("model=llama")
    a = pod_target("ml", "a")
    requests = [asyncio.create_task(source.fetch(LATENCY, [a], selector)) for _ in range(5)]
    await asyncio.sleep(0.01)
    api.gate.set()
    outcomes = await asyncio.gather(*requests, return_exceptions=True)
    assert all(isinstance(o, ServiceUnavailable) for o in outcomes)  # 503, not 500
    assert len(api.calls) == 1
    api.fail = False
    assert a.obj in await source.fetch(LATENCY, [a], selector)
    assert len(api.calls) == 2


async def test_one_cancelled_caller_does_not_cancel_the_shared_query(
    source: PrometheusSource, api: FakePrometheusAPI
) -> None:
    api.gate = asyncio.Event()
    selector = parse_selector("model=llama")
    a = pod_target("ml", "a")
    first = asyncio.create_task(source.fetch(LATENCY, [a], selector))
    second = asyncio.create_task(source.fetch(LATENCY, [a], selector))
    await asyncio.sleep(0.01)
    first.cancel()
    api.gate.set()
    assert a.obj in await second
    assert len(api.calls) == 1


async def test_invalid_selector_label_is_a_bad_request(
    source: PrometheusSource, api: FakePrometheusAPI
) -> None:
    with pytest.raises(BadRequest, match="not a valid Prometheus label name"):
        await source.fetch(
            LATENCY, [pod_target("ml", "a")], parse_selector("app.kubernetes.io/name=x")
        )
    assert api.calls == []


async def test_unknown_metric_and_no_snapshot_yet(source: PrometheusSource) -> None:
    assert await source.fetch(MetricName("nope"), [pod_target("ml", "a")], EVERYTHING) == {}
    assert await source.fetch(LATENCY, [pod_target("ml", "a")], EVERYTHING) == {}


async def test_template_rule_drops_ambiguous_pods(clock: FakeClock) -> None:
    rows = [
        PromSample({"namespace": "ml", "pod": "a"}, NOW, 1.5),
        PromSample({"namespace": "ml", "pod": "b", "code": "200"}, NOW, 1.0),
        PromSample({"namespace": "ml", "pod": "b", "code": "500"}, NOW, 2.0),
        PromSample({"namespace": "ml", "pod": "c"}, NOW, math.inf),
    ]
    rule = parse_rule(
        spec(
            "rps",
            {"query": "sum by (<<groupBy>>) (rate(r{<<matchers>>}[<<window>>]))", "window": "1m"},
        ),
        PromLabels(),
    )
    source = PrometheusSource(FakePrometheusAPI(lambda _: rows), [rule], clock=clock)
    await source.refresh_once()
    targets = [pod_target("ml", p) for p in "abc"]
    got = await source.fetch(MetricName("rps"), targets, EVERYTHING)
    assert got == {targets[0].obj: Sample(1.5, NOW, 60)}
    assert source.snapshot[MetricName("rps")].dropped == {"duplicate": 1, "inf": 1}


async def test_run_refreshes_until_cancelled(api: FakePrometheusAPI, clock: FakeClock) -> None:
    source = PrometheusSource(api, [latency_rule()], refresh_interval=0.01, clock=clock)
    task = asyncio.create_task(source.run())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(api.calls) >= 3


async def test_version_and_valid_until_tell_the_read_cache_when_answers_change(
    source: PrometheusSource, api: FakePrometheusAPI, clock: FakeClock
) -> None:
    """Every snapshot swap (even one keeping a failed rule's values) and every rules
    update is a new version; between them an answer holds until the first value that
    could be in it goes stale: the gauge values expire in order of their age."""
    assert (source.version, source.valid_until(QUEUE, NOW)) == (0, math.inf)
    await source.refresh_once()
    assert source.version == 1
    stale = 3 * 15.0  # the staleness bound: three refresh intervals
    a_until, b_until = NOW + stale - 2, NOW + stale - 1  # a was 2 s old when fetched, b 1 s
    assert [source.valid_until(QUEUE, t) for t in (NOW, a_until, a_until + 0.5, b_until)] == [
        a_until,
        a_until,
        b_until,
        b_until,
    ]
    assert source.valid_until(QUEUE, b_until + 0.5) == math.inf
    assert source.valid_until(LATENCY, NOW) == NOW + stale  # one fetch time for all buckets
    clock.now = a_until + 0.5
    got = await source.fetch(QUEUE, [pod_target("ml", "a"), pod_target("ml", "b")], EVERYTHING)
    assert [obj.name for obj in got] == ["b"]
    api.fail = True
    await source.refresh_once()
    assert source.version == 2
    source.update_rules([latency_rule()])
    assert (source.version, source.valid_until(QUEUE, NOW)) == (3, math.inf)
