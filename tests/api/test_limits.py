"""Limits of the HTTP edge: request line, headers, concurrency, slow clients."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from adapter.api.middleware import chain, inflight_limit_middleware
from adapter.app import SERVER_LIMITS
from adapter.core.selectors import Selector
from tests.api.conftest import app_parts, exchange, serve
from tests.fakes.source import FakeSource, GatedSource

G = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/*/inference_latency_p95"


async def make(aiohttp_client: Any, source: FakeSource, **limits: Any) -> TestClient[Any, Any]:
    parts = app_parts(
        source,
        {},
        middlewares=chain(budget=inflight_limit_middleware(2)),
        limits={**SERVER_LIMITS, **limits},
    )
    return await serve(aiohttp_client, parts)


async def raw(client: TestClient[Any, Any], request: bytes, wait: float = 5.0) -> bytes:
    assert client.port is not None  # set once the test server has started
    return await exchange(client.port, request, wait=wait, size=4096)


async def test_oversized_header_request_line_and_header_count_are_rejected(
    aiohttp_client: Any,
) -> None:
    client = await make(aiohttp_client, FakeSource())
    rejected = {
        b"400 Bad Request",
        b"414 Request-URI Too Long",
        b"431 Request Header Fields Too Large",
    }
    big_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    long_line = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(100))
    too_many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
    for request in (big_header, long_line, too_many):
        status_line = (await raw(client, request)).split(b"\r\n")[0]
        assert status_line.split(b" ", 1)[1] in rejected, status_line
    ok = await raw(client, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 OK")


async def test_requests_beyond_the_concurrency_limit_get_429_at_once(aiohttp_client: Any) -> None:
    source = GatedSource()
    client = await make(aiohttp_client, source)
    first = [asyncio.create_task(client.get(G)) for _ in range(2)]
    while source.waiting < 2:
        await asyncio.sleep(0.01)
    third = await client.get(G)
    assert third.status == 429
    # as kube-apiserver's max-in-flight filter: client-go retries only with Retry-After
    assert third.headers["Retry-After"] == "1"
    assert third.headers["Cache-Control"] == "no-cache, private"
    assert await third.read() == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"too many requests, please try again later",'
        b'"reason":"TooManyRequests","code":429}\n'
    )
    assert (await client.get("/healthz")).status == 200  # probes are never throttled
    source.release.set()
    assert [r.status for r in await asyncio.gather(*first)] == [200, 200]


async def test_a_slow_client_is_disconnected(aiohttp_client: Any) -> None:
    client = await make(aiohttp_client, FakeSource(), keepalive_timeout=1.0)
    started = asyncio.get_running_loop().time()
    answer = await raw(
        client, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", wait=10.0
    )  # never finishes the head
    assert answer == b""  # closed by the server, without a response
    assert asyncio.get_running_loop().time() - started < 5.0


class SelectorHangs(GatedSource):
    """Reads with a metricLabelSelector wait (as on a hung Prometheus); others do not."""

    def holds(self, metric_selector: Selector) -> bool:
        return not metric_selector.empty


async def test_selector_reads_cannot_starve_discovery_or_snapshot_reads(
    aiohttp_client: Any,
) -> None:
    """The finding: with Prometheus hung, reads that each carry a metricLabelSelector
    filled the one in-flight budget and discovery answered 429 for as long as the
    hang lasted. Selector reads now have a budget of their own (here 1 of 2)."""
    source = SelectorHangs()
    client = await make(aiohttp_client, source)
    selector_reads = [
        asyncio.create_task(client.get(f"{G}?metricLabelSelector=model%3D{i}")) for i in range(3)
    ]
    while source.waiting < 1 or sum(t.done() for t in selector_reads) < 2:
        await asyncio.sleep(0.01)
    refused = [t.result() for t in selector_reads if t.done()]
    held = [t for t in selector_reads if not t.done()]
    assert [r.status for r in refused] == [429, 429]
    assert (await refused[0].json())["message"] == "too many requests, please try again later"
    assert refused[0].headers["Retry-After"] == "1"  # the HPA's client retries it
    for _ in range(3):  # discovery and reads from memory go on, one after another
        discovery = await client.get("/apis/custom.metrics.k8s.io/v1beta2")
        assert discovery.status == 200
        assert (await discovery.json())["groupVersion"] == "custom.metrics.k8s.io/v1beta2"
        assert (await client.get(G)).status == 200
        assert (await client.get("/readyz")).status == 200
    source.release.set()
    assert [(await t).status for t in held] == [200]
