"""Log lines a client without credentials cannot flood.

The finding: every request aiohttp's parser refuses was logged at ERROR with a
traceback, and every anonymous request got an access-log line, so an
unauthenticated client could flood the log.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adapter.api.logs import RateLimit
from adapter.api.middleware import access_log_middleware, chain
from tests.api.conftest import app_parts, exchange, serve
from tests.fakes.clock import FakeClock
from tests.fakes.source import FakeSource


def test_rate_limit_lets_a_burst_through_then_one_line_per_refill() -> None:
    clock = FakeClock(0.0)
    limit = RateLimit(burst=3, per=3.0, clock=clock)
    assert [limit.allow() for _ in range(5)] == [0, 0, 0, None, None]
    clock.now = 1.0  # one token back
    assert limit.allow() == 2  # and it says how many were dropped
    assert limit.allow() is None
    clock.now = 100.0
    assert [limit.allow() for _ in range(4)] == [1, 0, 0, None]  # the bucket holds 3 at most


async def make(aiohttp_client: Any) -> TestClient[Any, Any]:
    parts = app_parts(FakeSource(), {}, middlewares=chain(access_log=access_log_middleware()))
    return await serve(aiohttp_client, parts)


MALFORMED = [
    b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET host:443 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /apis HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"\x16\x03\x01 not http at all\r\n\r\n",
]


async def test_malformed_requests_are_logged_rate_limited_without_traceback(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make(aiohttp_client)
    sent = 60
    started = time.monotonic()
    assert client.port is not None  # set once the test server has started
    with caplog.at_level(logging.DEBUG):
        for i in range(sent):
            answer = await exchange(client.port, MALFORMED[i % len(MALFORMED)])
            assert answer.startswith(b"HTTP/1.0 400 Bad Request") or answer.startswith(
                b"HTTP/1.1 400 Bad Request"
            )
    elapsed = time.monotonic() - started
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert all(r.exc_info is None for r in loud)
    assert all(r.name == "adapter.api.edge" and r.levelno == logging.WARNING for r in loud)
    assert all(r.getMessage().startswith("malformed request refused with 400: ") for r in loud)
    # 10 at once, then one a second at most (RateLimit's default).
    assert 1 <= len(loud) <= 10 + math.ceil(elapsed) + 1 < sent


async def test_anonymous_access_log_lines_are_rate_limited(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make(aiohttp_client)
    sent = 60
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="adapter.access"):
        for _ in range(sent):
            assert (await client.get("/nothing-here")).status == 404
    elapsed = time.monotonic() - started
    lines = [r for r in caplog.records if r.name == "adapter.access"]
    assert 10 <= len(lines) <= 10 + math.ceil(elapsed) + 1 < sent
    suppressed = [r.__dict__["fields"].get("suppressed", 0) for r in lines]
    assert sum(suppressed) + len(lines) <= sent
    assert suppressed[:10] == [0] * 10
