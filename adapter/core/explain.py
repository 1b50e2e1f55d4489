"""Why a metric read has the values it has: the server side of ``explain``.

:class:`Explainer` runs a read the way :class:`~adapter.core.resolver.Resolver`
does (same catalogue lookup, same scope, same serving policy, same grouping,
the same ``Source.fetch`` on the same snapshot), but reports every pod the
selector matches, with the value served for it or the reason it has none:

==============  ===========================================================
``deleted``     being deleted, or Succeeded/Failed: never served
``not_ready``   not Ready, left out by ``serving.omitUnready``
``warming_up``  Ready for less than ``serving.warmup``
``nan``         the source has the pod, but its value is NaN (e.g. no traffic
                in a histogram's window)
``stale``       the source's last value is older than its staleness bound
``no_value``    the source has nothing for the pod
==============  ===========================================================

It records nothing in the served-value series: an explanation is not a read
the HPA made. Sources that can say more than ``no_value`` implement
:class:`Diagnoser` (``adapter.sources.prometheus.diagnose``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from adapter.core.catalogue import Catalogue, MetricSpec, ServingPolicy
from adapter.core.errors import SourceError
from adapter.core.model import (
    NODES,
    PODS,
    MetricName,
    MetricValue,
    Namespace,
    NodeName,
    PodInfo,
    PodName,
    ResourceKind,
    Scope,
)
from adapter.core.ports import Clock, PodLister, Source
from adapter.core.request import MetricPath
from adapter.core.resolver import NO_VALUE, NOT_READY, WARMING_UP, _targets, object_name
from adapter.core.selectors import Selector

DELETED = "deleted"
NAN = "nan"
STALE = "stale"
REASONS = (DELETED, NOT_READY, WARMING_UP, NAN, STALE, NO_VALUE)


class Diagnoser(Protocol):
    """A source's account of one metric: its rule, and why pods have no value."""

    def describe(
        self, metric: MetricName, now: float, metric_selector: Selector
    ) -> Mapping[str, Any]:
        """The rule as JSON-able facts: e.g. ``query`` (the exact PromQL, with the
        read's metricLabelSelector applied), ``family``, ``preset``, ``windowSeconds``,
        ``snapshotAgeSeconds``. Empty when unknown."""
        ...

    def diagnose(
        self, metric: MetricName, pods: Sequence[PodInfo], now: float
    ) -> Mapping[tuple[str, str], str]:
        """For pods without a value: ``nan``, ``stale`` or ``no_value``, keyed by
        (namespace, name). Pods absent from the result are ``no_value``."""
        ...

    def pod_facts(
        self, metric: MetricName, pods: Sequence[PodInfo], now: float
    ) -> Mapping[tuple[str, str], Mapping[str, Any]]:
        """Per-pod facts the source knows (e.g. the inference server ``family`` or
        ``preset`` it recognised), JSON-able; pods without any are absent."""
        ...


@dataclass(frozen=True, slots=True)
class PodExplanation:
    pod: PodInfo
    object_name: str
    value: MetricValue | None
    """The value served for this pod's object (for a pods read: the pod's own)."""
    reason: str | None
    """None when served; else one of :data:`REASONS`."""
    facts: Mapping[str, Any] = field(default_factory=dict)
    """The source's per-pod facts (``Diagnoser.pod_facts``), e.g. ``family``."""


@dataclass(frozen=True, slots=True)
class Explanation:
    spec: MetricSpec
    kind: ResourceKind
    policy: ServingPolicy
    rule: Mapping[str, Any]
    pods: list[PodExplanation]
    values: list[MetricValue]
    """Exactly the items the same read would have served."""


class Explainer:
    def __init__(
        self,
        catalogue: Callable[[], Catalogue],
        pods: PodLister,
        sources: Mapping[str, Source],
        diagnosers: Mapping[str, Diagnoser],
        clock: Clock,
    ) -> None:
        self._catalogue = catalogue
        self._pods = pods
        self._sources = sources
        self._diagnosers = diagnosers
        self._clock = clock

    async def explain(
        self, path: MetricPath, label_selector: Selector, metric_selector: Selector
    ) -> Explanation:
        """Raises what ``Resolver.resolve`` raises for the same read, except that a named
        object without a value is explained (no 404)."""
        catalogue = self._catalogue()
        spec = catalogue.lookup(path.metric, path.resource, path.name)
        kind = next(rk for rk in spec.resources if str(rk.group_resource) == path.resource)
        now = self._clock()
        source = self._sources.get(spec.source)
        if source is None:
            raise SourceError(f"source {spec.source!r} of metric {spec.name} is not configured")
        in_scope = self._in_scope(path, kind, label_selector)
        reasons = {pod.key: _policy_reason(catalogue.policy, now, pod) for _, pod in in_scope}
        eligible = [(name, pod) for name, pod in in_scope if reasons[pod.key] is None]
        targets = _targets(kind, path, eligible)
        samples = await source.fetch(spec.name, targets, metric_selector)
        selector_text = str(metric_selector) or None
        values = [
            MetricValue(t.obj, spec.name, samples[t.obj], selector_text)
            for t in targets
            if t.obj in samples
        ]
        by_object = {(value.obj.namespace, value.obj.name): value for value in values}
        diagnoser = self._diagnosers.get(spec.source)
        unserved = [pod for name, pod in eligible if _key(kind, name, pod) not in by_object]
        diagnosed = {} if diagnoser is None else diagnoser.diagnose(spec.name, unserved, now)
        live = [pod for _, pod in in_scope if pod.live]
        facts = {} if diagnoser is None else diagnoser.pod_facts(spec.name, live, now)
        rows = []
        for name, pod in in_scope:
            value = by_object.get(_key(kind, name, pod)) if reasons[pod.key] is None else None
            reason = reasons[pod.key]
            if reason is None and value is None:
                reason = diagnosed.get(pod.key, NO_VALUE)
            rows.append(PodExplanation(pod, name, value, reason, facts.get(pod.key, {})))
        rule = (
            {} if diagnoser is None else dict(diagnoser.describe(spec.name, now, metric_selector))
        )
        return Explanation(spec, kind, catalogue.policy, rule, rows, values)

    def _in_scope(
        self, path: MetricPath, kind: ResourceKind, selector: Selector
    ) -> list[tuple[str, PodInfo]]:
        """Every pod (live or not) that matches the selector and makes up an asked-for
        object, sorted by (namespace, name)."""
        candidates: list[PodInfo]
        if kind is PODS and path.namespace is not None and not path.wildcard:
            pod = self._pods.get(path.namespace, PodName(path.name))
            candidates = [] if pod is None else [pod]
        elif path.namespace is not None:
            candidates = list(self._pods.in_namespace(path.namespace))
        elif kind is NODES and not path.wildcard:
            candidates = list(self._pods.on_node(NodeName(path.name)))
        else:
            candidates = list(self._pods.all())
        found = []
        for pod in sorted(candidates, key=lambda p: (p.namespace, p.name)):
            if not selector.matches(pod.labels):
                continue
            name = object_name(pod, kind)
            if name is not None and (path.wildcard or name == path.name):
                found.append((name, pod))
        return found


def _key(kind: ResourceKind, name: str, pod: PodInfo) -> tuple[Namespace | None, str]:
    """The (namespace, name) of the object ``pod`` is part of, as ``_targets`` names it."""
    return (None if kind.scope is Scope.CLUSTER else pod.namespace, name)


def _policy_reason(policy: ServingPolicy, now: float, pod: PodInfo) -> str | None:
    """The serving policy's verdict, as the resolver applies it (None: eligible)."""
    if not pod.live:
        return DELETED
    if policy.omit_unready:
        if not pod.ready:
            return NOT_READY
        if pod.ready_since is not None and now - pod.ready_since < policy.warmup_seconds:
            return WARMING_UP
    return None
