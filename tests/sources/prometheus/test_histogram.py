"""bucket_quantile against Prometheus' own cases (promql/testdata/histograms.test) and edges."""

from __future__ import annotations

import math

import pytest

from adapter.sources.prometheus.histogram import bucket_quantile, coalesce, merge, parse_le

INF = math.inf
# Cumulative buckets of the Prometheus test suite's "testhistogram" (positive range).
POSITIVE = [(0.1, 50.0), (0.2, 70.0), (INF, 100.0)]
# The suite's "request_duration_seconds" style buckets.
SIMPLE = [(0.1, 10.0), (0.2, 20.0), (0.5, 40.0), (1.0, 60.0), (INF, 100.0)]


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        # interpolation inside a bucket, from 0 for the first one
        (0.5, SIMPLE, 0.75),
        (0.05, SIMPLE, 0.05),
        (0.1, SIMPLE, 0.1),
        (0.3, SIMPLE, 0.35),
        (0.6, SIMPLE, 1.0),
        # the quantile falls into +Inf: the second-highest upper bound
        (0.9, SIMPLE, 1.0),
        (1.0, SIMPLE, 1.0),
        (0.0, SIMPLE, 0.0),
        (0.5, POSITIVE, 0.1),
        (0.8, POSITIVE, 0.2),
        # q out of range and NaN
        (-0.1, SIMPLE, -INF),
        (1.1, SIMPLE, INF),
        (math.nan, SIMPLE, math.nan),
        # first bucket with an upper bound <= 0 returns that bound
        (0.1, [(-1.0, 10.0), (0.0, 20.0), (INF, 30.0)], -1.0),
        (0.5, [(-1.0, 10.0), (0.0, 20.0), (INF, 30.0)], -0.5),
        # unsorted input is sorted; duplicate le coalesced ("1" and "1.0")
        (0.5, list(reversed(SIMPLE)), 0.75),
        (0.5, [(0.1, 5.0), (0.1, 5.0), (0.2, 20.0), (0.5, 40.0), (1.0, 60.0), (INF, 100.0)], 0.75),
        # non-monotonic counts: the running maximum
        (0.5, [(0.1, 10.0), (0.2, 5.0), (0.5, 40.0), (1.0, 60.0), (INF, 100.0)], 0.75),
        (0.75, [(0.1, 80.0), (0.2, 70.0), (INF, 100.0)], 0.1 * (75.0 / 80.0)),
        # no +Inf bucket, a single bucket, zero observations: NaN (never 0)
        (0.5, [(0.1, 10.0), (0.2, 20.0)], math.nan),
        (0.5, [(INF, 10.0)], math.nan),
        (0.5, [(0.1, 0.0), (INF, 0.0)], math.nan),
        (0.5, [], math.nan),
        # rank 0 in an empty first bucket: 0/0 in Go is NaN
        (0.0, [(0.1, 0.0), (0.2, 5.0), (INF, 5.0)], math.nan),
    ],
)
def test_bucket_quantile(q: float, buckets: list[tuple[float, float]], expected: float) -> None:
    result = bucket_quantile(q, buckets)
    if math.isnan(expected):
        assert math.isnan(result)
    else:
        assert result == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.1", 0.1),
        ("+Inf", INF),
        ("Inf", INF),
        ("1e3", 1000.0),
        ("-5", -5.0),
        ("0x1p-2", 0.25),
        ("", None),
        (" 1", None),
        ("1_0", None),
        ("abc", None),
    ],
)
def test_parse_le_like_go(text: str, expected: float | None) -> None:
    assert parse_le(text) == expected


def test_coalesce_sorts_and_sums_equal_bounds() -> None:
    assert coalesce([(INF, 3.0), (1.0, 1.0), (1.0, 1.0), (math.nan, 9.0)]) == (
        (1.0, 2.0),
        (INF, 3.0),
    )


def test_merge_is_sum_by_le() -> None:
    a = [(0.1, 1.0), (INF, 2.0)]
    b = [(0.1, 3.0), (0.5, 4.0), (INF, 5.0)]
    assert merge([a, b]) == ((0.1, 4.0), (0.5, 4.0), (INF, 7.0))
