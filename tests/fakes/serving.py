"""Run an aiohttp application on loopback for the length of a test: the one way tests do it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serving(app: web.Application, *, shutdown_timeout: float = 60.0) -> AsyncIterator[str]:
    """Serve ``app`` over plain HTTP on 127.0.0.1 and a free port; yields its base URL
    (``http://127.0.0.1:<port>``) and cleans the runner up when the block ends.
    ``shutdown_timeout``: seconds open connections get to finish at the end."""
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
