"""Pulling every collector's ``/snapshot`` concurrently, one outcome per collector.

One pull round issues at most ``concurrency`` requests at a time over a shared
aiohttp session (keep-alive connections are reused from round to round), each
bounded by its own timeout, counted from when it gets its turn rather than from
the start of the round. Every collector yields a :class:`PullResult`: a
validated snapshot, or a :class:`PullError` with a reason from a small fixed
set (the ``reason`` label of ``adapter_gpu_pull_errors_total``). One collector
failing, or answering garbage, never affects the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import aiohttp

from adapter.core.ports import Clock
from adapter.sources.gpu.discovery import CollectorEndpoint
from adapter.sources.gpu.wire import MalformedSnapshot, NodeSnapshot, parse_snapshot

__all__ = ["REASONS", "PullError", "PullResult", "Puller"]

log = logging.getLogger(__name__)

TIMEOUT: Final = "timeout"
CONNECTION: Final = "connection"
NOT_READY: Final = "not_ready"
STATUS: Final = "status"
TOO_LARGE: Final = "too_large"
MALFORMED: Final = "malformed"
INTERNAL: Final = "internal"
REASONS: Final = (TIMEOUT, CONNECTION, NOT_READY, STATUS, TOO_LARGE, MALFORMED, INTERNAL)

DEFAULT_CONCURRENCY: Final = 64
DEFAULT_MAX_BODY_BYTES: Final = 4 << 20  # ~20,000 pods; a real node has tens


class PullError(Exception):
    """Why one collector gave no snapshot. ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PullResult:
    """The outcome of pulling one collector; exactly one of snapshot and error is set.

    ``received_at`` is the adapter's clock when the answer (or the failure) came.
    """

    endpoint: CollectorEndpoint
    received_at: float
    snapshot: NodeSnapshot | None = None
    error: PullError | None = None


class Puller:
    """Pulls ``/snapshot`` from collectors. Owns its aiohttp session unless one is given.

    The session is created on first use (inside the running loop); ``close()``
    releases it.
    """

    def __init__(
        self,
        *,
        timeout: float,
        clock: Clock,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._concurrency = concurrency
        self._max_body = max_body_bytes
        self._session = session
        self._owns_session = session is None
        self._slots = asyncio.Semaphore(concurrency)

    async def pull_all(self, endpoints: Sequence[CollectorEndpoint]) -> list[PullResult]:
        """One result per endpoint, in order. Never raises for a collector's failure."""
        session = self._ensure_session()
        return list(await asyncio.gather(*(self._pull(session, ep) for ep in endpoints)))

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._concurrency, ttl_dns_cache=None)
            # No cookies, no proxies from the environment: collectors are in-cluster pods.
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                raise_for_status=False,
            )
            self._owns_session = True
        return self._session

    async def _pull(
        self, session: aiohttp.ClientSession, endpoint: CollectorEndpoint
    ) -> PullResult:
        async with self._slots:
            try:
                snapshot = await self._get(session, endpoint.snapshot_url)
            except PullError as e:
                return PullResult(endpoint, self._clock(), error=e)
            except Exception as e:  # a bug here must not end the round for everyone
                log.exception("pulling %s failed unexpectedly", endpoint.url)
                return PullResult(endpoint, self._clock(), error=PullError(INTERNAL, repr(e)))
            return PullResult(endpoint, self._clock(), snapshot=snapshot)

    async def _get(self, session: aiohttp.ClientSession, url: str) -> NodeSnapshot:
        try:
            async with session.get(url, timeout=self._timeout, allow_redirects=False) as resp:
                if resp.status == 503:
                    raise PullError(NOT_READY, "503 Service Unavailable")
                if resp.status != 200:
                    raise PullError(STATUS, f"HTTP {resp.status}")
                body = await self._read(resp)
        except TimeoutError as e:
            raise PullError(TIMEOUT, "no complete answer in time") from e
        except aiohttp.ClientError as e:
            raise PullError(CONNECTION, f"{type(e).__name__}: {e}") from e
        try:
            snapshot = parse_snapshot(body)
        except MalformedSnapshot as e:
            raise PullError(MALFORMED, str(e)) from e
        if not snapshot.ready:
            raise PullError(NOT_READY, "the collector has no complete sample yet")
        return snapshot

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        if resp.content_length is not None and resp.content_length > self._max_body:
            raise PullError(TOO_LARGE, f"{resp.content_length} bytes")
        body = bytearray()
        async for chunk in resp.content.iter_any():
            body += chunk
            if len(body) > self._max_body:
                raise PullError(TOO_LARGE, f"over {self._max_body} bytes")
        return bytes(body)
