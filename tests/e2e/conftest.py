"""Helpers for the end-to-end tests: real processes, so conditions are polled, not slept on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_until(check: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    """``check()``'s first truthy result, polled every 0.3 s; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.3)
