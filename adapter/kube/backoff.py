"""The retry delays of every Kubernetes API loop (list+watch, the trust ConfigMap)."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Exponential delays with jitter: ``initial``, times ``factor``, capped at ``maximum``.

    ``reset()`` after a success. ``rng`` returns floats in [0, 1); injected for tests.
    """

    def __init__(
        self,
        initial: float = 0.8,
        maximum: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._initial, self._maximum, self._factor = initial, maximum, factor
        self._jitter, self._rng = jitter, rng
        self._next = initial

    def next(self) -> float:
        """The delay to sleep now; each call grows the following one."""
        delay = self._next
        self._next = min(self._maximum, self._next * self._factor)
        return delay * (1.0 + self._jitter * (2.0 * self._rng() - 1.0))

    def reset(self) -> None:
        self._next = self._initial
