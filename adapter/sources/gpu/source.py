"""The GPU source: every node's collector pulled each interval, answered from memory.

Every pull interval, :meth:`GpuSource.refresh_once` asks discovery for the
collectors, pulls all their ``/snapshot`` documents concurrently (bounded, each
with its own timeout), and swaps in a new immutable store with one assignment.
``fetch`` reads only that store.

A node whose collector stops answering (or answers garbage, or a 500) keeps its
last values until the staleness bound (default three pull intervals), then its
pods are omitted: the HPA sees them as missing, never as 0. Other nodes are
unaffected. From a utilization change on a collector to ``fetch`` returning it
takes at most one interval plus one pull round.

Self metrics (``registry``):

- ``adapter_gpu_collectors{state="discovered"|"answering"}`` gauge (last round)
- ``adapter_gpu_pull_duration_seconds`` histogram: one whole pull round
- ``adapter_gpu_pull_errors_total{reason}`` counter: per collector and round
  (timeout, connection, not_ready, status, too_large, malformed, internal)
- ``adapter_gpu_snapshot_age_seconds{node,simulated}`` gauge, computed at
  scrape: seconds since the adapter received the node's current tick
- ``adapter_gpu_pods`` gauge, computed at scrape: pods with a fresh value
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adapter.core.errors import BadRequest
from adapter.core.model import MetricName, NodeName, ObjectRef, Sample, Target
from adapter.core.periodic import every
from adapter.core.ports import Clock
from adapter.core.readcache import Expiries
from adapter.core.selectors import Selector
from adapter.settings import GpuSettings
from adapter.sources.gpu import snapshot as gpu_snapshot
from adapter.sources.gpu.discovery import CollectorDiscovery
from adapter.sources.gpu.puller import DEFAULT_CONCURRENCY, REASONS, Puller, PullResult
from adapter.sources.gpu.snapshot import GpuStore, NodeEntry

__all__ = ["DEFAULT_PULL_INTERVAL", "GPU_UTILIZATION", "GpuSource"]

log = logging.getLogger(__name__)

GPU_UTILIZATION: Final = MetricName("gpu_utilization")
DEFAULT_PULL_INTERVAL: Final = 5.0
DEFAULT_TIMEOUT: Final = 2.0
_ROUND_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GpuSource:
    """:class:`adapter.core.ports.Source` for ``gpu_utilization`` (percent, 0-100).

    - pods: the pod's own value (the collector's window mean over its GPUs);
    - deployments, statefulsets and other pod groups: the mean over the
      target's pods that have a value;
    - nodes: the mean over the node's measured GPUs and MIG devices.

    ``fetch`` never returns 0 for missing data: a pod, node or group without a
    fresh value is absent from the result.
    """

    def __init__(
        self,
        discovery: CollectorDiscovery,
        *,
        pull_interval: float = DEFAULT_PULL_INTERVAL,
        staleness: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        concurrency: int = DEFAULT_CONCURRENCY,
        clock: Clock = time.time,
        registry: CollectorRegistry | None = None,
        session: aiohttp.ClientSession | None = None,
        name: str = "gpu",
    ) -> None:
        """
        :param discovery: which collectors to pull (``PodDiscovery`` or ``StaticDiscovery``).
        :param pull_interval: seconds between pull rounds.
        :param staleness: seconds a node's last values are served after the adapter
            received them; default three pull intervals.
        :param timeout: seconds per collector request.
        :param concurrency: collector requests in flight at once.
        :param clock: Unix time; injected so tests control staleness.
        :param registry: where the self metrics go (a fresh private one by default).
        :param session: an aiohttp session to pull with (owned by the caller); by
            default the source makes its own, released by :meth:`close`.
        """
        if pull_interval <= 0:
            raise ValueError("pull_interval must be positive")
        self._discovery = discovery
        self._name = name
        self._clock = clock
        self._interval = pull_interval
        self._staleness = 3 * pull_interval if staleness is None else staleness
        if self._staleness <= 0:
            raise ValueError("staleness must be positive")
        self._puller = Puller(
            timeout=timeout, clock=clock, concurrency=concurrency, session=session
        )
        self._store: GpuStore = gpu_snapshot.EMPTY
        self._version = 0  # bumped on every store swap
        self._expiries: tuple[GpuStore, Expiries] = (self._store, Expiries(()))
        self._refreshing = asyncio.Lock()
        self._failing: dict[str, str] = {}  # url -> reason, to log transitions only
        self._simulated_logged: set[NodeName] = set()
        self._discovered = 0
        self._answering = 0
        registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        self._durations = Histogram(
            "adapter_gpu_pull_duration_seconds",
            "Time of one pull round over every discovered GPU collector.",
            registry=registry,
            buckets=_ROUND_BUCKETS,
        )
        self._errors = Counter(
            "adapter_gpu_pull_errors_total",
            "Collector pulls that gave no snapshot, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in REASONS:  # every reason exported from the start, at 0
            self._errors.labels(reason=reason)
        registry.register(_StoreCollector(self))

    @classmethod
    def from_settings(
        cls,
        settings: GpuSettings,
        discovery: CollectorDiscovery,
        *,
        clock: Clock = time.time,
        registry: CollectorRegistry | None = None,
    ) -> GpuSource:
        return cls(
            discovery,
            pull_interval=settings.pull_interval,
            staleness=settings.stale_after,
            timeout=settings.timeout,
            clock=clock,
            registry=registry,
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def store(self) -> GpuStore:
        """The current store (immutable; replaced on each pull round)."""
        return self._store

    @property
    def staleness(self) -> float:
        return self._staleness

    @property
    def version(self) -> int:
        """Changes on every store swap (``VersionedSource``)."""
        return self._version

    def valid_until(self, metric: MetricName, now: float) -> float:
        """The first moment after ``now`` that a node's or pod's value held now goes stale."""
        current = self._store
        if self._expiries[0] is not current:
            times = [n.fresh_until for n in current.nodes.values()]
            times += [p.fresh_until for p in current.pods.values()]
            self._expiries = (current, Expiries(times))
        return self._expiries[1].first_at_or_after(now)

    async def fetch(
        self,
        metric: MetricName,
        targets: Sequence[Target],
        metric_selector: Selector,
    ) -> Mapping[ObjectRef, Sample]:
        if not metric_selector.empty:
            raise BadRequest(
                f"{GPU_UTILIZATION} has no metric labels to select on: "
                f"remove metricLabelSelector ({metric_selector})"
            )
        if metric != GPU_UTILIZATION:
            return {}
        return gpu_snapshot.answer(self._store, targets, self._clock())

    async def refresh_once(self) -> None:
        """Pull every discovered collector once and swap in the new store.

        A collector that fails keeps its node's previous values, which expire
        on their own at the staleness bound. Never raises for a collector's failure.
        """
        async with self._refreshing:
            started = time.perf_counter()
            endpoints = self._discovery.collectors()
            results = await self._puller.pull_all(endpoints)
            previous = self._store
            fresh = [self._accept(result, previous) for result in results]
            self._store = gpu_snapshot.build(
                previous, (e for e in fresh if e is not None), self._clock()
            )
            self._version += 1
            self._discovered = len(endpoints)
            self._answering = sum(e is not None for e in fresh)
            self._durations.observe(time.perf_counter() - started)

    async def run(self) -> None:
        """Pull every interval until cancelled. A failed round is logged, not fatal."""
        await every(self._interval, self.refresh_once, what="GPU collector pull round")

    async def close(self) -> None:
        """Release the HTTP session (when the source made it)."""
        await self._puller.close()

    def snapshot_age(self, node: NodeName) -> float | None:
        """Seconds since the adapter received the node's current tick, or None if unknown."""
        current = self._store.nodes.get(node)
        return None if current is None else self._clock() - current.seen_at

    def _accept(self, result: PullResult, previous: GpuStore) -> NodeEntry | None:
        url = result.endpoint.url
        if result.error is not None or result.snapshot is None:
            reason = result.error.reason if result.error is not None else "internal"
            self._errors.labels(reason=reason).inc()
            if self._failing.get(url) != reason:
                log.warning(
                    "GPU collector %s: %s; its node keeps its last values for up to %gs",
                    url,
                    result.error,
                    self._staleness,
                )
                self._failing[url] = reason
            return None
        if self._failing.pop(url, None) is not None:
            log.info("GPU collector %s answers again", url)
        snapshot = result.snapshot
        node = result.endpoint.node or snapshot.node
        if snapshot.simulated and node not in self._simulated_logged:
            self._simulated_logged.add(node)
            log.warning("GPU collector %s (node %s) serves SIMULATED data", url, node)
        return gpu_snapshot.entry(
            node,
            url,
            snapshot,
            result.received_at,
            previous=previous.nodes.get(node),
            staleness=self._staleness,
        )


class _StoreCollector(Collector):
    """Store gauges built fresh at each scrape: no stale label sets after a node goes."""

    def __init__(self, source: GpuSource) -> None:
        self._source = source

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: the label sets vary with the nodes

    def collect(self) -> Iterator[Metric]:
        source = self._source
        current = source.store
        now = source._clock()  # the same clock as the source's
        collectors = GaugeMetricFamily(
            "adapter_gpu_collectors",
            "GPU collectors in the last pull round: discovered, and answering with a snapshot.",
            labels=["state"],
        )
        collectors.add_metric(["discovered"], source._discovered)
        collectors.add_metric(["answering"], source._answering)
        age = GaugeMetricFamily(
            "adapter_gpu_snapshot_age_seconds",
            "Seconds since the adapter received the node's current GPU snapshot.",
            labels=["node", "simulated"],
        )
        for node, node_entry in sorted(current.nodes.items()):
            simulated = "true" if node_entry.snapshot.simulated else "false"
            age.add_metric([node, simulated], now - node_entry.seen_at)
        pods = GaugeMetricFamily("adapter_gpu_pods", "Pods with a fresh GPU utilization value.")
        pods.add_metric([], sum(1 for p in current.pods.values() if p.fresh_until >= now))
        yield collectors
        yield age
        yield pods
