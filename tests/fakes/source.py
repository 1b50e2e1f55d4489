"""An in-memory Source for API tests: values set by the test, the Source contract kept.

Pod values are set per (metric, namespace, pod); objects made of several pods
get the mean (or whatever ``aggregate`` says) of their pods' values, or an
explicit object value when one is set. Missing stays missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from adapter.core.errors import SourceError
from adapter.core.model import MetricName, ObjectRef, Sample, Target
from adapter.core.selectors import Selector


@dataclass
class FakeSource:
    name: str = "fake"
    pod_values: dict[tuple[str, str, str], Sample] = field(default_factory=dict)
    object_values: dict[tuple[str, str, str, str], Sample] = field(default_factory=dict)
    aggregate: Callable[[Sequence[float]], float] = lambda values: sum(values) / len(values)
    fail: bool = False
    calls: list[tuple[MetricName, tuple[ObjectRef, ...], str]] = field(default_factory=list)

    def set_pod(
        self,
        metric: str,
        namespace: str,
        pod: str,
        value: float,
        ts: float = 1_000.0,
        window: int | None = 120,
    ) -> None:
        self.pod_values[(metric, namespace, pod)] = Sample(value, ts, window)

    async def fetch(
        self, metric: MetricName, targets: Sequence[Target], metric_selector: Selector
    ) -> Mapping[ObjectRef, Sample]:
        self.calls.append((metric, tuple(t.obj for t in targets), str(metric_selector)))
        if self.fail:
            raise SourceError("fake backend down: http://prometheus.internal:9090 query=up")
        result: dict[ObjectRef, Sample] = {}
        for target in targets:
            obj = target.obj
            explicit = self.object_values.get(
                (metric, obj.kind.kind, obj.namespace or "", obj.name)
            )
            if explicit is not None:
                result[obj] = explicit
                continue
            samples = [
                s
                for p in target.pods
                if (s := self.pod_values.get((metric, p.namespace, p.name))) is not None
            ]
            if samples:
                result[obj] = Sample(
                    self.aggregate([s.value for s in samples]),
                    min(s.timestamp for s in samples),
                    samples[0].window_seconds,
                )
        return result


class GatedSource(FakeSource):
    """A FakeSource whose reads that ``holds`` wait until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.waiting = 0

    def holds(self, metric_selector: Selector) -> bool:
        """Whether a read with this metricLabelSelector waits (here: every read)."""
        del metric_selector
        return True

    async def fetch(
        self, metric: MetricName, targets: Sequence[Target], metric_selector: Selector
    ) -> Mapping[ObjectRef, Sample]:
        if self.holds(metric_selector):
            self.waiting += 1
            await self.release.wait()
        return await super().fetch(metric, targets, metric_selector)
