"""A settable clock for code that takes ``clock: Callable[[], float]`` (seconds).

It stands still until the test moves it: ``advance(seconds)`` steps it on, and ``now`` may
also be set directly (jumps backwards included). Every test says where it starts.
"""

from __future__ import annotations


class FakeClock:
    """Returns ``now`` when called; nothing but the test changes it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Step the clock ``seconds`` on (a negative step goes back)."""
        self.now += seconds
