"""The Prometheus source's part of the catalogue: its rules-file checks and its rules.

``check_block`` and ``check_metric`` are the validators the composition root
registers with ``adapter.rulesfile.CatalogueHolder`` for the ``prometheus``
blocks; ``rules_of`` is the source's rules for a catalogue; ``queries_of`` the
PromQL a refresh sends for each metric (``check-config``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapter.core.catalogue import Catalogue, MetricSpec
from adapter.sources.prometheus.rules import (
    SOURCE_NAME,
    FamilyRule,
    PrometheusRule,
    PromLabels,
    RuleError,
    parse_prometheus_block,
    parse_rule,
)

Problems = list[tuple[str, str]]


def _strip(problems: Problems) -> Problems:
    """Problems' key paths relative to the block (the catalogue adds where it is)."""
    return [(path.removeprefix(SOURCE_NAME).lstrip("."), message) for path, message in problems]


def check_block(raw: Mapping[str, Any]) -> Problems:
    """The top-level ``prometheus:`` block's problems (empty when valid)."""
    try:
        parse_prometheus_block(raw)
    except RuleError as e:
        return _strip(e.problems)
    return []


def check_metric(spec: MetricSpec, settings: Mapping[str, Any]) -> Problems:
    """One metric's ``prometheus:`` block's problems, under the top-level ``settings``."""
    try:
        labels = parse_prometheus_block(settings)
    except RuleError:
        labels = PromLabels()  # the block's own problems are reported once, by check_block
    try:
        parse_rule(spec, labels)
    except RuleError as e:
        return _strip(e.problems)
    return []


def rules_of(catalogue: Catalogue) -> list[PrometheusRule]:
    """The rules of the catalogue's Prometheus metrics (a validated catalogue: never raises)."""
    labels = parse_prometheus_block(catalogue.source_settings.get(SOURCE_NAME, {}))
    return [parse_rule(spec, labels) for spec in catalogue if spec.source == SOURCE_NAME]


def queries_of(catalogue: Catalogue) -> dict[str, tuple[tuple[str, str], ...]]:
    """Per Prometheus metric, ``(family, PromQL)`` for each query a refresh sends.

    Rules without families send one query, labelled with their form.
    """
    result: dict[str, tuple[tuple[str, str], ...]] = {}
    for rule in rules_of(catalogue):
        if isinstance(rule, FamilyRule):
            result[rule.metric] = rule.queries()
        else:
            form = type(rule).__name__.removesuffix("Rule").lower()
            result[rule.metric] = ((form, rule.query()),)
    return result
