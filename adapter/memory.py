"""Giving memory back: glibc's allocator keeps what Python frees unless told otherwise.

Used by ``serve``: after a Prometheus refresh (the previous snapshots and the
answers are freed) and after connections close (their TLS buffers are freed).
On another libc both functions do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable
from typing import Any


def _libc_function(name: str) -> Any:
    """A glibc function by name, or None (another libc, or none found)."""
    path = ctypes.util.find_library("c")
    return None if path is None else getattr(ctypes.CDLL(path), name, None)


def _malloc_trim() -> Callable[[], object] | None:
    trim = _libc_function("malloc_trim")
    if trim is None:
        return None
    return lambda: trim(0)


_TRIM = _malloc_trim()

# glibc's mallopt parameters and what serve sets them to, unless the environment does.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MALLOC_TUNING: dict[str, tuple[int, int]] = {
    "MALLOC_MMAP_THRESHOLD_": (_M_MMAP_THRESHOLD, 128 * 1024),
    "MALLOC_ARENA_MAX": (_M_ARENA_MAX, 2),
}


def tune_malloc() -> None:
    """Keep glibc from holding freed memory: fixed mmap threshold, two arenas.

    An allocation of 128 KiB or more is its own mapping, returned to the system
    when freed. glibc otherwise raises that threshold to the largest block freed
    so far (up to 32 MiB): after the first 18 MB Prometheus answer, the next ones
    came from the heap and their pages stayed (10,000 pods: RSS 132 to 167 MiB
    between refreshes; with this, 114 to 143). Threads share two arenas instead
    of one each (the Prometheus client's threads decode the answers). A variable
    of the same name in the environment wins (glibc reads it at start-up).
    """
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return
    for variable, (parameter, value) in MALLOC_TUNING.items():
        if variable not in os.environ:
            mallopt(parameter, value)


def trim_memory() -> None:
    """Hand the heap's free memory back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). Python's allocator frees what it can; glibc keeps it unless told."""
    if _TRIM is not None:
        _TRIM()
