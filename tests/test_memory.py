"""serve's glibc tuning: what it sets, and that the environment wins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from adapter import memory


def recording(calls: list[tuple[int, int]]) -> Callable[[str], Any]:
    def find(name: str) -> Any:
        return (
            (lambda parameter, value: calls.append((parameter, value)))
            if name == "mallopt"
            else None
        )

    return find


def test_tune_malloc_sets_the_mmap_threshold_and_two_arenas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(memory, "_libc_function", recording(calls))
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    memory.tune_malloc()
    assert calls == [(-3, 131072), (-8, 2)]  # M_MMAP_THRESHOLD, M_ARENA_MAX


def test_a_variable_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(memory, "_libc_function", recording(calls))
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    memory.tune_malloc()
    assert calls == [(-3, 131072)]


def test_without_glibc_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_libc_function", lambda name: None)
    memory.tune_malloc()  # no error


def test_the_real_libc_accepts_the_settings() -> None:
    """On this (glibc) machine mallopt exists and returns 1 (success) for both."""
    mallopt = memory._libc_function("mallopt")
    assert mallopt is not None
    for parameter, value in memory.MALLOC_TUNING.values():
        assert mallopt(parameter, value) == 1
