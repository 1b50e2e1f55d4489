from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.fakes.gpu_collector import FakeCollector


@pytest.fixture
async def collectors() -> AsyncIterator[Callable[..., Any]]:
    """Start fake collectors (``await collectors(doc, host=..., port=...)``); all stopped after."""
    started: list[FakeCollector] = []

    async def start(doc: Any, host: str = "127.0.0.1", port: int = 0) -> FakeCollector:
        collector = await FakeCollector(doc, host).start(port)
        started.append(collector)
        return collector

    yield start
    for collector in started:
        await collector.stop()
