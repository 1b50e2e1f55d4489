"""The GPU source's part of the catalogue: its rules-file checks.

The ``gpu`` blocks (top-level and per metric) take no options; the composition
root registers these validators with ``adapter.rulesfile.CatalogueHolder``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapter.core.catalogue import MetricSpec


def check_block(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One problem per key: the gpu source takes no options."""
    return [(str(key), "unknown key (the gpu source takes no options)") for key in raw]


def check_metric(spec: MetricSpec, _settings: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The metric's ``gpu:`` block, checked as the top-level one."""
    return check_block(spec.options)
