"""Input series (CSV, Prometheus range queries) and the result CSV.

Input CSV: a header ``time,<metric>[,<metric>...]``; ``time`` is Unix seconds or
RFC 3339 (``2026-11-22T10:00:00Z``); an empty or ``NaN`` cell is a gap.

Result CSV: one row per (HPA, time step, metric)::

    hpa,time,unix,metric,load,per_pod,target,desired,replicas,ready,synced
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import requests

from adapter.core.durations import parse_duration
from adapter.core.quantity import rfc3339
from adapter.simulate.engine import Point, Row

RESULT_HEADER = (
    "hpa",
    "time",
    "unix",
    "metric",
    "load",
    "per_pod",
    "target",
    "desired",
    "replicas",
    "ready",
    "synced",
)


class SeriesError(ValueError):
    """The input cannot be read (the message names the file and line, or the query)."""


def parse_time(text: str, now: float | None = None) -> float:
    """Unix seconds, RFC 3339 (``Z`` or an offset), or ``now`` / ``now-24h`` / ``now-90m``."""
    text = text.strip()
    if text == "now" or text.startswith("now-"):
        current = time.time() if now is None else now
        if text == "now":
            return current
        try:
            return current - parse_duration(text[4:])
        except ValueError as e:
            raise SeriesError(f"not a time: {text!r}: {e}") from e
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise SeriesError(f"not a time: {text!r} (Unix seconds or RFC 3339)") from e
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_csv(path: Path) -> list[Point]:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[0].strip() != "time" or len(header) < 2:
            raise SeriesError(f"{path}:1: the header must be time,<metric>[,<metric>...]")
        names = [h.strip() for h in header[1:]]
        points = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                points.append(
                    Point(parse_time(row[0]), dict(zip(names, map(_cell, row[1:]), strict=False)))
                )
            except ValueError as e:
                raise SeriesError(f"{path}:{line}: {e}") from e
    return sorted(points, key=lambda p: p.time)


def _cell(text: str) -> float:
    text = text.strip()
    return math.nan if text in {"", "NaN", "nan"} else float(text)


def query_range(
    url: str,
    queries: Mapping[str, str],
    start: float,
    end: float,
    step: float,
    *,
    timeout: float = 30.0,
    session: requests.Session | None = None,
) -> list[Point]:
    """Each metric's PromQL over [start, end] at ``step`` (one series each: the first
    one returned is used). Missing steps are gaps."""
    http = session or requests.Session()
    columns: dict[str, dict[float, float]] = {}
    for metric, expr in queries.items():
        params: dict[str, str] = {
            "query": expr,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step:g}",
        }
        try:
            response = http.get(
                url.rstrip("/") + "/api/v1/query_range",
                params=params,
                timeout=timeout,
            )
            body = response.json()
        except (requests.RequestException, ValueError) as e:
            raise SeriesError(f"query for {metric} failed: {e}") from e
        if body.get("status") != "success":
            raise SeriesError(
                f"query for {metric} failed: {body.get('error', response.status_code)}"
            )
        result = body["data"]["result"]
        columns[metric] = {float(t): float(v) for t, v in result[0]["values"]} if result else {}
    times = [start + i * step for i in range(int((end - start) // step) + 1)]
    return [Point(t, {m: column.get(t, math.nan) for m, column in columns.items()}) for t in times]


def write_result(path: Path, results: Iterable[tuple[str, Sequence[Row]]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RESULT_HEADER)
    for label, rows in results:
        for row in rows:
            writer.writerow(
                (
                    label,
                    rfc3339(row.time),
                    _number(row.time),
                    row.metric,
                    "" if row.load is None else _number(row.load),
                    "" if row.per_pod is None else f"{row.per_pod:.6g}",
                    _number(row.target),
                    row.desired,
                    row.replicas,
                    row.ready,
                    int(row.synced),
                )
            )
    path.write_text(buffer.getvalue())


def _number(value: float) -> str:
    """Integers without a fraction or exponent, others as Python's shortest repr."""
    return str(int(value)) if value.is_integer() else repr(value)
