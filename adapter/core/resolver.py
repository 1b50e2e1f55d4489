"""From a parsed metric read to the values to serve: the heart of the request path.

All data comes from memory: the pod index and the sources' snapshots. The
resolver decides *which objects* are answered (live pods that match the
selector, eligible under the serving policy) and asks the metric's source for
their values. It never invents a value: an object without one is left out of a
list, and a named object without one is a 404.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import cast

from adapter.core.catalogue import Catalogue, MetricSpec, ServingPolicy
from adapter.core.errors import NotFound, SourceError, metric_not_found
from adapter.core.model import (
    DEPLOYMENTS,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    STATEFULSETS,
    MetricValue,
    Namespace,
    NodeName,
    ObjectRef,
    PodInfo,
    PodName,
    ResourceKind,
    Scope,
    Target,
)
from adapter.core.ports import (
    Clock,
    PodLister,
    Recorder,
    Source,
    VersionedPods,
    VersionedSource,
)
from adapter.core.readcache import Answer, ReadCache, Render, State, valid
from adapter.core.request import MetricPath
from adapter.core.selectors import EVERYTHING, Selector

# Reasons a pod is left out, as exported in adapter_pods_omitted_total{reason}.
NOT_READY = "not_ready"
WARMING_UP = "warming_up"
NO_VALUE = "no_value"


class Resolver:
    """Answers metric reads. ``catalogue`` is a getter so live reloads take effect at once.

    Answers to reads without a metricLabelSelector are kept in a
    :class:`~adapter.core.readcache.ReadCache` that this resolver owns; its
    docstring states the one invalidation rule. ``clock`` must be the clock the
    sources use, so that ``valid_until`` means the same moment to both.
    """

    def __init__(
        self,
        catalogue: Callable[[], Catalogue],
        pods: PodLister,
        sources: Mapping[str, Source],
        clock: Clock,
        recorder: Recorder,
        *,
        cache: ReadCache | None = None,
    ) -> None:
        self._catalogue = catalogue
        self._pods = pods
        self._sources = sources
        self._clock = clock
        self._recorder = recorder
        self._cache = ReadCache() if cache is None else cache
        # Versioned pods and sources can be cached; anything else is always computed.
        self._versioned_pods = pods if isinstance(pods, VersionedPods) else None
        self._versioned_sources: dict[int, tuple[Source, bool]] = {}

    async def resolve(
        self, path: MetricPath, label_selector: Selector, metric_selector: Selector
    ) -> list[MetricValue]:
        """The values for ``path``, sorted by object name (see :meth:`answer`)."""
        return list((await self.answer(path, label_selector, metric_selector)).values)

    async def answer(
        self, path: MetricPath, label_selector: Selector, metric_selector: Selector
    ) -> Answer:
        """The answer to a read: its values sorted by object name, and its rendered bodies.

        For a named object the answer has exactly one value, or NotFound is raised.
        Raises NotFound for metrics the catalogue does not serve for the resource,
        BadRequest for selectors a source cannot apply, InternalError-mapped
        SourceError when the source cannot answer at all. Every read, cached or
        not, is reported to the recorder exactly as computed.
        """
        catalogue = self._catalogue()
        spec, _ = _lookup(catalogue, path)
        source = self._sources.get(spec.source)
        if source is None:
            raise SourceError(f"source {spec.source!r} of metric {spec.name} is not configured")
        now = self._clock()
        state = self._state(catalogue, source) if metric_selector.empty else None
        key = (path.resource, path.name, path.metric, path.namespace, path.namespace_metric)
        cache_key = (key, label_selector)
        answer = None if state is None else self._cache.get(cache_key, state, now)
        if answer is None:
            answer = await self.compute(catalogue, path, label_selector, metric_selector)
            if state is not None and state.same(self._state(catalogue, source)):
                self._cache.put(cache_key, state, self._clock(), answer, (path, label_selector))
        self._record(spec, answer)
        if not path.wildcard and not answer.values:
            raise metric_not_found(
                spec.name, path.resource, path.name, str(metric_selector) or None
            )
        return answer

    async def compute(
        self,
        catalogue: Catalogue,
        path: MetricPath,
        label_selector: Selector,
        metric_selector: Selector,
    ) -> Answer:
        """The uncached path: the answer from the pod index and the source, right now.

        Records nothing and raises nothing for an empty answer (:meth:`answer`
        does both). ``valid_until`` is when it could change with no event: the
        first warm-up to end among the pods it left out, or the source's first
        value to go stale.
        """
        spec, kind = _lookup(catalogue, path)
        source = self._sources.get(spec.source)
        if source is None:
            raise SourceError(f"source {spec.source!r} of metric {spec.name} is not configured")
        now = self._clock()
        in_scope = self._in_scope(path, kind, label_selector)
        eligible, omitted, warm_until = _eligible(catalogue.policy, now, in_scope)
        targets = _targets(kind, path, eligible)
        samples = await source.fetch(spec.name, targets, metric_selector)
        selector_text = str(metric_selector) or None
        values = tuple(
            MetricValue(
                obj=t.obj, metric=spec.name, sample=samples[t.obj], metric_selector=selector_text
            )
            for t in targets
            if t.obj in samples
        )
        if len(targets) > len(values):
            omitted[NO_VALUE] = len(targets) - len(values)
        valid_until = warm_until
        if isinstance(source, VersionedSource):
            valid_until = min(valid_until, source.valid_until(spec.name, now))
        return Answer(values, dict(omitted), valid_until)

    async def warm(self, render: Render, *, recent: float = 120.0) -> int:
        """Recompute, ahead of the next read, every cached read whose state has changed.

        Only reads made in the last ``recent`` seconds are kept warm (older ones
        are dropped), with the bodies they were served in. Nothing is recorded:
        the self metrics count reads, not recomputations. Returns how many
        answers were recomputed. Run after every refresh (``adapter.app`` runs it
        every second), so an HPA's next read is a lookup.
        """
        recomputed = 0
        for key, entry in self._cache.items():
            now = self._clock()
            if now - entry.last_read > recent or entry.origin is None:
                self._cache.discard(key)
                continue
            path, label_selector = cast("tuple[MetricPath, Selector]", entry.origin)
            catalogue = self._catalogue()
            try:
                spec, _ = _lookup(catalogue, path)
            except NotFound:
                self._cache.discard(key)
                continue
            source = self._sources.get(spec.source)
            state = None if source is None else self._state(catalogue, source)
            if state is None:
                self._cache.discard(key)
                continue
            if valid(entry, state, now):
                continue
            try:
                answer = await self.compute(catalogue, path, label_selector, EVERYTHING)
            except SourceError:
                self._cache.discard(key)
                continue
            for version in entry.answer.bodies:
                answer.body(version, render)
            if source is not None and state.same(self._state(catalogue, source)):
                self._cache.put(key, state, self._clock(), answer, entry.origin, read=False)
                recomputed += 1
            await asyncio.sleep(0)  # one answer at a time: reads go in between
        return recomputed

    def _state(self, catalogue: Catalogue, source: Source) -> State | None:
        """The state a cached answer must match, or None when it cannot be versioned."""
        versioned = self._versioned_sources.get(id(source))
        if versioned is None or versioned[0] is not source:  # a Protocol check is slow: once
            versioned = (source, isinstance(source, VersionedSource))
            self._versioned_sources[id(source)] = versioned
        if self._versioned_pods is None or not versioned[1]:
            return None
        return State(
            catalogue, self._versioned_pods.generation, cast("VersionedSource", source).version
        )

    def _in_scope(
        self, path: MetricPath, kind: ResourceKind, selector: Selector
    ) -> Iterator[tuple[str, PodInfo]]:
        """(object name, pod) for every live pod that matches the selector and makes up
        an object the path asks for. Only these are counted when left out."""
        candidates: Iterable[PodInfo]
        if kind is PODS and path.namespace is not None and not path.wildcard:
            pod = self._pods.get(path.namespace, PodName(path.name))
            candidates = () if pod is None else (pod,)
        elif path.namespace is not None:
            candidates = self._pods.in_namespace(path.namespace)
        elif kind is NODES and not path.wildcard:
            candidates = self._pods.on_node(NodeName(path.name))
        else:
            candidates = self._pods.all()
        for pod in candidates:
            if not pod.live or not selector.matches(pod.labels):
                continue
            name = object_name(pod, kind)
            if name is not None and (path.wildcard or name == path.name):
                yield name, pod

    def _record(self, spec: MetricSpec, answer: Answer) -> None:
        for reason, count in answer.omitted.items():
            self._recorder.omitted(spec.name, reason, count)
        self._recorder.served(answer.values)


def _lookup(catalogue: Catalogue, path: MetricPath) -> tuple[MetricSpec, ResourceKind]:
    """The metric's spec and the resource kind the path names; NotFound when not served."""
    spec = catalogue.lookup(path.metric, path.resource, path.name)
    kind = next(rk for rk in spec.resources if str(rk.group_resource) == path.resource)
    if kind.scope is Scope.CLUSTER and path.namespace is not None and not path.namespace_metric:
        raise metric_not_found(spec.name, path.resource, None if path.wildcard else path.name)
    return spec, kind


def _eligible(
    policy: ServingPolicy, now: float, in_scope: Iterable[tuple[str, PodInfo]]
) -> tuple[list[tuple[str, PodInfo]], dict[str, int], float]:
    """The pods the serving policy lets carry a value, how many were left out (by
    reason), and the first moment a pod left out warming up becomes eligible."""
    eligible: list[tuple[str, PodInfo]] = []
    omitted: dict[str, int] = defaultdict(int)
    warm_until = math.inf
    for name, pod in in_scope:
        if policy.omit_unready:
            if not pod.ready:
                omitted[NOT_READY] += 1
                continue
            if pod.ready_since is not None and now - pod.ready_since < policy.warmup_seconds:
                omitted[WARMING_UP] += 1
                ends = pod.ready_since + policy.warmup_seconds
                warm_until = min(warm_until, _a_little_before(ends))
                continue
        eligible.append((name, pod))
    return eligible, omitted, warm_until


def _a_little_before(moment: float) -> float:
    """``moment`` minus a margin far above float rounding: ``now - ready_since < warmup``
    and ``now < ready_since + warmup`` may disagree in the last bits, and a cached
    answer must expire no later than the uncached one would change."""
    return moment - abs(moment) * 1e-12 - 1e-9


def _targets(kind: ResourceKind, path: MetricPath, pods: list[tuple[str, PodInfo]]) -> list[Target]:
    """One target per object, sorted by (namespace, name). A root-scoped read of a
    namespaced resource (``pods/*/m``) spans every namespace, as ``/api/v1/pods`` does."""
    if kind is PODS:  # the HPA's hot path: one pod per target, no grouping
        return [
            Target(ObjectRef(PODS, pod.name, pod.namespace), (pod,))
            for _, pod in sorted(pods, key=_by_pod_key)
        ]
    groups: dict[tuple[Namespace | None, str], list[PodInfo]] = defaultdict(list)
    for name, pod in pods:
        namespace = None if kind.scope is Scope.CLUSTER else pod.namespace
        groups[(namespace, name)].append(pod)
    return [
        Target(ObjectRef(kind, name, namespace), tuple(members))
        for (namespace, name), members in sorted(groups.items(), key=_by_namespace_and_name)
    ]


def object_name(pod: PodInfo, kind: ResourceKind) -> str | None:
    """The name of the ``kind`` object ``pod`` is part of: itself, its namespace,
    or its workload or node (:func:`workload_of`)."""
    if kind is PODS:
        return pod.name
    if kind is NAMESPACES:
        return pod.namespace
    return workload_of(pod, kind)


def workload_of(pod: PodInfo, kind: ResourceKind) -> str | None:
    """The name of the ``kind`` object ``pod`` belongs to, or None.

    Deployments own pods through a ReplicaSet named ``<deployment>-<pod-template-hash>``;
    the hash is also the pod's ``pod-template-hash`` label, which names the
    deployment without watching ReplicaSets. Nodes "own" the pods scheduled there.
    """
    if kind is NODES:
        return pod.node_name
    owner = pod.owner
    if owner is None:
        return None
    if kind is STATEFULSETS:
        return owner.name if owner.kind == "StatefulSet" else None
    if kind is REPLICASETS:
        return owner.name if owner.kind == "ReplicaSet" else None
    if kind is DEPLOYMENTS and owner.kind == "ReplicaSet":
        template_hash = pod.labels.get("pod-template-hash")
        suffix = f"-{template_hash}"
        if template_hash and owner.name.endswith(suffix):
            return owner.name[: -len(suffix)]
    return None


def _by_pod_key(item: tuple[str, PodInfo]) -> tuple[str, str]:
    return (item[1].namespace, item[1].name)


def _by_namespace_and_name(
    item: tuple[tuple[Namespace | None, str], list[PodInfo]],
) -> tuple[str, str]:
    (namespace, name), _ = item
    return (namespace or "", name)
