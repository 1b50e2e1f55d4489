"""The GPU source's part of the catalogue: reading its rules-file blocks.

The ``gpu`` blocks (top-level and per metric) take no options; ``adapter.rulesfile``
reads them with these functions. There is no parsed rule to keep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapter.core.catalogue import MetricSpec


def read_block(raw: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[tuple[str, str]]]:
    """One problem per key: the gpu source takes no options."""
    return raw, [(str(key), "unknown key (the gpu source takes no options)") for key in raw]


def read_metric(spec: MetricSpec, _block: object) -> tuple[None, list[tuple[str, str]]]:
    """The metric's ``gpu:`` block, read as the top-level one; no rule is kept."""
    return None, read_block(spec.options)[1]
