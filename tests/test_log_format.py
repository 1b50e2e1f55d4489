"""Both programs log the same JSON keys, so one log pipeline parses the adapter and the collector."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from adapter.cli import JsonFormatter as AdapterFormatter
from collectors.gpu.cli import JsonFormatter as CollectorFormatter

FORMATTERS = [AdapterFormatter, CollectorFormatter]


def _record(*, fields: dict[str, object] | None = None, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    record = logging.LogRecord(
        "adapter.access", logging.WARNING, __file__, 1, "GET %s %d", ("/x", 200), exc_info
    )
    record.created = 1_796_169_600.25  # 2026-12-02T00:00:00.250Z
    if fields is not None:
        record.fields = fields
    return record


@pytest.mark.parametrize("formatter", FORMATTERS)
def test_keys_and_values(formatter: type[logging.Formatter]) -> None:
    line = formatter().format(_record(fields={"user": "alice", "status": 200}))
    assert json.loads(line) == {
        "time": "2026-12-02T00:00:00.250Z",
        "level": "warning",
        "logger": "adapter.access",
        "msg": "GET /x 200",
        "user": "alice",
        "status": 200,
    }
    assert list(json.loads(line)) == ["time", "level", "logger", "msg", "user", "status"]


@pytest.mark.parametrize("formatter", FORMATTERS)
def test_a_traceback_is_one_key_of_one_line(formatter: type[logging.Formatter]) -> None:
    line = formatter().format(_record(exc=True))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["exc"].startswith("Traceback (most recent call last):")
    assert entry["exc"].endswith("RuntimeError: boom")


def test_both_programs_write_the_same_line() -> None:
    for record in (_record(), _record(fields={"node": "gpu-1"}), _record(exc=True)):
        assert AdapterFormatter().format(record) == CollectorFormatter().format(record)
