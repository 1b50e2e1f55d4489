"""A fake gpu-collector: a real aiohttp app on loopback serving scripted ``/snapshot`` answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web


class FakeCollector:
    """A loopback ``/snapshot`` server answering what the test scripts.

    ``doc`` is a document or a function of nothing returning one (so it can
    follow a fake clock); ``status``, ``raw`` (a body replacing the JSON) and
    ``delay`` script failures. ``stop()`` kills it: connections are refused.
    A request its client gave up on (a timeout) ends there: its handler is
    cancelled rather than left sleeping past ``stop()``.
    """

    def __init__(
        self, doc: dict[str, Any] | Callable[[], dict[str, Any]], host: str = "127.0.0.1"
    ) -> None:
        self.doc = doc
        self.host = host
        self.status = 200
        self.raw: bytes | None = None
        self.delay = 0.0
        self.requests = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _snapshot(self, _request: web.Request) -> web.Response:
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.raw is not None:
            return web.Response(body=self.raw, status=self.status, content_type="application/json")
        doc = self.doc() if callable(self.doc) else self.doc
        return web.Response(
            text=json.dumps(doc), status=self.status, content_type="application/json"
        )

    async def start(self, port: int = 0) -> FakeCollector:
        app = web.Application()
        app.router.add_get("/snapshot", self._snapshot)
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.1, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
