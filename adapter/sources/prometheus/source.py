"""The Prometheus source: periodic snapshots, answered from memory.

Every refresh interval, :meth:`PrometheusSource.refresh_once` runs one query
per rule across the whole cluster (concurrently, bounded by the transport),
builds a new immutable snapshot keyed by (namespace, pod) and swaps it in with
one assignment. Requests read only that snapshot, so the number of PromQL
queries per minute is ``queries * 60 / interval`` whatever the number of HPAs
and pods, where a family rule (built-in metrics) sends one query per server
family and every other rule one query.

A query whose last answer was large is sent as several shards at once, split
by the pod name's last character (``adapter.sources.prometheus.shards``: the
contract, when it splits, how a failed shard counts), so decoding the first
answers overlaps Prometheus' evaluation of the others; the shards' answers are
joined into the one answer and the snapshot is built once.

When a rule's query fails its previous values are kept, each until it is
older than the staleness bound (default three intervals), then they are
gone: the HPA sees a missing metric, never a 0. The log says which: values
kept (and until when), or none left to serve.

A non-empty metricLabelSelector costs one query for (rule, selector), cached
for one interval and shared by concurrent identical requests (singleflight).
Such queries have a budget of their own, apart from the refresh:

- they go through ``selector_api`` (its own threads and a short timeout);
- at most ``selector_concurrency`` distinct ones run at once; one more is
  refused at once with 429 (``TooManyRequests``);
- while Prometheus is known to be failing (the last query, refresh or
  selector, found it unreachable, past its deadline, or answering 5xx) they
  fail fast with 503 (``ServiceUnavailable``) without a query; the next
  successful refresh clears that, so they work again within one interval of
  Prometheus recovering;
- a failed query is a 503, never a 500.

Self metrics (``registry``):

- ``adapter_prometheus_query_duration_seconds{metric}`` histogram
- ``adapter_prometheus_query_errors_total{metric}`` counter
- ``adapter_prometheus_snapshot_age_seconds{metric}`` gauge, computed at scrape
- ``adapter_prometheus_snapshot_samples{metric}`` gauge: pods with a value
- ``adapter_prometheus_snapshot_dropped{metric,reason}`` gauge: series or pods
  left out of the last snapshot (nan, inf, unattributed, bad_le,
  no_timestamp, duplicate, stale, shadowed: a later family also had the pod)
- ``adapter_prometheus_family_pods{metric,family}`` gauge: pods each server
  family won in the last snapshot (built-in metrics read from families)
- ``adapter_prometheus_refresh_queries{metric}`` gauge: PromQL queries the
  metric's next refresh sends (one per query, or per family; more where a
  large answer is split into shards)
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Final

from cachetools import TTLCache
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adapter.core.errors import BadRequest, ServiceUnavailable, SourceError, TooManyRequests
from adapter.core.model import MetricName, ObjectRef, Sample, Target
from adapter.core.periodic import every
from adapter.core.ports import Clock
from adapter.core.readcache import Expiries
from adapter.core.selectors import Selector
from adapter.settings import PrometheusSettings
from adapter.sources.prometheus import snapshot
from adapter.sources.prometheus.promql import LabelMatcher, PromQLError, matchers_from_selector
from adapter.sources.prometheus.rules import FamilyRule, PrometheusRule
from adapter.sources.prometheus.shards import (
    DEFAULT_MAX_SHARDS,
    DEFAULT_SERIES_PER_SHARD,
    RuleQuery,
    ShardPlanner,
    join,
    queries_of,
    shard_matchers,
)
from adapter.sources.prometheus.snapshot import RuleSnapshot
from adapter.sources.prometheus.transport import (
    PrometheusAPI,
    PrometheusClient,
    PrometheusUnavailable,
    PromSample,
    TransportOptions,
)

__all__ = ["DEFAULT_REFRESH_INTERVAL", "PrometheusSource"]

log = logging.getLogger(__name__)

DEFAULT_REFRESH_INTERVAL: Final = 15.0
_QUERY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_SelectedKey = tuple[PrometheusRule, Selector]

UNAVAILABLE_MESSAGE: Final = (
    "Prometheus is not answering: metricLabelSelector queries cannot be served until it "
    "recovers (reads without a metricLabelSelector are served from the last snapshot)"
)
BUSY_MESSAGE: Final = "too many distinct metricLabelSelector queries in flight, try again later"


class PrometheusSource:
    """:class:`adapter.core.ports.Source` backed by Prometheus snapshots.

    ``fetch`` never returns 0 for missing data: a pod without a fresh, finite
    value is absent, and an object whose pods all lack one is absent.
    """

    def __init__(
        self,
        api: PrometheusAPI,
        rules: Iterable[PrometheusRule] = (),
        *,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        staleness: float | None = None,
        clock: Clock = time.time,
        registry: CollectorRegistry | None = None,
        selector_cache_ttl: float | None = None,
        selector_cache_size: int = 256,
        selector_api: PrometheusAPI | None = None,
        selector_concurrency: int = 8,
        name: str = "prometheus",
        after_refresh: Callable[[], object] | None = None,
        max_query_shards: int = DEFAULT_MAX_SHARDS,
        series_per_shard: int = DEFAULT_SERIES_PER_SHARD,
    ) -> None:
        """
        :param refresh_interval: seconds between refreshes (match the scrape interval).
        :param staleness: seconds a value may be served after it was sampled;
            default three refresh intervals.
        :param clock: Unix time; injected so tests control staleness and cache expiry.
        :param registry: where the self metrics go (a fresh private one by default).
        :param selector_cache_ttl: seconds a per-selector answer is reused;
            default one refresh interval.
        :param selector_api: the client for metricLabelSelector queries (its own
            threads and short timeout); default ``api``.
        :param selector_concurrency: distinct metricLabelSelector queries at once.
        :param after_refresh: called after every refresh, once the previous
            snapshots are dropped (``serve`` hands the freed heap back to the system).
        :param max_query_shards: the most shards a refresh query is split into
            (1: never split; see ``adapter.sources.prometheus.shards``).
        :param series_per_shard: the answer size, in series, per shard.
        """
        if refresh_interval <= 0:
            raise ValueError("refresh_interval must be positive")
        if selector_concurrency < 1:
            raise ValueError("selector_concurrency must be at least 1")
        self._api = api
        self._planner = ShardPlanner(max_shards=max_query_shards, series_per_shard=series_per_shard)
        self._after_refresh = after_refresh
        self._selector_api = api if selector_api is None else selector_api
        self._selector_concurrency = selector_concurrency
        self._unavailable = False
        self._name = name
        self._clock = clock
        self._interval = refresh_interval
        self._staleness = 3 * refresh_interval if staleness is None else staleness
        self._rules: Mapping[MetricName, PrometheusRule] = _by_metric(rules)
        self._owned: tuple[PrometheusClient, ...] = ()  # clients from_settings made
        self._snapshot: Mapping[MetricName, RuleSnapshot] = MappingProxyType({})
        self._version = 0  # bumped on every snapshot swap and rules update
        self._expiries: dict[MetricName, tuple[RuleSnapshot, Expiries]] = {}
        self._refreshing = asyncio.Lock()
        ttl = refresh_interval if selector_cache_ttl is None else selector_cache_ttl
        self._selected: TTLCache[_SelectedKey, RuleSnapshot] = TTLCache(
            maxsize=selector_cache_size, ttl=ttl, timer=clock
        )
        self._in_flight: dict[_SelectedKey, asyncio.Future[RuleSnapshot]] = {}
        registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        self._durations = Histogram(
            "adapter_prometheus_query_duration_seconds",
            "Time of one PromQL query, by metric.",
            ["metric"],
            registry=registry,
            buckets=_QUERY_BUCKETS,
        )
        self._errors = Counter(
            "adapter_prometheus_query_errors_total",
            "PromQL queries that failed, by metric.",
            ["metric"],
            registry=registry,
        )
        registry.register(_SnapshotCollector(self))
        self._declare_series()

    def _declare_series(self) -> None:
        """Each rule's error counter exists at 0 from the start, so rate() and alerts see it."""
        for metric in self._rules:
            self._errors.labels(metric=metric)
            self._durations.labels(metric=metric)

    @classmethod
    def from_settings(
        cls,
        settings: PrometheusSettings,
        rules: Iterable[PrometheusRule],
        *,
        clock: Clock = time.time,
        registry: CollectorRegistry | None = None,
        after_refresh: Callable[[], object] | None = None,
    ) -> PrometheusSource:
        """The source ``serve`` runs, on two clients it owns (``close()`` closes them).

        One client for the refresh, one for metricLabelSelector queries
        (``TransportOptions.for_selectors``). ``settings.url`` must be set.
        ``after_refresh`` is passed on (see the constructor).
        """
        options = TransportOptions.from_settings(settings)
        api = PrometheusClient(options)
        selector_api = PrometheusClient(options.for_selectors(settings))
        try:
            source = cls(
                api,
                rules,
                refresh_interval=settings.refresh_interval,
                staleness=settings.stale_after,
                clock=clock,
                registry=registry,
                selector_api=selector_api,
                selector_concurrency=settings.selector_concurrency,
                after_refresh=after_refresh,
                max_query_shards=settings.max_query_shards,
            )
        except BaseException:
            api.close()
            selector_api.close()
            raise
        source._owned = (api, selector_api)
        return source

    def close(self) -> None:
        """Close the clients ``from_settings`` made (clients passed in are the caller's)."""
        for client in self._owned:
            client.close()
        self._owned = ()

    @property
    def name(self) -> str:
        return self._name

    @property
    def rules(self) -> Mapping[MetricName, PrometheusRule]:
        return self._rules

    @property
    def unavailable(self) -> bool:
        """True while the last query found Prometheus not answering (fail fast)."""
        return self._unavailable

    @property
    def snapshot(self) -> Mapping[MetricName, RuleSnapshot]:
        """The current snapshot, per metric (immutable; replaced on each refresh)."""
        return self._snapshot

    def update_rules(self, rules: Iterable[PrometheusRule]) -> None:
        """Swap in a new rule set atomically. Removed metrics stop being served at
        once; new and changed rules are queried by the next refresh."""
        self._rules = _by_metric(rules)
        self._version += 1
        self._selected.clear()
        self._declare_series()

    @property
    def version(self) -> int:
        """Changes on every snapshot swap and rules update (``VersionedSource``)."""
        return self._version

    def valid_until(self, metric: MetricName, now: float) -> float:
        """The first moment after ``now`` that a value of ``metric`` held now goes stale."""
        current = self._snapshot.get(metric)
        if current is None or metric not in self._rules:  # fetch answers {} until a new version
            return math.inf
        memo = self._expiries.get(metric)
        if memo is None or memo[0] is not current:
            memo = (current, Expiries(value.fresh_until for value in current.pods.values()))
            self._expiries[metric] = memo
        return memo[1].first_at_or_after(now)

    async def fetch(
        self,
        metric: MetricName,
        targets: Sequence[Target],
        metric_selector: Selector,
    ) -> Mapping[ObjectRef, Sample]:
        rule = self._rules.get(metric)
        if rule is None:
            return {}
        if metric_selector.empty:
            current = self._snapshot.get(metric)
            if current is None:
                return {}
        else:
            current = await self._select(rule, metric_selector)
        return snapshot.answer(current, targets, self._clock())

    async def refresh_once(self) -> None:
        """Query every rule once and swap in the new snapshot.

        A rule whose query fails keeps its previous snapshot, whose values
        expire on their own at the staleness bound. Never raises SourceError.
        """
        async with self._refreshing:
            rules = list(self._rules.values())
            self._planner.retain(rules)
            previous = self._snapshot
            fresh = await asyncio.gather(
                *(self._refresh_rule(rule, previous.get(rule.metric)) for rule in rules)
            )
            self._snapshot = MappingProxyType(
                {rule.metric: snap for rule, snap in zip(rules, fresh, strict=True) if snap}
            )
            self._version += 1
            del previous, fresh
            if self._after_refresh is not None:
                self._after_refresh()

    async def run(self) -> None:
        """Refresh every interval until cancelled. A failed refresh is logged, not fatal."""
        await every(self._interval, self.refresh_once, what="Prometheus refresh")

    def snapshot_age(self, metric: MetricName) -> float | None:
        """Seconds since the metric's snapshot was fetched, or None if never."""
        current = self._snapshot.get(metric)
        return None if current is None else self._clock() - current.fetched_at

    async def _refresh_rule(
        self, rule: PrometheusRule, previous: RuleSnapshot | None
    ) -> RuleSnapshot | None:
        try:
            return await self._build(rule, planned=True)
        except SourceError:
            self._log_kept(rule, previous)
        except Exception:
            self._errors.labels(metric=rule.metric).inc()
            log.exception("building the snapshot of %s failed", rule.metric)
        return previous

    def _log_kept(self, rule: PrometheusRule, previous: RuleSnapshot | None) -> None:
        """Say what a failed refresh leaves served: values until a time, or nothing."""
        now = self._clock()
        fresh = [v.fresh_until for v in (previous.pods.values() if previous else ()) if v.sample]
        until = max((t for t in fresh if t >= now), default=None)
        if until is None:
            log.warning(
                "query for %s failed; no values left to serve (the last ones expired)",
                rule.metric,
            )
            return
        kept = sum(1 for t in fresh if t >= now)
        log.warning(
            "query for %s failed; keeping the last values of %d pods, the last until %s",
            rule.metric,
            kept,
            datetime.datetime.fromtimestamp(until, tz=datetime.UTC).isoformat(timespec="seconds"),
        )

    async def _build(
        self,
        rule: PrometheusRule,
        extra: Sequence[LabelMatcher] = (),
        api: PrometheusAPI | None = None,
        *,
        planned: bool = False,
    ) -> RuleSnapshot:
        """Query ``rule`` (one query, or one per family) and build its snapshot.

        A family rule whose queries do not all succeed raises SourceError: a
        pod must never move to a later family because an earlier one failed.
        ``api`` defaults to the refresh client (selector queries pass their own).
        ``planned``: the refresh's queries, split into shards as the planner says
        and their sizes recorded (metricLabelSelector queries are never split).
        """
        api = self._api if api is None else api
        planner = self._planner if planned else None
        vectors = await asyncio.gather(
            *(
                self._query(rule, index, query, extra, api, planner=planner)
                for index, query in enumerate(queries_of(rule))
            )
        )
        # Built in a worker thread: at 10,000 pods a build is 0.3 to 0.4 s of Python that,
        # on the event loop, would hold every read, discovery and health check that long.
        # The builders are pure (they read the vectors, share nothing); the swap stays here.
        now = self._clock()
        if isinstance(rule, FamilyRule):
            return await asyncio.to_thread(
                snapshot.build_families, rule, vectors, now, self._staleness
            )
        return await asyncio.to_thread(snapshot.build, rule, vectors[0], now, self._staleness)

    async def _query(
        self,
        rule: PrometheusRule,
        index: int,
        query: RuleQuery,
        extra: Sequence[LabelMatcher],
        api: PrometheusAPI,
        *,
        planner: ShardPlanner | None,
    ) -> Sequence[PromSample]:
        """One of the rule's queries, in shards when the planner says so: timed and,
        when it fails (any shard), counted as one query."""
        shards = 1 if planner is None else planner.shards(rule, index, query)
        exprs = [query.render((*extra, *more)) for more in shard_matchers(query.pod_label, shards)]
        started = time.perf_counter()
        try:
            parts = await asyncio.gather(
                *(api.query(expr) for expr in exprs), return_exceptions=True
            )
        finally:
            self._durations.labels(metric=rule.metric).observe(time.perf_counter() - started)
        failed = [part for part in parts if isinstance(part, BaseException)]
        for error in failed:
            if not isinstance(error, SourceError):
                raise error  # a bug or a cancellation: not a failed query
        if failed:
            self._errors.labels(metric=rule.metric).inc()
            unavailable = [e for e in failed if isinstance(e, PrometheusUnavailable)]
            self._unavailable = self._unavailable or bool(unavailable)
            raise (unavailable or failed)[0]
        self._unavailable = False
        vector = join([part for part in parts if not isinstance(part, BaseException)])
        if planner is not None:
            planner.answered(rule, index, len(vector))
        return vector

    async def _select(self, rule: PrometheusRule, selector: Selector) -> RuleSnapshot:
        key: _SelectedKey = (rule, selector)
        cached = self._selected.get(key)
        if cached is not None:
            return cached
        future = self._in_flight.get(key)
        if future is None:
            try:
                matchers = matchers_from_selector(selector)
            except PromQLError as e:
                raise BadRequest(f"invalid metricLabelSelector: {e}") from e
            if self._unavailable:
                raise ServiceUnavailable(UNAVAILABLE_MESSAGE)
            if len(self._in_flight) >= self._selector_concurrency:
                raise TooManyRequests(BUSY_MESSAGE)
            future = asyncio.ensure_future(self._query_selected(key, matchers))
            self._in_flight[key] = future
            future.add_done_callback(lambda done: self._settle(key, done))
        try:
            # Shielded: one caller giving up does not cancel the query the others wait for.
            return await asyncio.shield(future)
        except SourceError as e:
            raise ServiceUnavailable(UNAVAILABLE_MESSAGE) from e

    async def _query_selected(
        self, key: _SelectedKey, matchers: Sequence[LabelMatcher]
    ) -> RuleSnapshot:
        built = await self._build(key[0], matchers, self._selector_api)
        self._selected[key] = built
        return built

    def _settle(self, key: _SelectedKey, done: asyncio.Future[RuleSnapshot]) -> None:
        if self._in_flight.get(key) is done:
            del self._in_flight[key]
        if not done.cancelled():
            done.exception()  # retrieved: no "exception never retrieved" when nobody waits


def _by_metric(rules: Iterable[PrometheusRule]) -> Mapping[MetricName, PrometheusRule]:
    by_metric: dict[MetricName, PrometheusRule] = {}
    for rule in rules:
        if rule.metric in by_metric:
            raise ValueError(f"two rules for metric {rule.metric}")
        by_metric[rule.metric] = rule
    return MappingProxyType(by_metric)


class _SnapshotCollector(Collector):
    """Snapshot gauges built fresh at each scrape: no stale label sets after a reload."""

    def __init__(self, source: PrometheusSource) -> None:
        self._source = source

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: the label sets vary with the rules

    def collect(self) -> Iterator[Metric]:
        current = self._source.snapshot
        now = self._source._clock()  # the same clock as the source's
        age = GaugeMetricFamily(
            "adapter_prometheus_snapshot_age_seconds",
            "Seconds since the metric's snapshot was fetched from Prometheus.",
            labels=["metric"],
        )
        samples = GaugeMetricFamily(
            "adapter_prometheus_snapshot_samples",
            "Pods with a value in the metric's current snapshot.",
            labels=["metric"],
        )
        dropped = GaugeMetricFamily(
            "adapter_prometheus_snapshot_dropped",
            "Series or pods left out of the metric's current snapshot, by reason.",
            labels=["metric", "reason"],
        )
        families = GaugeMetricFamily(
            "adapter_prometheus_family_pods",
            "Pods each inference-server family won in the metric's current snapshot.",
            labels=["metric", "family"],
        )
        queries = GaugeMetricFamily(
            "adapter_prometheus_refresh_queries",
            "PromQL queries the metric's next refresh sends (more than its queries where a "
            "large answer is split into shards).",
            labels=["metric"],
        )
        for metric, rule in sorted(self._source.rules.items()):
            queries.add_metric([metric], self._source._planner.planned(rule))
        for metric, snap in sorted(current.items()):
            for family, pods in snap.by_family().items():
                if family:
                    families.add_metric([metric, family], len(pods))
            age.add_metric([metric], now - snap.fetched_at)
            samples.add_metric([metric], snap.samples)
            for reason, count in sorted(snap.dropped.items()):
                dropped.add_metric([metric, reason], count)
        yield age
        yield samples
        yield dropped
        yield families
        yield queries
