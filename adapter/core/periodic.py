"""The one guarded periodic loop behind every background refresh.

Snapshot refreshes, collector pulls, rules-file and certificate polls all share
it: a step that raises is logged and retried next interval, never fatal; only
cancellation stops the loop. Tests call the steps directly, not this loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def every(
    interval: float,
    step: Callable[[], Awaitable[object] | object],
    *,
    what: str,
    immediately: bool = True,
) -> None:
    """Run ``step`` (sync or async) every ``interval`` seconds until cancelled.

    The interval is measured start to start, so a slow step does not push the
    schedule back; ``immediately`` runs the first step at once instead of after
    one interval.
    """
    loop = asyncio.get_running_loop()
    if not immediately:
        await asyncio.sleep(interval)
    while True:
        started = loop.time()
        try:
            result = step()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("%s failed; retrying in %.1fs", what, interval)
        await asyncio.sleep(max(0.0, interval - (loop.time() - started)))
