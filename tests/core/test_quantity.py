"""Quantity strings as the HPA reads them, and metav1.Time timestamps."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapter.core.quantity import (
    canonical_milli_quantity,
    format_quantity,
    milli_value,
    parse_quantity,
    rfc3339,
)

QUANTITY_OUT = re.compile(r"^-?[1-9][0-9]*[mkMGTPE]?$|^0$")
INT64_MAX = 2**63 - 1


def milli_rounded(value: float) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 400
        return Decimal(repr(value)).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)


# --- format_quantity ------------------------------------------------------------------


# Expected strings are what apimachinery prints for NewMilliQuantity(m, DecimalSI).String(),
# m being the milli value after our stated ROUND_HALF_UP of the decimal repr.
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.2345, "235m"),
        (0.9999, "1"),  # 999.9 milli rounds to 1000: whole units
        (1.005, "1005m"),
        (0.1, "100m"),
        (10.5, "10500m"),
        (10.0, "10"),
        (1e-4, "0"),
        (-0.0, "0"),
        (0.0, "0"),
        (-1.5, "-1500m"),
        (0.5, "500m"),
        (1.0, "1"),
        (100.0, "100"),
        (1000.0, "1k"),
        (2000.0, "2k"),
        (1500.0, "1500"),
        (10000.0, "10k"),
        (1e6, "1M"),
        (2.5e9, "2500M"),
        (1e9, "1G"),
        (3e12, "3T"),
        (1e15, "1P"),
        (-2000.0, "-2k"),
        (-2.0, "-2"),
        (0.0005, "1m"),
        (-0.0005, "-1m"),
        (-0.0004, "0"),
        (0.0004999, "0"),
        (0.001, "1m"),
        (0.01, "10m"),
        (2.675, "2675m"),  # repr is "2.675", although the binary float is just below
        (1.0005, "1001m"),
        (123456.789, "123456789m"),
        (123456.0, "123456"),
        (9007199254740993.0, "9007199254740992"),  # the float itself is ...992
        # beyond int64 milli-units (no Go server can render these): exact, suffix E at most
        (1e20, "100E"),
        (1e-20, "0"),
        (5e-324, "0"),
        (1.7976931348623157e308, "17976931348623157" + "0" * 274 + "E"),
        (-1.7976931348623157e308, "-17976931348623157" + "0" * 274 + "E"),
    ],
)
def test_format_quantity_table(value: float, text: str) -> None:
    assert format_quantity(value) == text


@pytest.mark.parametrize(
    ("millis", "text"),
    [
        (1, "1m"),
        (10, "10m"),
        (100, "100m"),
        (1000, "1"),
        (1500, "1500m"),
        (10000, "10"),
        (100000, "100"),
        (1000000, "1k"),
        (1200000, "1200"),
        (12000000, "12k"),
        (2500000000000, "2500M"),
        (10**18, "1P"),
        (INT64_MAX, "9223372036854775807m"),
        (-(2**63), "-9223372036854775808m"),
        (-1000000, "-1k"),
        (10**21, "1E"),
        (10**22, "10E"),
    ],
)
def test_canonical_milli_quantity_table(millis: int, text: str) -> None:
    assert canonical_milli_quantity(millis) == text
    assert parse_quantity(text) == Decimal(millis).scaleb(-3)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, float("-nan")])
def test_format_quantity_rejects_non_finite(value: float) -> None:
    with pytest.raises(ValueError, match="cannot represent"):
        format_quantity(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
@example(-0.0)
@example(0.0005)
@example(-0.0005)
@example(1.7976931348623157e308)
@example(5e-324)
def test_format_quantity_is_valid_and_exact(value: float) -> None:
    text = format_quantity(value)
    assert QUANTITY_OUT.match(text)
    assert "e" not in text  # never an exponent (the suffix E is exa)
    assert text not in ("-0", "-0m")
    assert parse_quantity(text) == milli_rounded(value)
    # canonical: no trailing zero could fold into a larger suffix
    mantissa = text.rstrip("mkMGTPE")
    assert not (mantissa.endswith("000") and not text.endswith("E"))
    if text.startswith("-"):
        assert value < 0


# --- parse_quantity ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", "0"),
        ("-0", "0"),
        ("+0.000", "0"),
        ("1", "1"),
        ("+1", "1"),
        ("-1", "-1"),
        ("1.5", "1.5"),
        ("-1.5", "-1.5"),
        ("1.", "1"),
        (".5", "0.5"),
        ("007", "7"),
        ("500m", "0.5"),
        ("235m", "0.235"),
        ("10500m", "10.5"),
        ("100n", "0.0000001"),
        ("1u", "0.000001"),
        ("2k", "2000"),
        ("1M", "1000000"),
        ("1G", "1e9"),
        ("1T", "1e12"),
        ("1P", "1e15"),
        ("1E", "1e18"),  # a lone E is the exa suffix, not an exponent
        ("1Ki", "1024"),
        ("1.5Ki", "1536"),
        ("0.1Ki", "102.4"),
        ("1Mi", str(2**20)),
        ("1Gi", str(2**30)),
        ("1Ti", str(2**40)),
        ("1Pi", str(2**50)),
        ("1Ei", str(2**60)),
        ("7Ei", str(7 * 2**60)),
        ("8Ei", str(INT64_MAX)),  # binary SI is capped at 2^63-1, as Go does
        ("-8Ei", str(-INT64_MAX)),
        ("1e3", "1000"),
        ("1E3", "1000"),
        ("1e+3", "1000"),
        ("1e-3", "0.001"),
        ("1.5e1", "15"),
        ("1e0", "1"),
        ("1e2147483647", "1e2147483647"),
        # finer than 1n: rounded away from zero to the next nano, as ParseQuantity does
        ("1e-10", "1e-9"),
        ("-1e-10", "-1e-9"),
        ("0.0000000001", "1e-9"),
        ("1.0000000001", "1.000000001"),
        ("1.5n", "2e-9"),
        ("0.1n", "1e-9"),
        ("1e-2147483648", "1e-9"),
        ("100000000000000000000", "1e20"),  # plain digits beyond int64 are fine
        ("-12345678901234567890123456789012345.5", "-12345678901234567890123456789012345.5"),
        ("0" * 2000 + "1", "1"),
        ("9" * 1000 + "e-1000", "1"),
        ("1" + "0" * 999 + "e-999", "1"),
    ],
)
def test_parse_quantity_table(text: str, value: str) -> None:
    parsed = parse_quantity(text)
    assert parsed == Decimal(value)
    assert not parsed.is_signed() or parsed < 0  # never a negative zero


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        " 1",
        "1 ",
        "1\n",
        ".",
        "+",
        "-",
        "+.",
        "m",
        "Ki",
        "1e",
        "1e+",
        "1e1.5",
        "1.2.3",
        "--1",
        "+-1",
        "1K",
        "1KiB",
        "1ki",
        "1mi",
        "1i",
        "1mm",
        "1k1",
        "1,5",
        "1_000",
        "0x10",
        "١",  # a non-ASCII digit
        "1e2147483648",
        "1e-2147483649",
        "1" * 1001,
        "0." + "1" * 1001,
        "NaN",
        "Inf",
        "abc",
    ],
)
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(text)


@settings(max_examples=300)
@given(st.text(alphabet="0123456789.+-eEinumkKMGTP ", max_size=12))
def test_parse_quantity_raises_only_value_error(text: str) -> None:
    try:
        value = parse_quantity(text)
    except ValueError:
        return
    assert value.is_finite()


@given(st.integers(min_value=-(10**30), max_value=10**30), st.integers(-12, 20))
def test_parse_quantity_exponent_forms_agree(mantissa: int, exponent: int) -> None:
    expected = Decimal(f"{mantissa}e{exponent}")
    if exponent >= -9:
        assert parse_quantity(f"{mantissa}e{exponent}") == expected
        assert parse_quantity(f"{mantissa}E{exponent:+d}") == expected
    if exponent in (-9, -6, -3, 0, 3, 6, 9, 12, 15, 18):
        suffix = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G"}
        suffix |= {12: "T", 15: "P", 18: "E"}
        assert parse_quantity(f"{mantissa}{suffix[exponent]}") == expected


# --- milli_value ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("0", 0),
        ("1", 1000),
        ("235m", 235),
        ("10500m", 10500),
        ("0.5", 500),
        ("0.1m", 1),  # rounded up
        ("1.5m", 2),
        ("1.0001m", 2),
        ("1n", 1),
        ("999999n", 1),
        ("1000001n", 2),
        ("-1.5m", -1),  # ceiling
        ("-0.1m", 0),
        ("-1500m", -1500),
        ("1Ki", 1024000),
        ("1e-3", 1),
        ("9223372036854775807m", INT64_MAX),
        ("-9223372036854775808m", -(2**63)),
        ("9223372036854775.807", INT64_MAX),
    ],
)
def test_milli_value_table(text: str, millis: int) -> None:
    assert milli_value(text) == millis


@pytest.mark.parametrize(
    "text", ["9223372036854775808m", "1e20", "8Ei", "-9223372036854775809m", "1e2147483647"]
)
def test_milli_value_overflow(text: str) -> None:
    with pytest.raises(ValueError, match="overflows an int64"):
        milli_value(text)


def test_milli_value_rejects_invalid() -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        milli_value("1 m")


@settings(max_examples=500)
@given(st.floats(min_value=-1e15, max_value=1e15, allow_nan=False))
def test_milli_value_of_formatted_float(value: float) -> None:
    # our outputs are whole milli-units, so the HPA reads exactly what we rounded to
    assert milli_value(format_quantity(value)) == int(milli_rounded(value) * 1000)


@given(st.integers(min_value=-(10**15), max_value=10**15), st.integers(0, 9))
def test_milli_value_is_ceiling(units: int, places: int) -> None:
    text = format(Decimal(units).scaleb(-places), "f")
    exact = Decimal(text) * 1000
    assert milli_value(text) == math.ceil(exact)


# --- rfc3339 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1795341600, "2026-11-22T10:00:00Z"),
        (1795341600.999, "2026-11-22T10:00:00Z"),  # truncated, not rounded
        (1.5, "1970-01-01T00:00:01Z"),
        (-0.5, "1969-12-31T23:59:59Z"),
        (-1, "1969-12-31T23:59:59Z"),
        (951782400, "2000-02-29T00:00:00Z"),
        (253402300799, "9999-12-31T23:59:59Z"),
        (-62135596800, "0001-01-01T00:00:00Z"),  # zero-padded year
    ],
)
def test_rfc3339_table(ts: float, text: str) -> None:
    assert rfc3339(ts) == text


@pytest.mark.parametrize(
    "ts", [math.nan, math.inf, -math.inf, 253402300800, -62135596801, 1e20, -1e300]
)
def test_rfc3339_rejects(ts: float) -> None:
    with pytest.raises(ValueError, match="time"):
        rfc3339(ts)


@given(st.floats(min_value=-62135596800, max_value=253402300799.5, allow_nan=False))
def test_rfc3339_round_trips_to_the_second(ts: float) -> None:
    text = rfc3339(ts)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert parsed.timestamp() == math.floor(ts)


@given(st.integers(min_value=-(2**63), max_value=INT64_MAX))
@example(10**18)
@example(-(10**15))
def test_canonical_form_keeps_the_milli_value(millis: int) -> None:
    # what the HPA parses (MilliValue) is exactly what we meant, whatever the suffix
    assert milli_value(canonical_milli_quantity(millis)) == millis
