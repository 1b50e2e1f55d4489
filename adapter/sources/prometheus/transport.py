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

The query is sent on the session ``PrometheusConnect`` configured (its retry
policy, headers, auth) the way its ``custom_query`` sends it, and the answer is
decoded here (:func:`decode`): an answer in Prometheus' own compact layout is
read column-wise straight from the bytes into a :class:`Columns` vector (no
dict per series: a 10,000-pod histogram answer is 180,000 series), anything
else through ``json`` exactly as ``custom_query`` would. Both give the same
samples.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import re
import threading
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar, overload

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from adapter.core.errors import SourceError
from adapter.settings import PrometheusSettings

__all__ = [
    "Columns",
    "PromSample",
    "PrometheusAPI",
    "PrometheusClient",
    "PrometheusUnavailable",
    "TransportOptions",
]

log = logging.getLogger(__name__)

K = TypeVar("K")

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
    compression: bool = False
    """Ask for gzip-compressed answers. Off by default: a 10,000-pod histogram answer
    is 18 MB, which Prometheus took longer to compress (measured: the exchange 8.4 s
    compressed, 3.8 s not, on a busy machine) than a cluster network takes to carry."""

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
            compression=settings.compression,
            # Room for every shard of a split query and the other rules' queries beside
            # them: a shard waiting for a thread would not overlap the others.
            max_concurrency=max(4, 2 * settings.max_query_shards),
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
        self._session = _session(options)
        self._connect = PrometheusConnect(
            url=options.url.rstrip("/"),
            headers=dict(options.headers),
            session=self._session,
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
                    result = await loop.run_in_executor(self._pool, self._get, expr, params)
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

    def _get(self, expr: str, params: Mapping[str, str]) -> Any:
        """``PrometheusConnect.custom_query`` with our decoder: ``data.result``, or raises."""
        connect = self._connect
        response = self._session.request(
            method="GET",
            url=f"{connect.url}/api/v1/query",
            params={"query": expr, **params},
            headers=connect.headers,
            auth=connect.auth,
            timeout=self._options.timeout,
        )
        if response.status_code != 200:
            raise PrometheusApiClientException(
                f"HTTP Status Code {response.status_code} ({response.content!r})"
            )
        return decode(response.content)


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
    if not options.compression:
        session.headers["Accept-Encoding"] = "identity"
    if options.insecure_skip_verify:
        session.verify = False
    elif options.ca_file:
        session.verify = options.ca_file
    if options.cert_file:
        session.cert = (
            (options.cert_file, options.key_file) if options.key_file else options.cert_file
        )
    return session


def _vector(result: Any) -> Sequence[PromSample]:
    """Parse ``data.result`` of an instant vector; refuse scalars, strings and matrices.

    A :class:`Columns` (decoded by :func:`decode` from a well-formed vector) is one already.
    """
    if isinstance(result, Columns):
        return result
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


def _float(text: str | float) -> float:
    """A sample value as Prometheus formats it: decimals, ``NaN``, ``+Inf``, ``-Inf``."""
    value = float(text)
    return math.nan if math.isnan(value) else value


def decode(body: bytes) -> Any:
    """``data.result`` of a /api/v1/query answer: a :class:`Columns` when the body is
    in Prometheus' own compact layout (see :func:`_columns`), else ``json``'s decoding
    of the body, exactly as ``custom_query`` returns it. Raises ValueError (not
    JSON), KeyError or TypeError (no ``data.result``)."""
    columns = _columns(body)
    if columns is not None:
        return columns
    return json.loads(body)["data"]["result"]


class Columns(Sequence[PromSample]):
    """An instant vector whose series all have the same label names, held by column.

    Per series only three numbers are kept (a label's value is an index into one
    table of distinct strings, the timestamp and the value are packed floats),
    so 180,000 series cost about 5 MB and no Python object each. Indexing builds
    the :class:`PromSample` on demand (labels in the answer's order, values as
    :func:`_float` reads them); :meth:`rows` reads chosen labels without it.
    """

    __slots__ = ("_labels", "_names", "_strings", "_timestamps", "_values")

    def __init__(
        self,
        names: tuple[str, ...],
        labels: tuple[array[int], ...],
        strings: Sequence[str],
        timestamps: array[float],
        values: array[float],
    ) -> None:
        self._names = names
        self._labels = labels
        self._strings = strings
        self._timestamps = timestamps
        self._values = values

    def __len__(self) -> int:
        return len(self._values)

    @property
    def names(self) -> tuple[str, ...]:
        """Every series' label names, in the answer's order."""
        return self._names

    @classmethod
    def concat(cls, parts: Sequence[Columns]) -> Columns:
        """The parts' series one after the other, as one Columns: equal to decoding
        their answers' series concatenated into one answer (the string tables are
        merged, each distinct string once). Every
        part must have the same label names (ValueError), as the shards of one
        query do."""
        if not parts:
            raise ValueError("nothing to concatenate")
        names = parts[0]._names
        if any(part._names != names for part in parts):
            raise ValueError("parts with different label names")
        table: dict[str, int] = {}
        labels: tuple[array[int], ...] = tuple(array("I") for _ in names)
        timestamps: array[float] = array("d")
        values: array[float] = array("d")
        for part in parts:
            # Per distinct string of the part, its index in the merged table.
            remap = [table.setdefault(text, len(table)) for text in part._strings]
            for out, column in zip(labels, part._labels, strict=True):
                out.extend(map(remap.__getitem__, column))
            timestamps.extend(part._timestamps)
            values.extend(part._values)
        return cls(names, labels, list(table), timestamps, values)

    @overload
    def __getitem__(self, index: int) -> PromSample: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[PromSample]: ...

    def __getitem__(self, index: int | slice) -> PromSample | Sequence[PromSample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        strings = self._strings
        columns = zip(self._names, self._labels, strict=True)
        labels = {name: strings[column[index]] for name, column in columns}
        return PromSample(labels, self._timestamps[index], _float(self._values[index]))

    def split(self, label: str, key: Callable[[str | None], K]) -> dict[K, Columns]:
        """The series grouped by ``key`` of their ``label`` (None when they have none),
        each group in the answer's order, groups in order of first appearance."""
        if label not in self._names:
            return {key(None): self} if len(self) else {}
        column = self._labels[self._names.index(label)]
        keys = [key(text) for text in self._strings]  # per distinct string, not per series
        groups: dict[K, array[int]] = {}
        for row, text in enumerate(column):
            found = keys[text]
            group = groups.get(found)
            if group is None:
                group = groups[found] = array("I")
            group.append(row)
        return {found: self._take(rows) for found, rows in groups.items()}

    def _take(self, rows: array[int]) -> Columns:
        def take(values: array[Any]) -> array[Any]:
            return array(values.typecode, map(values.__getitem__, rows))

        labels = tuple(take(column) for column in self._labels)
        return Columns(
            self._names, labels, self._strings, take(self._timestamps), take(self._values)
        )

    def rows(self, names: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """Per series: the values of ``names`` ("" for a label it does not have), then
        its timestamp and value, in the answer's order. A NaN value is a NaN, not
        necessarily ``math.nan`` itself (indexing gives that)."""
        strings = self._strings
        missing = [""] * len(self)
        columns = [
            map(strings.__getitem__, self._labels[self._names.index(name)])
            if name in self._names
            else missing
            for name in names
        ]
        return zip(*columns, self._timestamps, self._values, strict=True)


_PREFIX: Final = b'{"status":"success","data":{"resultType":"vector","result":['
_SUFFIX: Final = b"]}}"
_FIRST_ROW: Final = re.compile(rb'\{"metric":\{([^{}]*)\},"value":\[')
_LABEL: Final = re.compile(rb'"([^"]*)":"[^"]*"')
_NUMBER: Final = rb"(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
_CHUNK: Final = 1 << 18
"""Bytes of rows decoded at once: bounds the transient objects, and how long one
``findall`` holds the GIL (the decoding thread then lets the event loop run)."""


@lru_cache(maxsize=64)
def _row_pattern(names: tuple[bytes, ...]) -> tuple[re.Pattern[bytes], int]:
    """The regular expression of one series with exactly these labels, in this order,
    followed by ``,`` or the end; and the length of such a series without its values."""
    labels = b",".join(b'"' + re.escape(name) + b'":"([^"]*)"' for name in names)
    pattern = rb'\{"metric":\{' + labels + rb'\},"value":\[' + _NUMBER + rb',"([^"]*)"\]\}'
    # `"name":"value"` is the name and 5 more bytes; n labels have n - 1 commas.
    fixed = len(b'{"metric":{},"value":[,""]}') + sum(len(n) + 5 for n in names)
    fixed += max(len(names) - 1, 0)
    return re.compile(pattern + rb"(?=,|\Z)"), fixed


def _columns(body: bytes) -> Columns | None:
    """The vector of an answer laid out exactly as Prometheus writes it, or None.

    That layout is ``{"status":"success","data":{"resultType":"vector","result":[``,
    series ``{"metric":{"name":"value",...},"value":[<time>,"<value>"]}`` separated
    by commas, ``]}}``, with no blank, no escape and only ASCII. Every series must
    have the first one's label names in the same order (``sum by`` answers do).
    Anything else (another server's layout, ``warnings``, an escaped quote, a
    native histogram, a value ``float`` does not read) is None, for ``json``
    and :func:`_vector` to decode or refuse as they always did.
    """
    if not (body.startswith(_PREFIX) and body.endswith(_SUFFIX) and body.isascii()):
        return None
    start, end = len(_PREFIX), len(body) - len(_SUFFIX)
    names = _label_names(body, start, end)
    if names is None or b"\\" in body:
        return None
    pattern, fixed = _row_pattern(names)
    table: dict[bytes, int] = {}
    labels: tuple[array[int], ...] = tuple(array("I") for _ in names)
    timestamps: array[float] = array("d")
    values: array[float] = array("d")
    position = start
    while position < end:
        # A chunk ends where a series starts: `,{"metric":` occurs nowhere else
        # (a string cannot hold an unescaped quote).
        stop = body.find(b',{"metric":', position + _CHUNK, end)
        stop = end if stop < 0 else stop
        found = pattern.findall(body, position, stop)
        if not found:
            return None
        # Together with the separators, the series must cover the chunk exactly
        # (findall gives each series' groups: at least the time and the value).
        groups = len(b"".join(chain.from_iterable(found)))
        covered = groups + fixed * len(found) + len(found) - 1
        if covered != stop - position:
            return None
        columns = list(zip(*found, strict=True))
        for column, out in zip(columns, labels, strict=False):
            for distinct in dict.fromkeys(column):  # each distinct value once, in order
                table.setdefault(distinct, len(table))
            out.extend(map(table.__getitem__, column))
        try:
            timestamps.extend(map(float, columns[-2]))
            values.extend(map(float, columns[-1]))
        except ValueError:
            return None  # for the generic path to refuse, as it always did
        position = stop + 1
    strings = [name.decode() for name in table]
    return Columns(tuple(n.decode() for n in names), labels, strings, timestamps, values)


def _label_names(body: bytes, start: int, end: int) -> tuple[bytes, ...] | None:
    """The first series' label names (none without a series), or None if unusable."""
    if start == end:
        return ()
    first = _FIRST_ROW.match(body, start, end)
    if first is None:
        return None
    names = tuple(_LABEL.findall(first.group(1)))
    return names if len(set(names)) == len(names) else None
