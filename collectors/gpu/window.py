"""A rolling time window of samples per key: mean, count and last time over the last N seconds."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class WindowStats:
    mean: float
    count: int
    last_time: float


class RollingWindow(Generic[K]):
    """Samples ``(time, value)`` per key, older than ``seconds`` dropped by ``prune``.

    A key with no sample left disappears: its stats are None, never 0.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._samples: dict[K, deque[tuple[float, float]]] = {}

    def add(self, key: K, time: float, value: float) -> None:
        self._samples.setdefault(key, deque()).append((time, value))

    def prune(self, now: float) -> None:
        horizon = now - self.seconds
        for key in list(self._samples):
            samples = self._samples[key]
            while samples and samples[0][0] <= horizon:
                samples.popleft()
            if not samples:
                del self._samples[key]

    def drop(self, predicate: Callable[[K], bool]) -> None:
        for key in [k for k in self._samples if predicate(k)]:
            del self._samples[key]

    def stats(self, key: K) -> WindowStats | None:
        samples = self._samples.get(key)
        if not samples:
            return None
        return WindowStats(
            mean=sum(v for _, v in samples) / len(samples),
            count=len(samples),
            last_time=samples[-1][0],
        )

    def keys(self) -> Iterator[K]:
        return iter(list(self._samples))
