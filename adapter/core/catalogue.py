"""The metric catalogue: which metrics exist, for which resources, from which source.

The catalogue drives discovery and 404s. It is immutable; a config reload
builds a new one and swaps it in (see ``adapter.rulesfile``), so a request always
sees one consistent catalogue.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from adapter.core.errors import metric_not_found
from adapter.core.model import KNOWN_RESOURCES, MetricName, ResourceKind, Scope


class Aggregation(Enum):
    """How a value for an object made of several pods is computed from its pods.

    HISTOGRAM merges the pods' bucket rates and takes the quantile of the merged
    histogram: a true fleet quantile, not a mean of per-pod quantiles.
    """

    MEAN = "mean"
    SUM = "sum"
    MAX = "max"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric of the catalogue.

    ``options`` is the metric's source-specific block, raw; the source named by
    ``source`` reads it once, when the catalogue is loaded, into ``rule``: its
    parsed form (e.g. a Prometheus rule), or None for a source that keeps none.
    ``rule`` is derived from ``options``, so it takes no part in equality.
    """

    name: MetricName
    source: str
    resources: tuple[ResourceKind, ...]
    unit: str = ""
    description: str = ""
    aggregate: Aggregation = Aggregation.MEAN
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    rule: object = field(default=None, compare=False, hash=False, repr=False)

    def serves(self, group_resource: str) -> bool:
        return any(str(rk.group_resource) == group_resource for rk in self.resources)


@dataclass(frozen=True, slots=True)
class ServingPolicy:
    """Which pods are eligible for a value at all.

    With ``omit_unready`` (the default), pods that are not Ready, or have been
    Ready for less than ``warmup_seconds``, are left out of every answer and every
    aggregate, so the HPA's missing-pod damping applies while models load.
    """

    omit_unready: bool = True
    warmup_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class DiscoveryEntry:
    """One ``<resource>/<metric>`` line of an APIResourceList."""

    name: str
    namespaced: bool


@dataclass(frozen=True)
class Catalogue:
    metrics: Mapping[MetricName, MetricSpec]
    policy: ServingPolicy = ServingPolicy()
    source_settings: Mapping[str, Any] = field(default_factory=dict)
    presets: tuple[str, ...] = ()
    """The server families the built-ins were restricted to (empty: all)."""

    def lookup(self, metric: str, group_resource: str, name: str | None = None) -> MetricSpec:
        """The spec serving ``metric`` for ``group_resource``.

        Raises the upstream-worded NotFound when the metric is unknown or not
        served for that resource (``name`` is added to the message for named reads).
        """
        spec = self.metrics.get(MetricName(metric))
        if spec is None or not spec.serves(group_resource):
            raise metric_not_found(metric, group_resource, None if name in (None, "*") else name)
        return spec

    def discovery(self) -> list[DiscoveryEntry]:
        """Every ``<resource>/<metric>`` pair, sorted, answered from memory."""
        entries = {
            DiscoveryEntry(
                name=f"{rk.group_resource}/{spec.name}", namespaced=rk.scope is Scope.NAMESPACED
            )
            for spec in self.metrics.values()
            for rk in spec.resources
        }
        return sorted(entries, key=lambda entry: entry.name)

    def __iter__(self) -> Iterator[MetricSpec]:
        return iter(self.metrics.values())


def resource_kind(group_resource: str) -> ResourceKind | None:
    """The ResourceKind for a group-resource string, or None when unsupported."""
    return KNOWN_RESOURCES.get(group_resource)
