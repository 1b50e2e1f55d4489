"""The listener's cap and request-header deadline, over real TLS on loopback.

The finding: idle TLS connections without credentials cost ~280 KiB each, with
no cap and a 60 s allowance before the first request, so anyone reaching port
6443 could OOM the adapter. (Memory per connection is measured by
``bench/bench_connections.py``; here: the cap, eviction and deadline.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from adapter.api.connections import ConnectionGuard, GuardedSite, connection_marks
from adapter.api.tls import ServingTLS

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
DEADLINE = 1.0  # request-header deadline of the server under test
GENEROUS = 30.0  # how long a test waits for something that must happen


@pytest.fixture
def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Served:
    def __init__(self, guard: ConnectionGuard, port: int, registry: CollectorRegistry) -> None:
        self.guard = guard
        self.port = port
        self.registry = registry
        self.clients: list[asyncio.StreamWriter] = []

    def closed(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "adapter_connections_closed_by_server_total", {"reason": reason}
        )
        return value or 0.0


async def serve(
    tmp_path: Path, max_connections: int, deadline: float = DEADLINE
) -> AsyncIterator[Served]:
    registry = CollectorRegistry()
    guard = ConnectionGuard(max_connections, deadline, registry)

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application(
        middlewares=[
            connection_marks(guard, lambda r: r.headers.get("Authorization") == "Bearer alice")
        ]
    )
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, keepalive_timeout=60.0)
    await runner.setup()
    tls = ServingTLS(cert_dir=tmp_path / "certs")
    site = GuardedSite(runner, "127.0.0.1", 0, ssl_context=tls.context, guard=guard)
    await site.start()
    served = Served(guard, site.port, registry)
    try:
        yield served
    finally:
        for writer in served.clients:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await runner.cleanup()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async for s in serve(tmp_path, max_connections=3):
        yield s


@pytest.fixture
async def capped(tmp_path: Path) -> AsyncIterator[Served]:
    """A cap of 3 and a deadline no busy machine reaches: only the cap closes."""
    async for s in serve(tmp_path, max_connections=3, deadline=120.0):
        yield s


async def connect(served: Served, tls: ssl.SSLContext) -> Conn:
    conn = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", served.port, ssl=tls), GENEROUS
    )
    served.clients.append(conn[1])
    return conn


async def get(conn: Conn, authorized: bool = True) -> bytes:
    reader, writer = conn
    auth = b"Authorization: Bearer alice\r\n" if authorized else b""
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n" + auth + b"\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GENEROUS)
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))[15:]
    )
    return head.split(b"\r\n")[0] + b" " + await reader.readexactly(length)


async def closed_by_server(conn: Conn) -> bool:
    """Waits (generously) for the server to close; True when it did, without a response."""
    reader, _ = conn
    try:
        data = await asyncio.wait_for(reader.read(), GENEROUS)
    except (ConnectionError, ssl.SSLError):
        return True
    return data == b""


async def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(
    served: Served, client_tls: ssl.SSLContext
) -> None:
    conn = await connect(served, client_tls)
    assert await closed_by_server(conn)
    assert served.closed("header_timeout") == 1
    while len(served.guard):  # the table forgets it
        await asyncio.sleep(0.01)


async def test_a_slowloris_head_is_closed_at_the_deadline(
    served: Served, client_tls: ssl.SSLContext
) -> None:
    reader, writer = await connect(served, client_tls)

    async def drip() -> None:
        for byte in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 10_000:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    dripping = asyncio.create_task(drip())
    try:
        assert await closed_by_server((reader, writer))
    finally:
        dripping.cancel()
    assert served.closed("header_timeout") == 1


async def test_an_authenticated_keep_alive_connection_outlives_the_deadline(
    served: Served, client_tls: ssl.SSLContext
) -> None:
    kept = await connect(served, client_tls)
    assert await get(kept) == b"HTTP/1.1 200 OK hello"
    idle = await connect(served, client_tls)
    assert await closed_by_server(idle)  # a full deadline has passed since `kept` was opened
    assert await get(kept) == b"HTTP/1.1 200 OK hello"  # the same connection, still served


async def test_at_the_cap_the_oldest_unauthenticated_connection_makes_room(
    capped: Served, client_tls: ssl.SSLContext
) -> None:
    kept = await connect(capped, client_tls)
    assert await get(kept) == b"HTTP/1.1 200 OK hello"
    first, second = await connect(capped, client_tls), await connect(capped, client_tls)
    third = await connect(capped, client_tls)  # over the cap of 3: `first` goes
    assert await closed_by_server(first)
    assert capped.closed("cap") == 1
    assert await get(kept) == b"HTTP/1.1 200 OK hello"
    assert await get(third) == b"HTTP/1.1 200 OK hello"
    assert len(capped.guard) <= 3
    assert second


async def test_when_every_connection_has_authenticated_a_new_one_is_refused(
    capped: Served, client_tls: ssl.SSLContext
) -> None:
    conns = [await connect(capped, client_tls) for _ in range(3)]
    for conn in conns:
        assert await get(conn) == b"HTTP/1.1 200 OK hello"
    reader, writer = await asyncio.open_connection("127.0.0.1", capped.port)
    capped.clients.append(writer)
    assert await asyncio.wait_for(reader.read(), GENEROUS) == b""  # closed before any TLS
    assert capped.closed("refused") == 1
    for conn in conns:
        assert await get(conn) == b"HTTP/1.1 200 OK hello"


async def test_an_unauthenticated_request_does_not_protect_its_connection(
    capped: Served, client_tls: ssl.SSLContext
) -> None:
    """A request without credentials counts as a request (no header deadline), but
    not as authenticated: at the cap it is evicted first."""
    anonymous = await connect(capped, client_tls)
    assert await get(anonymous, authorized=False) == b"HTTP/1.1 200 OK hello"
    kept = [await connect(capped, client_tls) for _ in range(2)]
    for conn in kept:
        assert await get(conn) == b"HTTP/1.1 200 OK hello"
    newcomer = await connect(capped, client_tls)
    assert await closed_by_server(anonymous)
    assert await get(newcomer) == b"HTTP/1.1 200 OK hello"


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionGuard(0, 1.0)
    with pytest.raises(ValueError, match="header_timeout"):
        ConnectionGuard(1, 0.0)


async def test_many_idle_connections_never_exceed_the_cap(
    tmp_path: Path, client_tls: ssl.SSLContext
) -> None:
    async for served in serve(tmp_path, max_connections=20, deadline=120.0):
        conns: list[Any] = await asyncio.gather(
            *(connect(served, client_tls) for _ in range(60)), return_exceptions=True
        )
        assert len(served.guard) <= 20
        assert served.closed("cap") == 40
        assert all(isinstance(c, tuple | OSError | ssl.SSLError) for c in conns)
