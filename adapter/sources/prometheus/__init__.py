"""The Prometheus source: per-pod values from batched snapshots, fleet quantiles.

Data flow: ``transport`` (HTTP, off the event loop) -> ``promql`` (pure query
text) and ``rules`` (validated rule forms) -> ``snapshot`` (immutable per-rule
values, ``histogram`` math) -> ``source`` (the refresh loop and ``fetch``).
``families`` holds the inference servers' own series for the built-in metrics
(one query per family; per pod the first family with data wins). ``shards``
splits a query whose last answer was large into concurrent shards by the pod
name's last character (its contract). ``catalogue``
reads the rules file's ``prometheus`` blocks (once per load) and collects the
rules; ``PrometheusSource.from_settings`` is how ``serve`` builds the source.
"""

from adapter.sources.prometheus.rules import (
    LATENCY_P95_OPTIONS,
    QUEUE_DEPTH_OPTIONS,
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
from adapter.sources.prometheus.source import PrometheusSource
from adapter.sources.prometheus.transport import (
    PrometheusAPI,
    PrometheusClient,
    PromSample,
    TransportOptions,
)

__all__ = [
    "LATENCY_P95_OPTIONS",
    "QUEUE_DEPTH_OPTIONS",
    "FamilyRule",
    "GaugeRule",
    "HistogramRule",
    "PromLabels",
    "PromSample",
    "PrometheusAPI",
    "PrometheusClient",
    "PrometheusRule",
    "PrometheusSource",
    "RuleError",
    "TemplateRule",
    "TransportOptions",
    "parse_prometheus_block",
    "parse_rule",
]
