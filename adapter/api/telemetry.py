"""The adapter's own series on ``/metrics``: HTTP traffic and exactly what was served.

``adapter_served_value`` is rebuilt on every scrape from the last value served
per (metric, kind, namespace, name), so Grafana shows what the HPA saw, and an
object nobody asked about for ``served_ttl`` seconds disappears instead of
leaving a stale label set behind.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adapter.core.model import MetricName, MetricValue
from adapter.core.ports import Clock

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True, slots=True)
class _Served:
    values: Sequence[MetricValue]
    served_at: float


class Telemetry(Collector):
    """HTTP and resolver metrics, registered on one registry (injected: tests get their own)."""

    def __init__(
        self, registry: CollectorRegistry, clock: Clock, served_ttl: float = 300.0
    ) -> None:
        self._clock = clock
        self._served_ttl = served_ttl
        # One entry per read shape (metric, kind, namespace, selector): O(1) on the
        # request path; expanded per object only when /metrics is scraped.
        self._served: dict[tuple[str, str, str, str | None], _Served] = {}
        self.requests = Counter(
            "adapter_http_requests",
            "HTTP requests answered, by route, method and status code.",
            ["route", "method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "adapter_http_request_duration_seconds",
            "Time from request to response, by route and status code.",
            ["route", "code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.omissions = Counter(
            "adapter_pods_omitted",
            "Objects left out of answers, by metric and reason "
            "(not_ready, warming_up, no_value). Never served as zero.",
            ["metric", "reason"],
            registry=registry,
        )
        self.values_served = Counter(
            "adapter_values_served",
            "Values served to clients, by metric.",
            ["metric"],
            registry=registry,
        )
        registry.register(self)

    # Recorder port -----------------------------------------------------------------
    def served(self, values: Sequence[MetricValue]) -> None:
        if not values:
            return
        first = values[0]
        self.values_served.labels(first.metric).inc(len(values))
        key = (first.metric, first.obj.kind.kind, first.obj.namespace or "", first.metric_selector)
        self._served[key] = _Served(values, self._clock())

    def omitted(self, metric: MetricName, reason: str, count: int) -> None:
        self.omissions.labels(metric, reason).inc(count)

    # prometheus_client Collector ------------------------------------------------------
    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        value = GaugeMetricFamily(
            "adapter_served_value",
            "The last value served for each object, before Quantity rounding; "
            "family: the inference server family it was read from ('' if none).",
            labels=["metric", "kind", "namespace", "name", "family"],
        )
        age = GaugeMetricFamily(
            "adapter_served_sample_age_seconds",
            "Age of the sample behind the last value served, at the time it was served.",
            labels=["metric", "kind", "namespace", "name"],
        )
        latest: dict[tuple[str, str, str, str], tuple[float, MetricValue]] = {}
        for key, served in list(self._served.items()):
            if now - served.served_at > self._served_ttl:
                self._served.pop(key, None)
                continue
            for item in served.values:
                obj = item.obj
                labels = (str(item.metric), obj.kind.kind, str(obj.namespace or ""), obj.name)
                if labels not in latest or latest[labels][0] <= served.served_at:
                    latest[labels] = (served.served_at, item)
        for labels, (served_at, item) in latest.items():
            value.add_metric([*labels, item.sample.family or ""], item.sample.value)
            age.add_metric(list(labels), max(0.0, served_at - item.sample.timestamp))
        yield value
        yield age
