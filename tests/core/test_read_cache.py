"""The read cache never changes an answer: cached reads equal the uncached path's.

Random interleavings of pod adds, updates (relabels, readiness flips, phase and
deletion changes) and deletes through the real pod index's watch, Prometheus
snapshot swaps (and failed refreshes), config reloads, clock steps across
warm-up ends and staleness bounds, and warm-ups run against two resolvers over
the same state: one with the read cache, one without. Every read must give the
same values, the same rendered bytes, the same NotFound, and the same telemetry.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapter.api.handlers import render_metric_value_list
from adapter.core.catalogue import Catalogue
from adapter.core.errors import NotFound
from adapter.core.model import PODS, MetricName, MetricValue, Namespace, ObjectRef, Sample
from adapter.core.readcache import Answer, Expiries, ReadCache, State
from adapter.core.request import MetricPath, parse_metric_path
from adapter.core.resolver import Resolver
from adapter.core.selectors import EVERYTHING, Selector, parse_selector
from adapter.kube.podindex import PodIndex
from adapter.rulesfile import build_catalogue
from adapter.sources.prometheus.catalogue import rules_of as prometheus_rules
from adapter.sources.prometheus.source import PrometheusSource
from adapter.sources.prometheus.transport import PromSample
from tests.fakes.clock import FakeClock
from tests.fakes.prometheus_api import FakePrometheusAPI
from tests.sources.prometheus.helpers import bucket_rows, gauge_rows

NAMESPACES = ("ml", "batch")
NAMES = ("web-h1-a", "web-h1-b", "web-h2-c", "db-0", "db-1")
LABELS = (
    {"app": "web", "pod-template-hash": "h1"},
    {"app": "web", "pod-template-hash": "h2", "tier": "gpu"},
    {"app": "db"},
    {"app": "web", "tier": "cpu", "pod-template-hash": "h1"},
)
OWNERS = (None, ("ReplicaSet", "web-h1"), ("ReplicaSet", "web-h2"), ("StatefulSet", "db"))
CONFIGS: tuple[dict[str, Any], ...] = (
    {},
    {"serving": {"omitUnready": False}},
    {"serving": {"warmup": "10s"}},
    {"metrics": [{"name": "inference_latency_p95", "prometheus": {"quantile": 0.5}}]},
)
SELECTORS = ("", "app=web", "app!=web", "app in (web,db)", "tier", "!tier", "app=web,tier=gpu")
SHAPES = (
    "namespaces/{ns}/pods/*/{metric}",
    "namespaces/{ns}/pods/{pod}/{metric}",
    "namespaces/{ns}/deployments.apps/*/{metric}",
    "namespaces/{ns}/deployments.apps/web/{metric}",
    "namespaces/{ns}/statefulsets.apps/db/{metric}",
    "pods/*/{metric}",
    "namespaces/{ns}/metrics/{metric}",
)
METRICS = ("inference_latency_p95", "inference_queue_depth")
LES = ("0.05", "0.1", "0.5", "1", "+Inf")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class EventPodsAPI:
    """A ListWatchAPI whose watch streams the events queued since the last watch."""

    def __init__(self) -> None:
        self.queued: list[dict[str, Any]] = []
        self.rv = 1

    async def list(self, **_: Any) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": "1"}, "items": []}

    async def watch(self, **_: Any) -> AsyncGenerator[dict[str, Any], None]:
        events, self.queued = self.queued, []
        for item in events:
            yield item

    def event(self, kind: str, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.queued.append({"type": kind, "object": obj})


def pod_object(ns: str, name: str, draw: PodDraw, now: float) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": ns, "name": name, "uid": f"uid-{ns}-{name}"}
    meta["labels"] = dict(LABELS[draw.labels])
    owner = OWNERS[draw.owner]
    if owner is not None:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "controller": True}
        ]
    if draw.deleting:
        meta["deletionTimestamp"] = _iso(now)
    condition = {"type": "Ready", "status": "True" if draw.ready else "False"}
    condition["lastTransitionTime"] = _iso(now - draw.ready_age)
    return {
        "metadata": meta,
        "spec": {"nodeName": f"node-{draw.node}"},
        "status": {"phase": draw.phase, "conditions": [condition]},
    }


@dataclass(frozen=True)
class PodDraw:
    labels: int
    owner: int
    ready: bool
    ready_age: float
    node: int
    phase: str
    deleting: bool


pod_draws = st.builds(
    PodDraw,
    labels=st.integers(0, len(LABELS) - 1),
    owner=st.integers(0, len(OWNERS) - 1),
    ready=st.booleans(),
    ready_age=st.sampled_from([0.0, 3.0, 9.5, 29.0, 31.0, 600.0]),
    node=st.integers(0, 1),
    phase=st.sampled_from(["Running", "Running", "Pending", "Succeeded"]),
    deleting=st.sampled_from([False, False, False, True]),
)
keys = st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(NAMES))
shapes = st.tuples(
    st.integers(0, len(SHAPES) - 1),
    keys,
    st.sampled_from(METRICS),
    st.sampled_from(SELECTORS),
    st.sampled_from(["v1beta2", "v1beta1"]),
)
# A read picks one of the few shapes of its example, so that shapes repeat (and hit).
reads = st.tuples(st.just("read"), st.integers(0, 2))
actions = st.one_of(
    reads,
    reads,
    reads,
    reads,
    st.tuples(st.just("put"), keys, pod_draws),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("value"), keys, st.none() | st.integers(0, 9), st.sampled_from([0, 5, 50])),
    st.tuples(st.just("refresh"), st.booleans()),
    st.tuples(st.just("reload"), st.integers(0, len(CONFIGS) - 1), st.booleans()),
    # Read, let time pass (across warm-up ends and staleness bounds), read again.
    st.tuples(st.just("tick"), st.integers(0, 2), st.sampled_from([1.0, 2.0, 21.0, 30.0, 46.0])),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 7.0, 21.0, 44.0, 46.0])),
    st.tuples(st.just("warm")),
)


@dataclass
class Recording:
    """A Recorder that keeps every call, to compare what two resolvers report."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def served(self, values: Sequence[MetricValue]) -> None:
        self.calls.append(("served", tuple(values)))

    def omitted(self, metric: MetricName, reason: str, count: int) -> None:
        self.calls.append(("omitted", metric, reason, count))


class World:
    """The pod index, a Prometheus source and the live catalogue, under one fake clock."""

    def __init__(self) -> None:
        self.clock = FakeClock(1_800_000_000.0)
        self.api = EventPodsAPI()
        self.pods = PodIndex(self.api)
        self.latency: dict[tuple[str, str], int] = {}
        self.queue: dict[tuple[str, str], tuple[int, int]] = {}
        self.prometheus = FakePrometheusAPI(self.answer)
        self.catalogue = self.build(0)
        self.source = PrometheusSource(
            self.prometheus,
            prometheus_rules(self.catalogue),
            refresh_interval=15.0,
            clock=self.clock,
        )
        sources = {"prometheus": self.source}
        self.cached_recorder, self.plain_recorder = Recording(), Recording()
        self.cached = Resolver(
            lambda: self.catalogue, self.pods, sources, self.clock, self.cached_recorder
        )
        self.hits = 0
        self.shapes: list[Any] = []
        self.cached_computes: list[object] = []
        compute = self.cached.compute

        async def counted(
            catalogue: Catalogue,
            path: MetricPath,
            label_selector: Selector,
            metric_selector: Selector,
        ) -> Answer:
            args = (catalogue, path, label_selector, metric_selector)
            self.cached_computes.append(args)
            return await compute(*args)

        self.cached.compute = counted  # type: ignore[method-assign]  # counts the calls it passes on
        self.plain = Resolver(
            lambda: self.catalogue,
            self.pods,
            sources,
            self.clock,
            self.plain_recorder,
            cache=ReadCache(max_entries=0),
        )

    @staticmethod
    def build(index: int) -> Catalogue:
        return build_catalogue(CONFIGS[index], "<test>", {})

    def answer(self, expr: str) -> list[PromSample]:
        now = self.clock()
        rows: list[PromSample] = []
        if "_bucket" in expr:
            for (ns, name), level in self.latency.items():
                buckets = {le: float(level * (i + 1) + i) for i, le in enumerate(LES)}
                rows += bucket_rows(ns, name, buckets, now)
        else:
            for (ns, name), (value, age) in self.queue.items():
                rows += gauge_rows(ns, name, float(value), now - age, now)
        return rows

    async def apply(self, action: tuple[Any, ...]) -> None:
        kind = action[0]
        if kind == "put":
            (ns, name), draw = action[1], action[2]
            exists = self.pods.get(ns, name) is not None
            self.api.event(
                "MODIFIED" if exists else "ADDED", pod_object(ns, name, draw, self.clock())
            )
            await self.pods.watch_once()
        elif kind == "delete":
            ns, name = action[1]
            self.api.event("DELETED", {"metadata": {"namespace": ns, "name": name}})
            await self.pods.watch_once()
        elif kind == "value":
            key, level, age = action[1], action[2], action[3]
            if level is None:
                self.latency.pop(key, None)
                self.queue.pop(key, None)
            else:
                self.latency[key] = level
                self.queue[key] = (level, age)
        elif kind == "refresh":
            self.prometheus.fail = action[1]
            await self.source.refresh_once()
            self.prometheus.fail = False
        elif kind == "reload":
            self.catalogue = self.build(action[1])
            if action[2]:  # the app's listener does; a reload must show without it too
                self.source.update_rules(prometheus_rules(self.catalogue))
        elif kind == "tick":
            await self.apply(("read", action[1]))
            self.clock.advance(action[2])
            await self.apply(("read", action[1]))
        elif kind == "advance":
            self.clock.advance(action[1])
        elif kind == "warm":
            await self.cached.warm(render_metric_value_list)
        else:
            await self.read(*self.shapes[action[1] % len(self.shapes)])

    async def read(
        self, shape: int, key: tuple[str, str], metric: str, selector: str, version: str
    ) -> None:
        ns, name = key
        raw = SHAPES[shape].format(ns=ns, pod=name, metric=metric)
        path = parse_metric_path(f"/apis/custom.metrics.k8s.io/{version}/{raw}")
        assert path is not None
        labels = parse_selector(selector)
        before = len(self.cached_computes)
        cached = await _outcome(self.cached.answer(path, labels, EVERYTHING), version)
        if len(self.cached_computes) == before:
            self.hits += 1
        plain = await _outcome(self.plain.answer(path, labels, EVERYTHING), version)
        assert cached == plain, (raw, selector)
        assert self.cached_recorder.calls == self.plain_recorder.calls


async def _outcome(answer: Any, version: str) -> tuple[Any, ...]:
    try:
        got: Answer = await answer
    except NotFound as e:
        return ("not found", str(e))
    body = got.body(version, render_metric_value_list)
    assert body == render_metric_value_list(version, got.values)
    return ("ok", tuple(got.values), body)


READY = PodDraw(0, 1, True, 600.0, 0, "Running", False)
POPULATED = [
    *(("put", (ns, name), READY) for ns in NAMESPACES for name in NAMES),
    *(
        ("value", (ns, name), i % 10, 5)
        for i, (ns, name) in enumerate((ns, name) for ns in NAMESPACES for name in NAMES)
    ),
    ("refresh", False),
]


async def run(
    steps: Sequence[tuple[Any, ...]], *, populated: bool = True, reads: Sequence[Any] = ()
) -> World:
    """A world with every pod Ready and valued (or empty), then ``steps``."""
    world = World()
    world.shapes = list(reads)
    await world.pods.list_once()
    await world.source.refresh_once()
    for step in POPULATED if populated else ():
        await world.apply(step)
    for step in steps:
        await world.apply(step)
    return world


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.lists(actions, min_size=10, max_size=80),
    st.booleans(),
    st.lists(shapes, min_size=1, max_size=3),
)
def test_every_read_equals_the_uncached_path(
    steps: list[tuple[Any, ...]], populated: bool, reads: list[Any]
) -> None:
    world = asyncio.run(run(steps, populated=populated, reads=reads))
    event(f"reads answered from the cache: {min(world.hits, 5)}+")


def test_a_repeated_read_in_an_unchanged_state_is_served_from_the_cache() -> None:
    """The property above would also hold with no cache at all: check that it caches."""

    async def scenario() -> None:
        world = await run(
            populated=False,
            steps=[
                ("put", ("ml", "web-h1-a"), PodDraw(0, 1, True, 600.0, 0, "Running", False)),
                ("value", ("ml", "web-h1-a"), 3, 0),
                ("refresh", False),
            ],
        )
        path = parse_metric_path(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/*/inference_queue_depth"
        )
        assert path is not None
        first = await world.cached.answer(path, parse_selector("app=web"), EVERYTHING)
        again = await world.cached.answer(path, parse_selector("app=web"), EVERYTHING)
        assert again is first
        assert [v.sample.value for v in first.values] == [3.0]
        # A pod event makes the next read compute afresh, and see the change.
        await world.apply(
            ("put", ("ml", "web-h1-a"), PodDraw(2, 1, True, 600.0, 0, "Running", False))
        )
        after = await world.cached.answer(path, parse_selector("app=web"), EVERYTHING)
        assert after is not first
        assert after.values == ()
        # A warm-up after a snapshot swap recomputes the entry before the next read.
        await world.apply(
            ("put", ("ml", "web-h1-a"), PodDraw(0, 1, True, 600.0, 0, "Running", False))
        )
        world.queue[("ml", "web-h1-a")] = (7, 0)
        await world.source.refresh_once()
        assert await world.cached.warm(render_metric_value_list) == 1
        warmed = await world.cached.answer(path, parse_selector("app=web"), EVERYTHING)
        assert [v.sample.value for v in warmed.values] == [7.0]
        assert warmed is await world.cached.answer(path, parse_selector("app=web"), EVERYTHING)

    asyncio.run(scenario())


def test_expiries_give_the_first_moment_at_or_after_now() -> None:
    expiries = Expiries([30.0, 10.0, 20.0, 10.0])
    assert [expiries.first_at_or_after(t) for t in (0.0, 10.0, 10.5, 20.0, 30.0, 30.5)] == [
        10.0,
        10.0,
        20.0,
        20.0,
        30.0,
        float("inf"),
    ]
    assert Expiries(()).first_at_or_after(0.0) == float("inf")


def test_the_cache_is_bounded_in_entries_and_in_values_oldest_first() -> None:
    state = State(object(), 1, 1)
    value = MetricValue(
        ObjectRef(PODS, "p", Namespace("ml")), MetricName("m"), Sample(1.0, 0.0), None
    )

    def answer(items: int) -> Answer:
        return Answer((value,) * items, {})

    cache = ReadCache(max_entries=2, max_items=10)
    cache.put("a", state, 0.0, answer(1))
    cache.put("b", state, 0.0, answer(1))
    cache.put("c", state, 0.0, answer(1))
    assert [cache.get(k, state, 1.0) is not None for k in "abc"] == [False, True, True]
    cache.put("d", state, 0.0, answer(9))  # 1 + 9 values: "b" must go
    assert [cache.get(k, state, 1.0) is not None for k in "bcd"] == [False, True, True]
    cache.put("e", state, 0.0, answer(25))  # larger than the budget alone: kept, alone
    assert [cache.get(k, state, 1.0) is not None for k in "cde"] == [False, False, True]
    assert len(cache) == 1
    assert cache.get("e", State(state.catalogue, 2, 1), 1.0) is None  # another pod generation
    assert cache.get("e", state, -1.0) is None  # before it was computed
