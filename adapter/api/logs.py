"""Log lines a client without credentials cannot flood.

- :class:`RateLimit`: at most ``burst`` lines per ``per`` seconds for one kind
  of line; the next line let through says how many were suppressed.
- :func:`edge_logger`: the logger given to aiohttp's protocol handler. A
  request the HTTP parser refuses (bad request line, header too long, ...) is
  the client's mistake: one WARNING line without a traceback, rate-limited.
  Anything else aiohttp reports keeps its traceback, rate-limited as well.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger("adapter.api.edge")


class RateLimit:
    """A token bucket: ``burst`` lines, refilled at ``burst / per`` lines a second."""

    def __init__(
        self, burst: int = 10, per: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = float(burst)
        self._rate = burst / per
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self.suppressed = 0

    def allow(self) -> int | None:
        """None: drop this line. Else the number of lines dropped since the last one let
        through (usually 0), to be mentioned in this line."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            self.suppressed += 1
            return None
        self._tokens -= 1.0
        dropped, self.suppressed = self.suppressed, 0
        return dropped


class _EdgeLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """What aiohttp's RequestHandler calls (``debug``, ``exception``), tamed."""

    def __init__(self, logger: logging.Logger, clock: Callable[[], float]) -> None:
        super().__init__(logger, {})
        self._client = RateLimit(clock=clock)
        self._internal = RateLimit(clock=clock)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(error, HttpProcessingError):
            dropped = self._client.allow()
            if dropped is None:
                return
            detail = str(error.message).splitlines()[0][:200] if error.message else ""
            self.logger.warning(
                "malformed request refused with %d: %s%s",
                error.code,
                detail or type(error).__name__,
                f" ({dropped} similar lines suppressed)" if dropped else "",
            )
            return
        dropped = self._internal.allow()
        if dropped is None:
            return
        if dropped:
            self.logger.error("%d similar errors suppressed", dropped)
        self.logger.error(msg, *args, exc_info=exc_info, **kw)


def edge_logger(clock: Callable[[], float] = time.monotonic) -> Any:
    """The ``logger=`` for aiohttp's request handler (``handler_args``)."""
    return _EdgeLogger(log, clock)
