"""pytest fixtures around the fake Kubernetes API: import the ones you need in a conftest.

- ``fake_kube``: a running ``FakeKubeServer`` (plain HTTP on 127.0.0.1).
- ``kube_state``: its ``FakeKubeState`` (pods, history, knobs).
- ``kubeconfig``: a kubeconfig file pointing at it.
- ``kube_client``: a ``KubeClient`` made by ``adapter.kube.credentials``.
- ``backoff_sleeps``: the delays the pod index slept (its sleep is instant).
- ``pod_index``: a ``PodIndex`` on the fake, pages of 2, not started: drive
  ``list_once()``/``watch_once()`` or ``start()`` it; it is stopped afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapter.kube.backoff import Backoff
from adapter.kube.credentials import connect
from adapter.kube.listwatch import KubeListWatch
from adapter.kube.podindex import PodIndex
from tests.fakes.kube_api import FakeKubeServer, FakeKubeState


@pytest.fixture
async def fake_kube() -> AsyncIterator[FakeKubeServer]:
    async with FakeKubeServer() as server:
        yield server


@pytest.fixture
def kube_state(fake_kube: FakeKubeServer) -> FakeKubeState:
    return fake_kube.state


@pytest.fixture
def kubeconfig(fake_kube: FakeKubeServer, tmp_path: Path) -> Path:
    return fake_kube.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def kube_client(kubeconfig: Path) -> AsyncIterator[Any]:
    client = await connect(str(kubeconfig))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def backoff_sleeps() -> list[float]:
    return []


@pytest.fixture
async def pod_index(kube_client: Any, backoff_sleeps: list[float]) -> AsyncIterator[PodIndex]:
    async def sleep(delay: float) -> None:
        backoff_sleeps.append(delay)
        await asyncio.sleep(0)

    index = PodIndex(
        KubeListWatch(kube_client, request_timeout=10.0),
        page_size=2,
        watch_timeout=30,
        backoff=Backoff(0.5, 4.0, rng=lambda: 0.5),
        sleep=sleep,
    )
    try:
        yield index
    finally:
        await index.stop()
