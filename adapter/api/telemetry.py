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
    value: float
    sample_time: float
    served_at: float


class Telemetry(Collector):
    """HTTP and resolver metrics, registered on one registry (injected: tests get their own)."""

    def __init__(
        self, registry: CollectorRegistry, clock: Clock, served_ttl: float = 300.0
    ) -> None:
        self._clock = clock
        self._served_ttl = served_ttl
        self._served: dict[tuple[str, str, str, str], _Served] = {}
        self.requests = Counter(
            "adapter_http_requests",
            "HTTP requests answered, by route, method and status code.",
            ["route", "method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "adapter_http_request_duration_seconds",
            "Time from request to response, by route.",
            ["route"],
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
        now = self._clock()
        self.values_served.labels(values[0].metric).inc(len(values))
        for value in values:
            key = (value.metric, value.obj.kind.kind, value.obj.namespace or "", value.obj.name)
            self._served[key] = _Served(value.sample.value, value.sample.timestamp, now)

    def omitted(self, metric: MetricName, reason: str, count: int) -> None:
        self.omissions.labels(metric, reason).inc(count)

    # prometheus_client Collector ------------------------------------------------------
    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        value = GaugeMetricFamily(
            "adapter_served_value",
            "The last value served for each object, before Quantity rounding.",
            labels=["metric", "kind", "namespace", "name"],
        )
        age = GaugeMetricFamily(
            "adapter_served_sample_age_seconds",
            "Age of the sample behind the last value served, at the time it was served.",
            labels=["metric", "kind", "namespace", "name"],
        )
        for key, served in list(self._served.items()):
            if now - served.served_at > self._served_ttl:
                self._served.pop(key, None)
                continue
            value.add_metric(list(key), served.value)
            age.add_metric(list(key), max(0.0, served.served_at - served.sample_time))
        yield value
        yield age
