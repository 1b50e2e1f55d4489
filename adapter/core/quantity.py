"""Kubernetes ``resource.Quantity`` strings and ``metav1.Time`` timestamps.

A MetricValue's ``value`` is a Quantity string. The HPA reads it with
``MilliValue()``, so precision below one milli-unit is lost anyway; values are
therefore rounded to whole milli-units and written in the canonical form Go's
``Quantity.String()`` gives them (``"235m"``, ``"10"``, ``"1k"``, ``"2500M"``).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, localcontext
from functools import lru_cache
from typing import Final

__all__ = [
    "canonical_milli_quantity",
    "format_quantity",
    "milli_value",
    "parse_quantity",
    "rfc3339",
]

_MILLI: Final = Decimal("0.001")
_INT64_MAX: Final = 2**63 - 1
_INT64_MIN: Final = -(2**63)
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
# Longer mantissas are refused: no real Quantity has them, and they would only
# cost time (Python also refuses int() of strings over 4300 digits).
_MAX_DIGITS: Final = 1000
# Enough digits for any float (about 1.8e308) at milli precision.
_FLOAT_DIGITS: Final = 400


@lru_cache(maxsize=16384)
def format_quantity(value: float) -> str:
    """Render a finite float as a Kubernetes Quantity string, canonical as Go prints it.

    Two steps, each stated so it can be checked against apimachinery:

    1. **Rounding to milli-units.** The float's shortest decimal representation
       (``Decimal(repr(value))``) is rounded to 0.001 with ROUND_HALF_UP (ties
       away from zero): 0.2345 -> 235 milli, 0.9999 -> 1000, 1.005 -> 1005,
       1e-4 -> 0. (A Go adapter computing ``int64(v * 1000)`` truncates the
       binary product instead and reads 0.2345 as 234 milli; we round the
       decimal the user sees.) The HPA reads the value back with
       ``MilliValue()``, which gives exactly this integer, since the output is
       always a whole number of milli-units.
    2. **Canonical form**, as ``resource.NewMilliQuantity(m, DecimalSI).String()``
       prints it (``AsCanonicalBytes``): trailing zeros fold into the exponent,
       which then steps down to a multiple of 3 and becomes the SI suffix
       (``m``, none, ``k``, ``M``, ``G``, ``T``, ``P``, ``E``). 1000 -> ``"1k"``,
       2.5e9 -> ``"2500M"``, 1.5 -> ``"1500m"``, 0.5 -> ``"500m"``, 10 -> ``"10"``.

    Zero (and anything that rounds to it, including -0.0) is ``"0"``, never
    ``"-0"``. Values beyond Go's int64 milli range (about 9.2e15), which a Go
    server could not represent at all, keep the largest suffix ``E`` with a
    longer mantissa: exact and valid in the Quantity grammar. No exponent form
    is ever written.

    Raises ValueError for NaN and infinities. Memoized: a snapshot's values are
    rendered again for every client that reads them.
    """
    if not math.isfinite(value):
        raise ValueError(f"a Quantity cannot represent {value!r}")
    with localcontext() as ctx:
        ctx.prec = _FLOAT_DIGITS
        rounded = Decimal(repr(value)).quantize(_MILLI, rounding=ROUND_HALF_UP)
        millis = int(rounded.scaleb(3))
    return canonical_milli_quantity(millis)


def canonical_milli_quantity(millis: int) -> str:
    """``NewMilliQuantity(millis, DecimalSI).String()``: see ``format_quantity``."""
    if millis == 0:
        return "0"
    amount, exponent = millis, -3
    while exponent < _MAX_SI_EXPONENT and amount % 10 == 0:
        amount //= 10
        exponent += 1
    # Python's % is non-negative here, so this steps down to the multiple of 3
    # below, as Go's switch on exponent % 3 does for both signs.
    step = exponent % 3
    amount *= 10**step
    exponent -= step
    return f"{amount}{_SI_SUFFIXES[exponent]}"


_MAX_SI_EXPONENT: Final = 18
_SI_SUFFIXES: Final = {-3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}


# <quantity> ::= <signedNumber><suffix>; <number> ::= digits | digits. | digits.digits | .digits
_QUANTITY_RE: Final = re.compile(
    r"(?P<sign>[+-]?)"
    r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>[KMGTPE]i|[eE][+-]?[0-9]+|[numkMGTPE]?)"
)
_DECIMAL_SI: Final = {
    "n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18,
}  # fmt: skip
_BINARY_SI: Final = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}


def parse_quantity(text: str) -> Decimal:
    """Parse a Kubernetes Quantity string into its exact value.

    Grammar (``k8s.io/apimachinery/pkg/api/resource``): an optional sign, a
    number (``1``, ``1.5``, ``1.``, ``.5``), then one suffix: decimal SI
    (``n u m k M G T P E`` or none), binary SI (``Ki Mi Gi Ti Pi Ei``) or a
    decimal exponent (``e3``, ``E-3``). No whitespace.

    As Go's ``ParseQuantity`` does, a non-zero value finer than 1n is rounded
    away from zero to the next nano, and a binary-SI value is capped at
    2^63-1 in magnitude.

    Raises ValueError for anything else, including the lone sign or dot that
    Go's lenient scanner reads as 0, exponents beyond the int32 range (which
    Go silently wraps) and mantissas of more than 1000 significant digits.
    """
    match = _QUANTITY_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid quantity {text!r}: expected [+-]<number><suffix>")
    sign, number, suffix = match.group("sign", "number", "suffix")
    whole, _, fraction = number.partition(".")
    digits = (whole + fraction).lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS:
        raise ValueError(f"invalid quantity {text[:40]!r}...: more than {_MAX_DIGITS} digits")
    exponent = -len(fraction)
    multiplier = 1
    if suffix in _BINARY_SI:
        multiplier = 1 << _BINARY_SI[suffix]
    elif suffix in _DECIMAL_SI:
        exponent += _DECIMAL_SI[suffix]
    else:  # e/E exponent
        power = int(suffix[1:])
        if not _INT32_MIN <= power <= _INT32_MAX:
            raise ValueError(f"invalid quantity {text!r}: exponent out of range")
        exponent += power
    magnitude = int(digits) * multiplier
    if magnitude == 0:
        return Decimal(0)
    if exponent < -9:
        # Round away from zero to whole nano-units, as ParseQuantity does. Integer
        # arithmetic only: a huge negative exponent must not build a huge power of 10.
        shift = -9 - exponent
        if shift > len(str(magnitude)):
            magnitude = 1
        else:
            quotient, remainder = divmod(magnitude, 10**shift)
            magnitude = quotient + (1 if remainder else 0)
        exponent = -9
    if multiplier != 1 and Decimal(f"{magnitude}E{exponent}") > _INT64_MAX:
        magnitude, exponent = _INT64_MAX, 0
    # Built from text: exact, whatever the exponent or length (arithmetic such as
    # negation would round to the context's 28 digits).
    return Decimal(f"{'-' if sign == '-' else ''}{magnitude}E{exponent}")


def milli_value(text: str) -> int:
    """The Quantity in milli-units, rounded up (ceiling), as Go's ``MilliValue()``.

    ``"235m"`` -> 235, ``"1"`` -> 1000, ``"0.1m"`` -> 1, ``"-1.5m"`` -> -1.
    For negative values that are not whole milli-units, Go's int64 fast path
    rounds away from zero instead (-2 for ``"-1.5m"``); this follows the
    documented ceiling. Raises ValueError for an invalid quantity, or one whose
    milli value does not fit in an int64 (Go silently overflows).
    """
    amount = parse_quantity(text)
    if amount.adjusted() > 18:
        raise ValueError(f"quantity {text!r} overflows an int64 in milli-units")
    with localcontext() as ctx:
        ctx.prec = 60
        millis = int(amount.scaleb(3).to_integral_value(rounding=ROUND_CEILING))
    if not _INT64_MIN <= millis <= _INT64_MAX:
        raise ValueError(f"quantity {text!r} overflows an int64 in milli-units")
    return millis


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339(ts: float) -> str:
    """Unix seconds as ``metav1.Time`` marshals them: ``"2026-11-22T10:00:00Z"``.

    UTC, second precision (fractions are dropped: the floor, as Go's
    formatting truncates), a literal ``Z``. Raises ValueError for NaN,
    infinities and times outside years 1 to 9999.
    """
    if not math.isfinite(ts):
        raise ValueError(f"not a time: {ts!r}")
    return _rfc3339_second(math.floor(ts))


@lru_cache(maxsize=4096)
def _rfc3339_second(second: int) -> str:
    """Memoized: the values of one snapshot share a handful of sample times."""
    try:
        moment = _EPOCH + timedelta(seconds=second)
    except OverflowError as exc:
        raise ValueError(f"time {second!r} is outside years 1 to 9999") from exc
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
    )
