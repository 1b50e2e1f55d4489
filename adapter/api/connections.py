"""Bounded cost per connection and in total: the listener's own accept loop.

aiohttp's ``TCPSite`` accepts every connection and lets each complete a TLS
handshake (up to 60 s) and then idle for the keep-alive timeout, with a 256 KiB
read buffer per connection in asyncio's TLS layer: 1,500 idle connections
without credentials took the adapter from 74 to 488 MB. :class:`GuardedSite`
replaces it:

- **a cap** (``max_connections``) counted from ``accept()``, before any TLS
  work. At the cap a new connection takes the place of the oldest one that has
  not authenticated yet (still handshaking, or never sent a request with
  credentials); when every open connection has authenticated, the new one is
  closed at once. An attacker without credentials can therefore never lock
  the aggregator's authenticated keep-alive connections out.
- **a request-header deadline** (``header_timeout``) from ``accept()`` to the
  first complete request head, TLS handshake included: a connection that sends
  nothing, or sends its head a byte at a time, is closed then. Connections that
  made a request are left to the normal keep-alive timeout, so the
  aggregator's keep-alive connections are not disturbed.
- :func:`limit_tls_read_buffer`: asyncio's per-connection TLS read buffer
  drops from 256 KiB to 16 KiB (one TLS record).
- after many connections closed, ``malloc_trim`` hands the freed heap back to
  the system (glibc keeps it otherwise, and RSS never came down).

:func:`connection_marks` is the middleware that tells the guard a connection
sent a request and whether it authenticated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from asyncio import sslproto
from collections import OrderedDict
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge

from adapter.memory import trim_memory

log = logging.getLogger(__name__)

TLS_READ_BUFFER = 16 * 1024
TRIM_DELAY_S = 1.0


def limit_tls_read_buffer(size: int = TLS_READ_BUFFER) -> None:
    """Make asyncio allocate ``size`` bytes, not 256 KiB, per TLS connection for reads.

    Process-wide (``asyncio.sslproto.SSLProtocol.max_size``, read when a
    connection is made). 16 KiB is the largest TLS record, so reads need at
    most as many calls as records; our requests are small GETs.
    """
    sslproto.SSLProtocol.max_size = size


class _Conn:
    __slots__ = ("authenticated", "requested", "sock", "started", "task", "timer", "transport")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.requested = False
        self.authenticated = False
        self.started = False
        """The handshake task has run: from then on the socket is its transport's."""

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.abort()
            return
        if self.task is not None:
            self.task.cancel()  # handshaking: cancelling closes its transport and socket
        if not self.started:
            self.sock.close()  # a task cancelled before it ran never touches the socket


class ConnectionGuard:
    """The connection table: cap, eviction and the request-header deadline."""

    def __init__(
        self,
        max_connections: int,
        header_timeout: float,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if header_timeout <= 0:
            raise ValueError("header_timeout must be positive")
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        # Oldest first: eviction takes the oldest unauthenticated connection.
        self._conns: OrderedDict[int, _Conn] = OrderedDict()
        self._by_transport: dict[int, _Conn] = {}
        self._next = 0
        # Trim the heap once the table has shrunk by this much since its high mark.
        self._trim_step = max(64, max_connections // 10)
        self._high = 0
        self._trim_handle: asyncio.TimerHandle | None = None
        registry = CollectorRegistry() if registry is None else registry
        self._open = Gauge(
            "adapter_connections_open", "Open client connections.", registry=registry
        )
        self._closed = Counter(
            "adapter_connections_closed_by_server",
            "Connections the server closed to protect itself, by reason "
            "(cap: room for a newer one; refused: at the cap, all authenticated; "
            "header_timeout: no complete request head in time).",
            ["reason"],
            registry=registry,
        )
        for reason in ("cap", "refused", "header_timeout"):
            self._closed.labels(reason)

    def __len__(self) -> int:
        return len(self._conns)

    # -- accept side -------------------------------------------------------------------

    def admit(self, sock: socket.socket) -> tuple[int, _Conn] | None:
        """Register a just-accepted socket, making room if needed; None: refused."""
        if len(self._conns) >= self.max_connections and not self._evict_one():
            self._closed.labels("refused").inc()
            sock.close()
            return None
        key = self._next
        self._next += 1
        conn = _Conn(sock)
        self._conns[key] = conn
        self._open.set(len(self._conns))
        self._high = max(self._high, len(self._conns))
        conn.timer = asyncio.get_running_loop().call_later(self.header_timeout, self._deadline, key)
        return key, conn

    def _evict_one(self) -> bool:
        for key, conn in self._conns.items():
            if not conn.authenticated:
                self._closed.labels("cap").inc()
                self._forget(key)
                conn.close()
                return True
        return False

    def _deadline(self, key: int) -> None:
        conn = self._conns.get(key)
        if conn is None or conn.requested:
            return
        self._closed.labels("header_timeout").inc()
        self._forget(key)
        conn.close()

    def established(self, key: int, transport: asyncio.Transport) -> None:
        conn = self._conns.get(key)
        if conn is None:  # evicted during the handshake's last step
            transport.abort()
            return
        conn.transport = transport
        self._by_transport[id(transport)] = conn

    def released(self, key: int) -> None:
        self._forget(key)

    def _forget(self, key: int) -> None:
        conn = self._conns.pop(key, None)
        if conn is None:
            return
        if conn.timer is not None:
            conn.timer.cancel()
        if conn.transport is not None:
            self._by_transport.pop(id(conn.transport), None)
        self._open.set(len(self._conns))
        if self._high - len(self._conns) >= self._trim_step and self._trim_handle is None:
            self._trim_handle = asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._trim)

    def _trim(self) -> None:
        """Give the heap freed by closed connections back to the system."""
        self._trim_handle = None
        self._high = len(self._conns)
        trim_memory()

    def close_all(self) -> None:
        for key in list(self._conns):
            conn = self._conns[key]
            if conn.transport is None:  # handshakes in progress; the rest shut down gracefully
                self._forget(key)
                conn.close()

    # -- request side ------------------------------------------------------------------

    def requested(self, transport: asyncio.BaseTransport | None) -> None:
        conn = self._by_transport.get(id(transport)) if transport is not None else None
        if conn is not None:
            conn.requested = True

    def authenticated(self, transport: asyncio.BaseTransport | None) -> None:
        conn = self._by_transport.get(id(transport)) if transport is not None else None
        if conn is not None:
            conn.authenticated = True


class _Guarded(asyncio.Protocol):
    """Delegates to aiohttp's protocol; tells the guard when the connection ends."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard, key: int) -> None:
        self._inner = inner
        self._guard = guard
        self._key = key

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._guard.established(self._key, cast("asyncio.Transport", transport))
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.released(self._key)
        self._inner.connection_lost(exc)


class GuardedSite(web.BaseSite):
    """A TLS listener on ``host:port`` that accepts through a :class:`ConnectionGuard`."""

    __slots__ = ("_accepting", "_guard", "_handshakes", "_host", "_port", "_sock")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        guard: ConnectionGuard,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port (the requested one, or the one the kernel chose for 0)."""
        if self._sock is None:
            return self._port
        return int(self._sock.getsockname()[1])

    async def start(self) -> None:
        await super().start()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.create_server((self._host, self._port), family=family, backlog=self._backlog)
        sock.setblocking(False)
        self._sock = sock
        self._accepting = asyncio.create_task(self._accept_loop(sock), name="accept")

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._sock is not None:
            self._sock.close()
        self._guard.close_all()
        for task in list(self._handshakes):
            task.cancel()
        await super().stop()

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except asyncio.CancelledError:
                raise
            except OSError as e:  # EMFILE and friends: back off instead of spinning
                log.warning("accept failed: %s", e)
                await asyncio.sleep(0.1)
                continue
            admitted = self._guard.admit(sock)
            if admitted is None:
                continue
            key, conn = admitted
            task = asyncio.create_task(self._handshake(key, conn))
            conn.task = task
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, key: int, conn: _Conn) -> None:
        conn.started = True
        sock = conn.sock
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        guard = self._guard

        def protocol() -> asyncio.Protocol:
            inner: Any = server()
            return _Guarded(inner, guard, key)

        try:
            await loop.connect_accepted_socket(
                protocol,
                sock,
                ssl=self._ssl_context,
                ssl_handshake_timeout=guard.header_timeout,
            )
        except asyncio.CancelledError:
            guard.released(key)
            sock.close()  # already closed with its transport; idempotent
        except Exception as e:  # a failed or timed-out handshake: the client's problem
            guard.released(key)
            sock.close()
            log.debug("TLS handshake failed: %s", e)


def connection_marks(guard: ConnectionGuard, is_authenticated: Any) -> Middleware:
    """Tell ``guard`` that a connection sent a request head, and whether the request
    authenticated (``is_authenticated(request)``) once it has been answered."""

    @web.middleware
    async def mark(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        guard.requested(transport)
        try:
            return await handler(request)
        finally:
            if is_authenticated(request):
                guard.authenticated(transport)

    return mark
