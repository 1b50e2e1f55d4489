"""Fixtures of the pod-index tests: the fake API server, and a check that no task outlives a test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.fakes.fixtures import (  # noqa: F401  (fixtures, used by name)
    backoff_sleeps,
    fake_kube,
    kube_client,
    kube_state,
    kubeconfig,
    pod_index,
)


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves a task running (set up first, so torn down last)."""
    before = asyncio.all_tasks()
    yield
    for _ in range(3):  # let just-cancelled tasks and closed connections finish
        await asyncio.sleep(0)
    current = asyncio.current_task()
    leftovers = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    for task in leftovers:
        task.cancel()
    assert not leftovers, f"tasks left running: {[t.get_name() for t in leftovers]}"
