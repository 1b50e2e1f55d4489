"""A scripted ``PrometheusAPI`` (adapter.sources.prometheus.transport) for tests: no server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from adapter.core.errors import SourceError
from adapter.sources.prometheus.transport import PromSample


class FakePrometheusAPI:
    """Answers from a function of the query; counts calls; can fail or hold queries."""

    def __init__(self, answer: Callable[[str], Sequence[PromSample]] = lambda _: ()) -> None:
        self.answer = answer
        self.calls: list[str] = []
        self.fail = False
        self.fail_as: type[SourceError] = SourceError
        self.gate: asyncio.Event | None = None

    async def query(self, expr: str, *, at: float | None = None) -> Sequence[PromSample]:
        self.calls.append(expr)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise self.fail_as("the Prometheus query failed")
        return self.answer(expr)
