"""metricLabelSelector queries on a budget of their own; honest staleness logs; no retries.

Findings pinned here: a selector read while Prometheus is down was a 500 and
waited for Prometheus every time; the refresh logged "keeping its last values"
even after they expired; a timeout took twice ``--prometheus-timeout`` because
the HTTP client retried once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from adapter.core.errors import ServiceUnavailable, TooManyRequests
from adapter.core.model import MetricName
from adapter.core.selectors import EVERYTHING, parse_selector
from adapter.sources.prometheus import PrometheusSource
from adapter.sources.prometheus.source import BUSY_MESSAGE, UNAVAILABLE_MESSAGE
from adapter.sources.prometheus.transport import (
    PrometheusClient,
    PrometheusUnavailable,
    PromSample,
    TransportOptions,
)
from tests.fakes.clock import FakeClock
from tests.fakes.counting_server import CountingServer
from tests.fakes.prometheus_api import FakePrometheusAPI

from .helpers import gauge_rows, pod_target, queue_rule

QUEUE = MetricName("inference_queue_depth")
NOW = 1_000_000.0
A = pod_target("ml", "a")


def answer(_expr: str) -> list[PromSample]:
    return [*gauge_rows("ml", "a", 7.0, NOW - 2, NOW)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def make(
    clock: FakeClock, api: FakePrometheusAPI, selector_api: FakePrometheusAPI, concurrency: int = 2
) -> PrometheusSource:
    return PrometheusSource(
        api,
        [queue_rule()],
        refresh_interval=15,
        clock=clock,
        registry=CollectorRegistry(),
        selector_api=selector_api,
        selector_concurrency=concurrency,
    )


async def test_selector_reads_fail_fast_with_503_while_prometheus_is_down(
    clock: FakeClock,
) -> None:
    api, selected = FakePrometheusAPI(answer), FakePrometheusAPI(answer)
    source = make(clock, api, selected)
    await source.refresh_once()
    api.fail = selected.fail = True
    api.fail_as = selected.fail_as = PrometheusUnavailable
    with pytest.raises(ServiceUnavailable, match="Prometheus is not answering"):
        await source.fetch(QUEUE, [A], parse_selector("model=a"))
    assert len(selected.calls) == 1
    # Known to be failing: further selector reads are 503 at once, no query sent.
    for model in ("b", "c", "d"):
        with pytest.raises(ServiceUnavailable) as caught:
            await source.fetch(QUEUE, [A], parse_selector(f"model={model}"))
        assert caught.value.message == UNAVAILABLE_MESSAGE
    assert len(selected.calls) == 1
    # Reads without a selector are still served from the snapshot, never as 0.
    assert (await source.fetch(QUEUE, [A], EVERYTHING))[A.obj].value == 7.0
    # Prometheus is back: the next refresh clears the state, selector reads work again.
    api.fail = selected.fail = False
    await source.refresh_once()
    assert not source.unavailable
    assert (await source.fetch(QUEUE, [A], parse_selector("model=b")))[A.obj].value == 7.0


async def test_a_refused_query_does_not_trip_the_fail_fast(clock: FakeClock) -> None:
    """A 4xx (a query Prometheus refuses) says nothing about its health."""
    api, selected = FakePrometheusAPI(answer), FakePrometheusAPI(answer)
    source = make(clock, api, selected)
    selected.fail = True  # a plain SourceError: Prometheus answered 400
    with pytest.raises(ServiceUnavailable):
        await source.fetch(QUEUE, [A], parse_selector("model=a"))
    assert not source.unavailable
    selected.fail = False
    assert (await source.fetch(QUEUE, [A], parse_selector("model=b")))[A.obj].value == 7.0


async def test_distinct_selector_queries_are_bounded_identical_ones_coalesced(
    clock: FakeClock,
) -> None:
    api, selected = FakePrometheusAPI(answer), FakePrometheusAPI(answer)
    selected.gate = asyncio.Event()
    source = make(clock, api, selected, concurrency=2)
    held = [
        asyncio.create_task(source.fetch(QUEUE, [A], parse_selector(f"model={m}")))
        for m in ("a", "b", "a", "b", "a")
    ]
    while len(selected.calls) < 2:
        await asyncio.sleep(0.01)
    with pytest.raises(TooManyRequests) as caught:
        await source.fetch(QUEUE, [A], parse_selector("model=c"))
    assert caught.value.message == BUSY_MESSAGE
    # The refresh has its own client: not queued behind the held selector queries.
    await source.refresh_once()
    assert len(api.calls) == 1
    selected.gate.set()
    results = await asyncio.gather(*held)
    assert [r[A.obj].value for r in results] == [7.0] * 5
    assert len(selected.calls) == 2  # one per distinct selector


async def test_staleness_log_says_what_is_still_served(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakePrometheusAPI(answer)
    source = make(clock, api, FakePrometheusAPI(answer))
    await source.refresh_once()
    api.fail, api.fail_as = True, PrometheusUnavailable
    with caplog.at_level(logging.WARNING, logger="adapter.sources.prometheus.source"):
        clock.advance(15)
        await source.refresh_once()
        clock.advance(30)  # the sample (2 s old when fetched) is now past the 45 s bound
        await source.refresh_once()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "query for inference_queue_depth failed; keeping the last values of 1 pods, "
        "the last until 1970-01-12T13:47:23+00:00",
        "query for inference_queue_depth failed; no values left to serve (the last ones expired)",
    ]
    assert await source.fetch(QUEUE, [A], EVERYTHING) == {}  # omitted, never 0


@pytest.fixture
def server_503() -> Iterator[CountingServer]:
    server = CountingServer(hang=False)
    yield server
    server.close()


@pytest.fixture
def server_hung() -> Iterator[CountingServer]:
    server = CountingServer(hang=True)
    yield server
    server.close()


async def test_a_5xx_is_not_retried(server_503: CountingServer) -> None:
    client = PrometheusClient(TransportOptions(url=f"http://127.0.0.1:{server_503.port}"))
    try:
        with pytest.raises(PrometheusUnavailable):
            await client.query("up")
    finally:
        client.close()
    assert server_503.requests == 1


async def test_a_timeout_is_one_deadline_not_retried(server_hung: CountingServer) -> None:
    client = PrometheusClient(
        TransportOptions(url=f"http://127.0.0.1:{server_hung.port}", timeout=0.5)
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(PrometheusUnavailable, match="timed out"):
            await client.query("up")
        assert loop.time() - started >= 0.5
        await asyncio.sleep(1.5)  # past where a retry would have been sent
    finally:
        client.close()
    assert server_hung.requests == 1


@pytest.mark.parametrize(
    ("compression", "accepted"), [(False, b"accept-encoding: identity"), (True, b"gzip")]
)
async def test_answers_are_asked_for_uncompressed_unless_compression_is_on(
    server_503: CountingServer, compression: bool, accepted: bytes
) -> None:
    client = PrometheusClient(
        TransportOptions(url=f"http://127.0.0.1:{server_503.port}", compression=compression)
    )
    try:
        with pytest.raises(PrometheusUnavailable):
            await client.query("up")
    finally:
        client.close()
    [head] = server_503.heads
    [line] = [line for line in head.split(b"\r\n") if line.startswith(b"accept-encoding:")]
    assert accepted in line
