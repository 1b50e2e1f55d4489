"""The Prometheus source's part of the catalogue: reading its rules-file blocks, its rules.

``read_block`` and ``read_metric`` are how ``adapter.rulesfile`` reads the
``prometheus`` blocks, once per load: each metric's rule is kept on its
``MetricSpec`` (``rule``). ``rules_of`` collects them for the source;
``queries_of`` is the PromQL a refresh sends for each metric (``check-config``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapter.core.catalogue import Catalogue, MetricSpec
from adapter.sources.prometheus.rules import (
    SOURCE_NAME,
    FamilyRule,
    GaugeRule,
    HistogramRule,
    PrometheusRule,
    PromLabels,
    RuleError,
    TemplateRule,
    parse_prometheus_block,
    parse_rule,
)

Problems = list[tuple[str, str]]


def _strip(problems: Problems) -> Problems:
    """Problems' key paths relative to the block (the catalogue adds where it is)."""
    return [(path.removeprefix(SOURCE_NAME).lstrip("."), message) for path, message in problems]


def read_block(raw: Mapping[str, Any]) -> tuple[PromLabels, Problems]:
    """The top-level ``prometheus:`` block: its labels and its problems (empty when valid).

    When it is invalid, the metrics are read with the default labels: its problems
    are reported once, here, not once per metric.
    """
    try:
        return parse_prometheus_block(raw), []
    except RuleError as e:
        return PromLabels(), _strip(e.problems)


def read_metric(spec: MetricSpec, labels: PromLabels) -> tuple[PrometheusRule | None, Problems]:
    """One metric's ``prometheus:`` block: its rule (None when invalid) and its problems."""
    try:
        return parse_rule(spec, labels), []
    except RuleError as e:
        return None, _strip(e.problems)


def rules_of(catalogue: Catalogue) -> list[PrometheusRule]:
    """The rules the catalogue's Prometheus metrics were read into when it was loaded.

    Never parses: a catalogue comes from ``adapter.rulesfile``, which reads every
    block once. Raises TypeError for a Prometheus metric without its rule.
    """
    rules: list[PrometheusRule] = []
    for spec in catalogue:
        if spec.source != SOURCE_NAME:
            continue
        if not isinstance(spec.rule, HistogramRule | GaugeRule | TemplateRule | FamilyRule):
            raise TypeError(f"metric {spec.name} has no Prometheus rule: load it with rulesfile")
        rules.append(spec.rule)
    return rules


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
