"""GpuSource against fake collectors on loopback: exact values, staleness, failures, metrics."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from adapter.core.errors import BadRequest
from adapter.core.model import MetricName, NodeName
from adapter.core.selectors import EVERYTHING, parse_selector
from adapter.kube.podsfile import PodsFileIndex
from adapter.settings import GpuSettings
from adapter.sources.gpu import GpuSource, PodDiscovery, StaticDiscovery
from adapter.sources.gpu.discovery import CollectorEndpoint
from tests.fakes.clock import FakeClock
from tests.fakes.gpu_collector import FakeCollector
from tests.sources.gpu.helpers import (
    T0,
    deployment_target,
    node_target,
    pod,
    pod_doc,
    pod_target,
    snapshot_doc,
)

GPU = MetricName("gpu_utilization")
INTERVAL = 5.0

A, B, C = (
    pod("a", node="n1", owner="web-5d8f"),
    pod("b", node="n1", owner="web-5d8f"),
    pod("c", node="n2", owner="web-5d8f"),
)
WEB = deployment_target("web", A, B, C)


def ticking(
    clock: FakeClock, node: str, pods: dict[str, float], gpus: list[float | None], **kw: Any
) -> Callable[[], dict[str, Any]]:
    """A collector that ticks with the clock: sampledAt and every sampleTime are 'now'."""
    return lambda: snapshot_doc(node, pods, gpus, sampled_at=clock(), **kw)


def make(urls: list[str], clock: FakeClock, **kw: Any) -> tuple[GpuSource, CollectorRegistry]:
    registry = CollectorRegistry()
    source = GpuSource(
        StaticDiscovery(urls),
        pull_interval=INTERVAL,
        timeout=1.0,
        clock=clock,
        registry=registry,
        **kw,
    )
    return source, registry


@asynccontextmanager
async def closing(source: GpuSource) -> AsyncIterator[GpuSource]:
    """``source``, closed on the way out whatever happens."""
    try:
        yield source
    finally:
        await source.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


async def two_nodes(collectors: Any, clock: FakeClock) -> tuple[FakeCollector, FakeCollector]:
    n1 = await collectors(ticking(clock, "n1", {"a": 60.0, "b": 30.0}, [70.0, 20.0, None]))
    n2 = await collectors(ticking(clock, "n2", {"c": 90.0}, [90.0]))
    return n1, n2


async def values(source: GpuSource, *targets: Any) -> dict[str, float]:
    got = await source.fetch(GPU, targets, EVERYTHING)
    return {f"{obj.kind.kind}/{obj.name}": sample.value for obj, sample in got.items()}


async def test_exact_values_for_pods_deployments_and_nodes(
    collectors: Any, clock: FakeClock
) -> None:
    n1, n2 = await two_nodes(collectors, clock)
    source, _ = make([n1.url, n2.url], clock)
    async with closing(source):
        await source.refresh_once()
        got = await values(
            source,
            pod_target(A),
            pod_target(B),
            pod_target(C),
            WEB,
            node_target("n1", A, B),
            node_target("n2", C),
        )
    assert got == {
        "Pod/a": 60.0,
        "Pod/b": 30.0,
        "Pod/c": 90.0,
        "Deployment/web": 60.0,  # (60 + 30 + 90) / 3
        "Node/n1": 45.0,  # GPUs 70 and 20; the unmeasured one is not a 0
        "Node/n2": 90.0,
    }


async def test_sample_time_and_window_are_the_collectors(collectors: Any, clock: FakeClock) -> None:
    doc = snapshot_doc(
        "n1",
        [pod_doc("a", 60.0, sample_time=T0 - 2), pod_doc("b", 30.0, sample_time=T0 - 1)],
        [50.0],
        sampled_at=T0,
        window=30,
    )
    n1 = await collectors(doc)
    source, _ = make([n1.url], clock)
    async with closing(source):
        await source.refresh_once()
        got = await source.fetch(
            GPU, [pod_target(A), deployment_target("web", A, B), node_target("n1")], EVERYTHING
        )
    samples = {obj.name: (s.value, s.timestamp, s.window_seconds) for obj, s in got.items()}
    assert samples == {
        "a": (60.0, T0 - 2, 30),
        "web": (45.0, T0 - 2, 30),  # as old as its oldest pod
        "n1": (50.0, T0, 30),
    }


async def test_missing_pods_are_omitted_never_zero(collectors: Any, clock: FakeClock) -> None:
    n1 = await collectors(ticking(clock, "n1", {"a": 60.0}, []))
    source, _ = make([n1.url], clock)
    lonely = pod("lonely", owner="batch-1")
    async with closing(source):
        await source.refresh_once()
        got = await values(
            source,
            pod_target(A),
            pod_target(B),
            WEB,
            deployment_target("batch", lonely),
            node_target("n1", A, B),
        )
    # b has no value: absent, and the deployment's mean is over a alone; n1 has no GPU values.
    assert got == {"Pod/a": 60.0, "Deployment/web": 60.0}


async def test_a_value_of_another_incarnation_is_not_served(
    collectors: Any, clock: FakeClock
) -> None:
    doc = snapshot_doc(
        "n1",
        [
            pod_doc("a", 60.0, sample_time=T0, uid="uid-old"),
            pod_doc("b", 30.0, sample_time=T0, uid="uid-b"),
        ],
        sampled_at=T0,
    )
    n1 = await collectors(doc)
    source, _ = make([n1.url], clock)
    async with closing(source):
        await source.refresh_once()
        assert await values(source, pod_target(A), pod_target(B)) == {"Pod/b": 30.0}


async def test_a_killed_collector_is_served_until_the_staleness_bound(
    collectors: Any, clock: FakeClock
) -> None:
    n1, n2 = await two_nodes(collectors, clock)
    source, registry = make([n1.url, n2.url], clock)
    everything = (pod_target(A), pod_target(C), WEB, node_target("n1"), node_target("n2"))
    async with closing(source):
        await source.refresh_once()
        await n1.stop()
        for _ in range(3):  # three more rounds inside the bound (15 s): n1's values kept
            clock.advance(INTERVAL)
            await source.refresh_once()
            assert await values(source, *everything) == {
                "Pod/a": 60.0,
                "Pod/c": 90.0,
                "Deployment/web": 60.0,
                "Node/n1": 45.0,
                "Node/n2": 90.0,
            }
        assert (
            registry.get_sample_value("adapter_gpu_pull_errors_total", {"reason": "connection"})
            == 3
        )
        assert (
            registry.get_sample_value(
                "adapter_gpu_snapshot_age_seconds", {"node": "n1", "simulated": "false"}
            )
            == 15
        )
        clock.advance(0.001)  # past the bound: n1's pods and GPUs are gone; n2 untouched
        await source.refresh_once()
        assert await values(source, *everything) == {
            "Pod/c": 90.0,
            "Deployment/web": 90.0,
            "Node/n2": 90.0,
        }
        assert (
            registry.get_sample_value(
                "adapter_gpu_snapshot_age_seconds", {"node": "n1", "simulated": "false"}
            )
            is None
        )
        assert registry.get_sample_value("adapter_gpu_collectors", {"state": "discovered"}) == 2
        assert registry.get_sample_value("adapter_gpu_collectors", {"state": "answering"}) == 1
        assert registry.get_sample_value("adapter_gpu_pods") == 1


async def test_values_expire_between_rounds_too(collectors: Any, clock: FakeClock) -> None:
    """fetch checks the bound itself: no pull round is needed for stale values to go."""
    n1 = await collectors(ticking(clock, "n1", {"a": 60.0}, [60.0]))
    source, registry = make([n1.url], clock)
    async with closing(source):
        await source.refresh_once()
        clock.advance(3 * INTERVAL + 0.5)
        assert await values(source, pod_target(A), node_target("n1")) == {}
        assert registry.get_sample_value("adapter_gpu_pods") == 0


async def test_a_pods_own_lag_shortens_its_life(collectors: Any, clock: FakeClock) -> None:
    """A pod whose newest sample was already 10 s old at the collector expires 10 s earlier."""
    doc = snapshot_doc(
        "n1",
        [pod_doc("a", 60.0, sample_time=T0 - 10), pod_doc("b", 30.0, sample_time=T0)],
        sampled_at=T0,
    )
    n1 = await collectors(doc)
    source, _ = make([n1.url], clock)
    async with closing(source):
        await source.refresh_once()
        clock.advance(6)
        assert await values(source, pod_target(A), pod_target(B)) == {"Pod/b": 30.0}


async def test_a_stuck_collector_ages_like_a_silent_one(collectors: Any, clock: FakeClock) -> None:
    """Answering with the same sampledAt round after round is no proof of life."""
    n1 = await collectors(snapshot_doc("n1", {"a": 60.0}, sampled_at=T0))
    source, _ = make([n1.url], clock)
    async with closing(source):
        for _ in range(4):
            await source.refresh_once()
            clock.advance(INTERVAL)
        await source.refresh_once()
        assert await values(source, pod_target(A)) == {}
        assert n1.requests == 5


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ({"status": 500}, "status"),
        ({"status": 503}, "not_ready"),
        ({"raw": b"<html>garbage</html>"}, "malformed"),
        ({"raw": b'{"node": "n1", "pods": NaN}'}, "malformed"),
        ({"delay": 1.5}, "timeout"),
    ],
    ids=["500", "503", "garbage", "NaN", "timeout"],
)
async def test_a_failing_collector_affects_only_its_node(
    collectors: Any, clock: FakeClock, script: dict[str, Any], reason: str
) -> None:
    n1, n2 = await two_nodes(collectors, clock)
    source, registry = make([n1.url, n2.url], clock)
    async with closing(source):
        await source.refresh_once()
        for key, value in script.items():
            setattr(n1, key, value)
        clock.advance(INTERVAL)
        await source.refresh_once()
        assert await values(source, pod_target(A), pod_target(C)) == {"Pod/a": 60.0, "Pod/c": 90.0}
        assert registry.get_sample_value("adapter_gpu_pull_errors_total", {"reason": reason}) == 1
        clock.advance(2 * INTERVAL + 1)
        await source.refresh_once()
        assert await values(source, pod_target(A), pod_target(C)) == {"Pod/c": 90.0}
        # it recovers as soon as it answers well again
        n1.status, n1.raw, n1.delay = 200, None, 0.0
        await source.refresh_once()
        assert await values(source, pod_target(A), pod_target(C)) == {"Pod/a": 60.0, "Pod/c": 90.0}


async def test_a_not_ready_200_is_not_data(collectors: Any, clock: FakeClock) -> None:
    n1 = await collectors(snapshot_doc("n1", {"a": 60.0}, ready=False))
    source, registry = make([n1.url], clock)
    async with closing(source):
        await source.refresh_once()
        assert await values(source, pod_target(A)) == {}
        assert (
            registry.get_sample_value("adapter_gpu_pull_errors_total", {"reason": "not_ready"}) == 1
        )


async def test_an_oversized_answer_is_refused(collectors: Any, clock: FakeClock) -> None:
    n1 = await collectors(ticking(clock, "n1", {f"p{i}": 50.0 for i in range(3000)}, []))
    source, registry = make([n1.url], clock)
    source._puller._max_body = 64 * 1024
    async with closing(source):
        await source.refresh_once()
        assert (
            registry.get_sample_value("adapter_gpu_pull_errors_total", {"reason": "too_large"}) == 1
        )


async def test_metric_label_selector_is_a_bad_request(clock: FakeClock) -> None:
    source, _ = make([], clock)
    with pytest.raises(BadRequest, match="gpu_utilization has no metric labels to select on"):
        await source.fetch(GPU, [pod_target(A)], parse_selector("gpu=0"))
    assert (
        await source.fetch(MetricName("inference_queue_depth"), [pod_target(A)], EVERYTHING) == {}
    )


async def test_simulated_collectors_are_served_logged_once_and_marked(
    collectors: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    n1 = await collectors(ticking(clock, "sim-1", {"a": 60.0}, [60.0], simulated=True))
    source, registry = make([n1.url], clock)
    async with closing(source):
        with caplog.at_level(logging.WARNING, logger="adapter.sources.gpu"):
            for _ in range(3):
                await source.refresh_once()
                clock.advance(1)
        assert await values(source, pod_target(A)) == {"Pod/a": 60.0}
    assert sum("SIMULATED" in r.getMessage() for r in caplog.records) == 1
    assert (
        registry.get_sample_value(
            "adapter_gpu_snapshot_age_seconds", {"node": "sim-1", "simulated": "true"}
        )
        == 1
    )


async def test_failures_are_logged_on_change_only(
    collectors: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    n1 = await collectors(ticking(clock, "n1", {"a": 60.0}, []))
    n1.status = 500
    source, _ = make([n1.url], clock)
    async with closing(source):
        with caplog.at_level(logging.INFO, logger="adapter.sources.gpu"):
            for _ in range(3):
                await source.refresh_once()
            n1.status = 200
            await source.refresh_once()
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "HTTP 500" in m]) == 1
    assert len([m for m in messages if "answers again" in m]) == 1


async def test_the_node_comes_from_discovery_when_known(collectors: Any, clock: FakeClock) -> None:
    """In a DaemonSet the collector's hostname is its pod name; the pod's nodeName is the truth."""
    n1 = await collectors(ticking(clock, "gpu-collector-x7k2p", {"a": 60.0}, [40.0]))

    class Fixed:
        def collectors(self) -> list[CollectorEndpoint]:
            return [CollectorEndpoint(n1.url, NodeName("n1"))]

    source = GpuSource(Fixed(), clock=clock)
    async with closing(source):
        await source.refresh_once()
        assert await values(source, node_target("n1")) == {"Node/n1": 40.0}


async def test_discovery_from_the_pod_index_end_to_end(collectors: Any, clock: FakeClock) -> None:
    """Collector pods on 127.0.0.2 and 127.0.0.3, one port: found, pulled, then one goes."""
    first = await collectors(ticking(clock, "n1", {"a": 60.0}, []), host="127.0.0.2")
    await collectors(ticking(clock, "n2", {"c": 90.0}, []), host="127.0.0.3", port=first.port)
    labels = {"app.kubernetes.io/name": "gpu-collector"}
    index = PodsFileIndex(
        [
            pod("col-1", node="n1", labels=labels, ip="127.0.0.2"),
            pod("col-2", node="n2", labels=labels, ip="127.0.0.3"),
        ]
    )
    discovery = PodDiscovery(index, "app.kubernetes.io/name=gpu-collector", first.port)
    source = GpuSource(discovery, pull_interval=INTERVAL, clock=clock)
    async with closing(source):
        await source.refresh_once()
        assert await values(source, pod_target(A), pod_target(C)) == {"Pod/a": 60.0, "Pod/c": 90.0}
        # the collector pod of n1 is deleted: no longer pulled; its values age out
        source._discovery = PodDiscovery(
            PodsFileIndex([index.all()[1]]), "app.kubernetes.io/name=gpu-collector", first.port
        )
        requests = first.requests
        clock.advance(3 * INTERVAL + 1)
        await source.refresh_once()
        assert first.requests == requests
        assert await values(source, pod_target(A), pod_target(C)) == {"Pod/c": 90.0}


async def test_run_survives_failing_rounds(collectors: Any) -> None:
    n1 = await collectors(lambda: snapshot_doc("n1", {"a": 60.0}, sampled_at=T0))

    class Flaky:
        calls = 0

        def collectors(self) -> list[CollectorEndpoint]:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("discovery broke")
            return [CollectorEndpoint(n1.url)]

    source = GpuSource(Flaky(), pull_interval=0.05, staleness=3600, clock=lambda: T0)
    task = asyncio.create_task(source.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.02)
            if await values(source, pod_target(A)):
                break
        assert await values(source, pod_target(A)) == {"Pod/a": 60.0}
        assert Flaky.calls >= 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await source.close()


async def test_a_change_is_served_by_the_next_pull_round(collectors: Any) -> None:
    """Freshness as a property of the rounds: the first round that completes after a
    change serves it, so with rounds every interval the delay is under two intervals.
    (Wall-clock freshness is measured by bench/bench_gpu_pull.py, not asserted here:
    a timed test flakes on a loaded CI machine.)"""
    current = {"a": 10.0}
    n1 = await collectors(lambda: snapshot_doc("n1", dict(current), sampled_at=time.time()))
    source = GpuSource(StaticDiscovery([n1.url]), pull_interval=0.3)
    async with closing(source):
        await source.refresh_once()
        assert await values(source, pod_target(A)) == {"Pod/a": 10.0}
        current["a"] = 80.0
        assert await values(source, pod_target(A)) == {"Pod/a": 10.0}  # not before a round
        await source.refresh_once()
        assert await values(source, pod_target(A)) == {"Pod/a": 80.0}


def test_settings() -> None:
    with pytest.raises(ValueError, match="pull_interval"):
        GpuSource(StaticDiscovery([]), pull_interval=0)
    source = GpuSource(StaticDiscovery([]), pull_interval=2)
    assert (source.name, source.staleness) == ("gpu", 6)


async def test_from_settings_and_round_metrics(collectors: Any, clock: FakeClock) -> None:
    n1 = await collectors(ticking(clock, "n1", {"a": 60.0}, []))
    registry = CollectorRegistry()
    settings = GpuSettings(
        collector_urls=(n1.url,), pull_interval=2.0, stale_after=7.0, timeout=0.5
    )
    source = GpuSource.from_settings(
        settings, StaticDiscovery(settings.collector_urls), clock=clock, registry=registry
    )
    async with closing(source):
        assert source.staleness == 7.0
        await source.refresh_once()
        await source.refresh_once()
    assert registry.get_sample_value("adapter_gpu_pull_duration_seconds_count") == 2
    assert registry.get_sample_value("adapter_gpu_pull_errors_total", {"reason": "timeout"}) == 0
    assert registry.get_sample_value("adapter_gpu_pods") == 1


async def test_version_and_valid_until_tell_the_read_cache_when_answers_change(
    collectors: Any, clock: FakeClock
) -> None:
    """Every round is a new version; between rounds an answer holds until the first
    value it could contain goes stale (pod a's at T0 + 5, the rest at T0 + 15)."""
    doc = snapshot_doc(
        "n1",
        [pod_doc("a", 60.0, sample_time=T0 - 10), pod_doc("b", 30.0, sample_time=T0)],
        [50.0],
        sampled_at=T0,
    )
    n1 = await collectors(doc)
    source, _ = make([n1.url], clock)
    async with closing(source):
        assert (source.version, source.valid_until(GPU, T0)) == (0, float("inf"))
        await source.refresh_once()
        assert source.version == 1
        assert [source.valid_until(GPU, T0 + d) for d in (0, 5, 5.5, 15, 15.5)] == [
            T0 + 5,
            T0 + 5,
            T0 + 15,
            T0 + 15,
            float("inf"),
        ]
        clock.advance(5)  # at T0 + 5 pod a is still served; just after, it is not
        assert await values(source, pod_target(A), pod_target(B)) == {"Pod/a": 60.0, "Pod/b": 30.0}
        clock.advance(0.5)
        assert await values(source, pod_target(A), pod_target(B)) == {"Pod/b": 30.0}
        await source.refresh_once()
        assert source.version == 2
