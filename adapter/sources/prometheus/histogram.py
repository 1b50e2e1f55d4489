"""Quantiles from classic Prometheus histogram buckets, exactly as PromQL computes them.

A port of ``bucketQuantile`` from ``promql/quantile.go`` of Prometheus 2.42 (the
version the tests run against), so a quantile computed here from bucket rates
equals ``histogram_quantile`` over the same rates:

1. sort buckets by upper bound; without a ``+Inf`` bucket the result is NaN;
2. coalesce buckets with the same upper bound (``le="1"`` and ``le="1.0"``);
3. enforce monotonic cumulative counts (each count becomes the running max);
4. fewer than two buckets, or zero observations: NaN;
5. find the first bucket whose count reaches ``rank = q * total`` (among all
   but the ``+Inf`` one): in the ``+Inf`` bucket, return the second-highest
   upper bound; in the first bucket with an upper bound <= 0, return that
   bound; otherwise interpolate linearly, from 0 for the first bucket.

NaN means "no answer": callers omit it, they never turn it into 0.
Arithmetic follows IEEE 754 like Go (0/0 is NaN, x/0 is ±Inf), not Python's
ZeroDivisionError. Newer Prometheus versions (2.5x) also flatten count
differences below a relative 1e-12 before step 3; that changes results only by
float noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache

Bucket = tuple[float, float]
"""``(upper_bound, cumulative_count)``: one ``le`` series' value (a count or a rate)."""


@lru_cache(maxsize=4096)  # a fleet shares a few dozen distinct le values
def parse_le(text: str) -> float | None:
    """An ``le`` label value as Go's ``strconv.ParseFloat`` reads it, or None.

    Prometheus silently ignores bucket series whose ``le`` does not parse. Go
    accepts what Python's ``float`` accepts except surrounding blanks and
    ``_`` digit separators, and also accepts hexadecimal floats.
    """
    if not text or text != text.strip() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    if not text.lstrip("+-").lower().startswith("0x"):
        return None
    try:
        return float.fromhex(text)
    except ValueError:
        return None


def coalesce(buckets: Iterable[Bucket]) -> tuple[Bucket, ...]:
    """Sort by upper bound and sum counts of equal upper bounds (``coalesceBuckets``).

    Buckets with a NaN upper bound are dropped: Prometheus' result for them
    depends on its unstable sort and is not meaningful.
    """
    ordered = sorted((b for b in buckets if not math.isnan(b[0])), key=_upper_bound)
    merged: list[Bucket] = []
    for upper, count in ordered:
        if merged and merged[-1][0] == upper:
            merged[-1] = (upper, merged[-1][1] + count)
        else:
            merged.append((upper, count))
    return tuple(merged)


def merge(histograms: Iterable[Sequence[Bucket]]) -> tuple[Bucket, ...]:
    """The buckets of several histograms summed by upper bound (``sum by (le)``)."""
    totals: dict[float, float] = {}
    for buckets in histograms:
        for upper, count in buckets:
            totals[upper] = totals.get(upper, 0.0) + count
    return coalesce(totals.items())


def bucket_quantile(q: float, buckets: Iterable[Bucket]) -> float:
    """The q-quantile of cumulative ``buckets``, or NaN when there is no answer."""
    return quantile_of_coalesced(q, coalesce(buckets))


def quantile_of_coalesced(q: float, ordered: Sequence[Bucket]) -> float:  # noqa: PLR0911
    """:func:`bucket_quantile` of buckets already sorted and coalesced (by :func:`coalesce`)."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if not ordered or ordered[-1][0] != math.inf:
        return math.nan
    bounds = [upper for upper, _ in ordered]
    counts = _monotonic([count for _, count in ordered])
    if len(counts) < 2:
        return math.nan
    observations = counts[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = _search(counts, rank)
    if b == len(counts) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * _divide(rank, count)


def _upper_bound(bucket: Bucket) -> float:
    return bucket[0]


def _monotonic(counts: list[float]) -> list[float]:
    """``ensureMonotonic`` of Prometheus 2.42: the running maximum (NaN left as is)."""
    highest = -math.inf
    for i, count in enumerate(counts):
        if count > highest:
            highest = count
        elif count < highest:
            counts[i] = highest
    return counts


def _search(counts: Sequence[float], rank: float) -> int:
    """Go's ``sort.Search(len(counts)-1, counts[i] >= rank)``: a binary search."""
    lo, hi = 0, len(counts) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if not counts[mid] >= rank:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _divide(a: float, b: float) -> float:
    """IEEE 754 division, as in Go."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)
