"""What the Prometheus source knows about a metric, for ``explain``.

Reads the source's current snapshot only (no query is sent): the rule's exact
PromQL (for a built-in read from server families, each family's query, in the
order of precedence), its form, window and, when the rule carries them, its server family and
preset; per pod, why there is no value: ``nan`` (the pod is in the snapshot
without a finite value, e.g. a histogram without traffic in the window),
``stale`` (its last value is past the staleness bound) or ``no_value``.

``family_winners`` is ``check-config --prometheus-url``'s one refresh (it does query).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adapter.core.catalogue import Catalogue
from adapter.core.explain import NAN, STALE
from adapter.core.model import MetricName, PodInfo
from adapter.core.resolver import NO_VALUE
from adapter.core.selectors import EVERYTHING, Selector
from adapter.sources.prometheus.catalogue import rules_of
from adapter.sources.prometheus.promql import PromQLError, matchers_from_selector
from adapter.sources.prometheus.rules import FamilyRule, GaugeRule, HistogramRule
from adapter.sources.prometheus.source import PrometheusSource
from adapter.sources.prometheus.transport import PrometheusClient, TransportOptions

# Facts a rule or a pod's snapshot entry may carry (server families and presets).
_FACTS = ("family", "preset")


class PrometheusDiagnoser:
    """:class:`adapter.core.explain.Diagnoser` over a :class:`PrometheusSource`."""

    def __init__(self, source: PrometheusSource) -> None:
        self._source = source

    def describe(
        self, metric: MetricName, now: float, metric_selector: Selector = EVERYTHING
    ) -> Mapping[str, Any]:
        rule = self._source.rules.get(metric)
        if rule is None:
            return {}
        try:
            # A metricLabelSelector becomes matchers of the queries actually sent.
            extra = matchers_from_selector(metric_selector)
        except PromQLError:
            extra = ()  # the read itself answers 400 for such a selector
        snap = self._source.snapshot.get(metric)
        sent: dict[str, Any]
        if isinstance(rule, FamilyRule):
            # one query per server family, in the order a pod's first family with data wins
            sent = {"form": "families", "queries": dict(rule.queries(extra))}
        else:
            form = (
                "histogram"
                if isinstance(rule, HistogramRule)
                else "gauge"
                if isinstance(rule, GaugeRule)
                else "query"
            )
            sent = {"form": form, "query": rule.query(extra)}
        facts: dict[str, Any] = {
            **sent,
            "windowSeconds": rule.window_seconds,
            "snapshotAgeSeconds": None if snap is None else round(now - snap.fetched_at, 3),
            "snapshotPods": None if snap is None else snap.samples,
            "dropped": {} if snap is None else dict(snap.dropped),
        }
        # Server families and presets (when rules carry them) are shown as they are.
        for name in _FACTS:
            value = getattr(rule, name, None)
            if value is not None:
                facts[name] = str(value)
        return facts

    def pod_facts(
        self, metric: MetricName, pods: Sequence[PodInfo], now: float
    ) -> Mapping[tuple[str, str], Mapping[str, Any]]:
        """``family``/``preset`` of each pod's snapshot entry, where the source records one."""
        snap = self._source.snapshot.get(metric)
        if snap is None:
            return {}
        facts: dict[tuple[str, str], Mapping[str, Any]] = {}
        for pod in pods:
            value = snap.pods.get(pod.key)
            found = {
                name: str(getattr(value, name))
                for name in _FACTS
                if getattr(value, name, None) is not None
            }
            if found:
                facts[pod.key] = found
        return facts

    def diagnose(
        self, metric: MetricName, pods: Sequence[PodInfo], now: float
    ) -> Mapping[tuple[str, str], str]:
        snap = self._source.snapshot.get(metric)
        reasons: dict[tuple[str, str], str] = {}
        for pod in pods:
            value = None if snap is None else snap.pods.get(pod.key)
            if value is None:
                reasons[pod.key] = NO_VALUE
            elif value.sample is None:
                reasons[pod.key] = NAN
            elif value.fresh_until < now:
                reasons[pod.key] = STALE
            else:
                reasons[pod.key] = NO_VALUE
        return reasons


async def family_winners(
    catalogue: Catalogue, url: str, query_timeout: float
) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """One refresh of the catalogue's Prometheus rules: per metric, the pods each family won.

    For ``check-config --prometheus-url``. A metric whose queries failed is left
    out (the refresh logs why).
    """
    client = PrometheusClient(TransportOptions(url=url, timeout=query_timeout))
    try:
        source = PrometheusSource(client, rules_of(catalogue))
        await source.refresh_once()
        return {
            str(metric): {
                family: [(str(ns), str(pod)) for ns, pod in pods]
                for family, pods in snap.by_family().items()
            }
            for metric, snap in source.snapshot.items()
        }
    finally:
        client.close()
