"""Durations as users write them in configs: ``500ms``, ``15s``, ``2m``, ``1h30m``."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """Return seconds. Raises ValueError for anything but a sequence of ``<number><unit>``.

    A bare number is rejected: a unit-less ``15`` is ambiguous in a config file.
    """
    compact = text.strip()
    if not compact:
        raise ValueError("empty duration")
    position = 0
    total = 0.0
    for match in _PART.finditer(compact):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(compact):
        raise ValueError(
            f"invalid duration {text!r}: use a number and a unit (ms, s, m, h, d), e.g. 15s or 2m"
        )
    return total


def format_duration(seconds: float) -> str:
    """The shortest Prometheus-compatible form of a whole number of seconds (``120`` -> ``2m``)."""
    whole = int(seconds)
    if whole != seconds or whole <= 0:
        return f"{int(seconds * 1000)}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"
