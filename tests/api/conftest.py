"""The real aiohttp app on loopback over fakes: pods in memory, a FakeSource per source."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from adapter.app import Parts, build_app
from adapter.core.model import Namespace, NodeName, OwnerRef, PodInfo, PodName, PodUID
from adapter.kube.podsfile import PodsFileIndex
from adapter.rulesfile import build_catalogue
from tests.fakes.source import FakeSource

NOW = 1_800_000_000.0


def pod(
    name: str,
    namespace: str = "ml",
    labels: dict[str, str] | None = None,
    *,
    ready: bool = True,
    ready_since: float | None = NOW - 3600,
    phase: str = "Running",
    node: str | None = "gpu-node-1",
    owner: OwnerRef | None = None,
    deleting: bool = False,
) -> PodInfo:
    return PodInfo(
        namespace=Namespace(namespace),
        name=PodName(name),
        uid=PodUID(f"uid-{namespace}-{name}"),
        labels=labels or {},
        phase=phase,
        ready=ready,
        start_time=NOW - 7200,
        ready_since=ready_since if ready else None,
        node_name=NodeName(node) if node else None,
        owner=owner,
        deleting=deleting,
    )


RS = OwnerRef("apps/v1", "ReplicaSet", "web-7c9d5f6b8")
SS = OwnerRef("apps/v1", "StatefulSet", "db")

WEB_LABELS = {"app": "web", "pod-template-hash": "7c9d5f6b8"}


def web(suffix: str, **state: Any) -> PodInfo:
    """One of the ReplicaSet ``web-7c9d5f6b8``'s pods in ``ml``; ``state`` as for ``pod``."""
    return pod(f"web-7c9d5f6b8-{suffix}", labels=dict(WEB_LABELS), owner=RS, **state)


PODS = [
    web("aaaaa"),
    web("bbbbb", node="gpu-node-2"),
    web("ccccc", ready=False),
    web("ddddd", ready_since=NOW - 5),
    web("eeeee", phase="Succeeded"),
    web("fffff", deleting=True),
    pod("db-0", labels={"app": "db"}, owner=SS),
    pod("db-1", labels={"app": "db"}, owner=SS),
    pod("other-1", namespace="prod", labels={"app": "web"}),
]

RULES: dict[str, Any] = {
    "metrics": [
        {
            "name": "ns_requests",
            "source": "prometheus",
            "resources": ["namespaces"],
            "aggregate": "sum",
            "prometheus": {"gauge": "requests_in_flight"},
        },
    ]
}


@pytest.fixture
def source() -> FakeSource:
    fake = FakeSource()
    for name, value in {
        "web-7c9d5f6b8-aaaaa": 0.2345,
        "web-7c9d5f6b8-bbbbb": 0.5,
        "web-7c9d5f6b8-ccccc": 9.0,  # not ready: must never be served
        "web-7c9d5f6b8-ddddd": 9.0,  # warming up: must never be served
        "web-7c9d5f6b8-eeeee": 9.0,  # Succeeded
        "web-7c9d5f6b8-fffff": 9.0,  # being deleted
        "db-0": 2.0,
    }.items():
        fake.set_pod("inference_latency_p95", "ml", name, value, ts=NOW - 10, window=120)
    fake.set_pod("inference_latency_p95", "prod", "other-1", 1.0, ts=NOW - 10, window=120)
    fake.set_pod("gpu_utilization", "ml", "web-7c9d5f6b8-aaaaa", 73.25, ts=NOW - 2, window=10)
    fake.set_pod("gpu_utilization", "ml", "web-7c9d5f6b8-bbbbb", 50.0, ts=NOW - 2, window=10)
    fake.set_pod("ns_requests", "ml", "db-0", 3.0, ts=NOW - 1, window=None)
    return fake


ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def app_parts(
    source: FakeSource,
    rules: dict[str, Any],
    pods: list[PodInfo] | PodsFileIndex = PODS,
    **wiring: Any,
) -> Parts:
    """The app's parts over ``pods`` at ``NOW``, with ``source`` serving both sources.

    ``wiring`` sets the other ``Parts`` fields (middlewares, limits, diagnosers, ...).
    """
    catalogue = build_catalogue(rules, "<test>", {})
    return Parts(
        catalogue=lambda: catalogue,
        pods=pods if isinstance(pods, PodsFileIndex) else PodsFileIndex(pods),
        sources={"prometheus": source, "gpu": source},
        clock=lambda: NOW,
        registry=CollectorRegistry(),
        **wiring,
    )


async def serve(aiohttp_client: Any, parts: Parts) -> TestClient[Any, Any]:
    """The app over ``parts``, served on loopback by pytest-aiohttp."""
    client: TestClient[Any, Any] = await aiohttp_client(build_app(parts))
    return client


async def exchange(port: int, data: bytes, *, wait: float = 30.0, size: int = -1) -> bytes:
    """Send ``data`` on a fresh loopback connection; what comes back (``size`` bytes
    at most, -1: until the server closes) within ``wait`` seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(size), wait)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture
def make_client(aiohttp_client: Any, source: FakeSource) -> ClientFactory:
    async def make(
        pods: list[PodInfo] | None = None, rules: dict[str, Any] | None = None
    ) -> TestClient[Any, Any]:
        return await serve(
            aiohttp_client,
            app_parts(source, RULES if rules is None else rules, PODS if pods is None else pods),
        )

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, Any]:
    return await make_client()
