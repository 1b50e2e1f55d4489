"""From a parsed metric read to the values to serve: the heart of the request path.

All data comes from memory: the pod index and the sources' snapshots. The
resolver decides *which objects* are answered (live pods that match the
selector, eligible under the serving policy) and asks the metric's source for
their values. It never invents a value: an object without one is left out of a
list, and a named object without one is a 404.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from adapter.core.catalogue import Catalogue, MetricSpec, ServingPolicy
from adapter.core.errors import SourceError, metric_not_found
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
from adapter.core.ports import Clock, PodLister, Recorder, Source
from adapter.core.request import MetricPath
from adapter.core.selectors import Selector

# Reasons a pod is left out, as exported in adapter_pods_omitted_total{reason}.
NOT_READY = "not_ready"
WARMING_UP = "warming_up"
NO_VALUE = "no_value"


class Resolver:
    """Answers metric reads. ``catalogue`` is a getter so live reloads take effect at once."""

    def __init__(
        self,
        catalogue: Callable[[], Catalogue],
        pods: PodLister,
        sources: Mapping[str, Source],
        clock: Clock,
        recorder: Recorder,
    ) -> None:
        self._catalogue = catalogue
        self._pods = pods
        self._sources = sources
        self._clock = clock
        self._recorder = recorder

    async def resolve(
        self, path: MetricPath, label_selector: Selector, metric_selector: Selector
    ) -> list[MetricValue]:
        """The values for ``path``, sorted by object name.

        For a named object the result has exactly one item, or NotFound is raised.
        Raises NotFound for metrics the catalogue does not serve for the resource,
        BadRequest for selectors a source cannot apply, InternalError-mapped
        SourceError when the source cannot answer at all.
        """
        catalogue = self._catalogue()
        spec = catalogue.lookup(path.metric, path.resource, path.name)
        kind = next(rk for rk in spec.resources if str(rk.group_resource) == path.resource)
        if kind.scope is Scope.CLUSTER and path.namespace is not None and not path.namespace_metric:
            raise metric_not_found(spec.name, path.resource, None if path.wildcard else path.name)
        in_scope = self._in_scope(path, kind, label_selector)
        eligible, omitted = _eligible(catalogue.policy, self._clock(), in_scope)
        targets = _targets(kind, path, eligible)
        source = self._sources.get(spec.source)
        if source is None:
            raise SourceError(f"source {spec.source!r} of metric {spec.name} is not configured")
        samples = await source.fetch(spec.name, targets, metric_selector)
        selector_text = str(metric_selector) or None
        values = [
            MetricValue(
                obj=t.obj, metric=spec.name, sample=samples[t.obj], metric_selector=selector_text
            )
            for t in targets
            if t.obj in samples
        ]
        self._record(spec, omitted, len(targets) - len(values), values)
        if not path.wildcard and not values:
            raise metric_not_found(spec.name, path.resource, path.name, selector_text)
        return values

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

    def _record(
        self,
        spec: MetricSpec,
        omitted: Mapping[str, int],
        no_value: int,
        values: Sequence[MetricValue],
    ) -> None:
        for reason, count in omitted.items():
            self._recorder.omitted(spec.name, reason, count)
        if no_value:
            self._recorder.omitted(spec.name, NO_VALUE, no_value)
        self._recorder.served(values)


def _eligible(
    policy: ServingPolicy, now: float, in_scope: Iterable[tuple[str, PodInfo]]
) -> tuple[list[tuple[str, PodInfo]], dict[str, int]]:
    """The pods the serving policy lets carry a value, and how many were left out, by reason."""
    eligible: list[tuple[str, PodInfo]] = []
    omitted: dict[str, int] = defaultdict(int)
    for name, pod in in_scope:
        if policy.omit_unready:
            if not pod.ready:
                omitted[NOT_READY] += 1
                continue
            if pod.ready_since is not None and now - pod.ready_since < policy.warmup_seconds:
                omitted[WARMING_UP] += 1
                continue
        eligible.append((name, pod))
    return eligible, omitted


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
