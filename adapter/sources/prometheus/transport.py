"""A thin async client for the Prometheus HTTP API, on prometheus-api-client.

``PrometheusConnect`` blocks (it is ``requests``), so every call runs in this
client's own small thread pool, behind a semaphore of the same size: the event
loop never blocks, and a slow backend ties up at most ``max_concurrency``
threads while further queries wait their turn. Works with any server speaking
the Prometheus HTTP API (Prometheus, Thanos, Mimir, VictoriaMetrics).

Every failure (connection, TLS, timeout, HTTP status, a malformed or
non-vector answer) becomes :class:`adapter.core.errors.SourceError` with a
generic message; the detail, which may contain the URL and the query, is only
logged. Failures that say the server is not answering (connection refused or
reset, the deadline passed, a 5xx or 429) are :class:`PrometheusUnavailable`.

``timeout`` is a deadline for the whole query, waiting for a thread included,
and nothing is retried: a query fails after ``timeout`` seconds at the latest.
(A thread blocked on a hung server is released by requests' own read timeout,
also ``timeout``.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import requests
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from adapter.core.errors import SourceError
from adapter.settings import PrometheusSettings

__all__ = [
    "PromSample",
    "PrometheusAPI",
    "PrometheusClient",
    "PrometheusUnavailable",
    "TransportOptions",
]

log = logging.getLogger(__name__)

_HTTP_STATUS = re.compile(r"HTTP Status Code (\d{3})")


class PrometheusUnavailable(SourceError):
    """Prometheus did not answer: unreachable, past the deadline, 5xx or 429."""


@dataclass(frozen=True, slots=True)
class PromSample:
    """One element of an instant vector: its labels, evaluation time and value.

    ``value`` may be NaN or ±Inf, as Prometheus returned it: callers filter.
    """

    labels: Mapping[str, str]
    timestamp: float
    value: float


class PrometheusAPI(Protocol):
    """What the source needs of a Prometheus server: instant queries."""

    async def query(self, expr: str, *, at: float | None = None) -> Sequence[PromSample]:
        """Evaluate ``expr`` at ``at`` (Unix seconds; the server's now when None).

        Returns an instant vector; raises SourceError on any failure.
        """
        ...


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """How to reach Prometheus."""

    url: str = "http://127.0.0.1:9090"
    """Base URL of the HTTP API (with a path prefix if the server has one)."""
    bearer_token_file: str | None = None
    """File holding a bearer token; re-read whenever it changes (projected tokens rotate)."""
    ca_file: str | None = None
    """CA bundle to verify the server's certificate with (default: the system's)."""
    cert_file: str | None = None
    """Client certificate (PEM) for mutual TLS; needs ``key_file`` unless it includes the key."""
    key_file: str | None = None
    """Private key of ``cert_file``."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers on every request (e.g. ``X-Scope-OrgID`` for Mimir tenants)."""
    timeout: float = 10.0
    """Deadline of one query in seconds, from the call to the answer (no retries)."""
    insecure_skip_verify: bool = False
    """Do not verify the server's certificate. For tests and emergencies only."""
    max_concurrency: int = 4
    """Queries in flight at once (threads in the pool)."""

    @classmethod
    def from_settings(cls, settings: PrometheusSettings) -> TransportOptions:
        """The refresh client's options (``settings.url`` must be set)."""
        if settings.url is None:
            raise ValueError("TransportOptions.from_settings needs settings.url")
        return cls(
            url=settings.url,
            bearer_token_file=_str(settings.bearer_token_file),
            ca_file=_str(settings.ca_file),
            cert_file=_str(settings.client_cert_file),
            key_file=_str(settings.client_key_file),
            headers=dict(settings.headers),
            timeout=settings.timeout,
            insecure_skip_verify=settings.insecure_skip_verify,
        )

    def for_selectors(self, settings: PrometheusSettings) -> TransportOptions:
        """metricLabelSelector queries: their own threads and a short deadline, so a hung
        Prometheus cannot make them wait behind the refresh, nor the refresh behind them."""
        return dataclasses.replace(
            self,
            timeout=min(settings.timeout, settings.selector_timeout),
            max_concurrency=settings.selector_concurrency,
        )


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


class _BearerTokenFile(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` from a file, re-read when it changes."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._token = ""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._current()}"
        return request

    def _current(self) -> str:
        stat = os.stat(self._path)  # an OSError here fails the request: translated above
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                with open(self._path, encoding="utf-8") as f:
                    self._token = f.read().strip()
                self._stamp = stamp
            return self._token


class PrometheusClient:
    """:class:`PrometheusAPI` over HTTP. Call :meth:`close` when done."""

    def __init__(self, options: TransportOptions) -> None:
        self._options = options
        self._pool = ThreadPoolExecutor(
            max_workers=options.max_concurrency, thread_name_prefix="prometheus"
        )
        self._slots = asyncio.Semaphore(options.max_concurrency)
        self._connect = PrometheusConnect(
            url=options.url.rstrip("/"),
            headers=dict(options.headers),
            session=_session(options),
            # No retries: a retry would double the time a caller waits past its timeout.
            retry=Retry(total=0, connect=0, read=0, status=0, redirect=0, status_forcelist=()),
            auth=_BearerTokenFile(options.bearer_token_file) if options.bearer_token_file else None,
            timeout=options.timeout,
        )

    async def query(self, expr: str, *, at: float | None = None) -> Sequence[PromSample]:
        params = {} if at is None else {"time": repr(at)}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._options.timeout
        try:
            async with asyncio.timeout_at(deadline):
                async with self._slots:
                    result = await loop.run_in_executor(
                        self._pool, self._connect.custom_query, expr, params
                    )
        except TimeoutError as e:
            log.warning(
                "Prometheus query timed out after %.3gs (query: %s)", self._options.timeout, expr
            )
            raise PrometheusUnavailable("the Prometheus query timed out") from e
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("Prometheus query failed: %s (query: %s)", _short(e), expr)
            if _unavailable(e):
                raise PrometheusUnavailable("Prometheus is not answering") from e
            raise SourceError("the Prometheus query failed") from e
        try:
            return _vector(result)
        except (TypeError, ValueError, KeyError, IndexError) as e:
            log.warning("Prometheus answered a non-vector: %s (query: %s)", e, expr)
            raise SourceError("the Prometheus query returned an unexpected result") from e

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._connect.close()


def _unavailable(error: Exception) -> bool:
    """True unless Prometheus answered and refused the query itself (a 4xx but 429)."""
    match = _HTTP_STATUS.search(str(error))
    if match is None:
        return True  # connection refused or reset, TLS, a read timeout
    status = int(match.group(1))
    return status >= 500 or status == 429


def _short(error: Exception) -> str:
    text = str(error)
    return text if len(text) <= 300 else text[:300] + "..."


def _session(options: TransportOptions) -> requests.Session:
    session = requests.Session()
    if options.insecure_skip_verify:
        session.verify = False
    elif options.ca_file:
        session.verify = options.ca_file
    if options.cert_file:
        session.cert = (
            (options.cert_file, options.key_file) if options.key_file else options.cert_file
        )
    return session


def _vector(result: Any) -> list[PromSample]:
    """Parse ``data.result`` of an instant vector; refuse scalars, strings and matrices."""
    if not isinstance(result, list):
        raise TypeError(f"expected a list, got {type(result).__name__}")
    if result and not isinstance(result[0], dict):
        raise TypeError("expected an instant vector, got a scalar or a string")
    samples = []
    for item in result:
        if "value" not in item:
            raise ValueError("expected an instant vector, got a range vector")
        timestamp, text = item["value"]
        samples.append(PromSample(item["metric"], float(timestamp), _float(text)))
    return samples


def _float(text: str) -> float:
    """A sample value as Prometheus formats it: decimals, ``NaN``, ``+Inf``, ``-Inf``."""
    value = float(text)
    return math.nan if math.isnan(value) else value
