"""The GPU source's snapshot: the last good report of every node, immutable, and its answers.

Staleness is measured on the adapter's own clock, never by comparing a
collector's timestamps with ours, so clock skew between nodes cannot drop or
keep values by mistake. A node entry remembers ``seen_at``: when the adapter
first received its current ``sampledAt``. A collector that keeps answering with
the same ``sampledAt`` (a stuck sampler) therefore ages like one that stopped
answering. A pod's value is fresh until ``seen_at + staleness`` minus how old
the pod's newest sample already was in the collector's own terms
(``sampledAt - sampleTime``).

A store is built once per pull round and swapped in with one assignment;
requests only read it. Missing data is absent, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from adapter.core.model import (
    NODES,
    PODS,
    Namespace,
    NodeName,
    ObjectRef,
    PodInfo,
    PodName,
    Sample,
    Target,
)
from adapter.sources.gpu.wire import OK, NodeSnapshot, PodValue

__all__ = ["EMPTY", "GpuStore", "NodeEntry", "PodEntry", "answer", "build", "entry"]

PodKey = tuple[Namespace, PodName]


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """A node's last good snapshot and when the adapter first saw it (adapter clock)."""

    node: NodeName
    url: str
    snapshot: NodeSnapshot
    seen_at: float
    fresh_until: float

    @property
    def window_seconds(self) -> int:
        return max(1, round(self.snapshot.window_seconds))


@dataclass(frozen=True, slots=True)
class PodEntry:
    value: PodValue
    node: NodeName
    fresh_until: float
    window_seconds: int


@dataclass(frozen=True, slots=True)
class GpuStore:
    nodes: Mapping[NodeName, NodeEntry] = field(default_factory=lambda: MappingProxyType({}))
    pods: Mapping[PodKey, PodEntry] = field(default_factory=lambda: MappingProxyType({}))


EMPTY = GpuStore()


def entry(
    node: NodeName,
    url: str,
    snapshot: NodeSnapshot,
    received_at: float,
    *,
    previous: NodeEntry | None,
    staleness: float,
) -> NodeEntry:
    """The entry for a snapshot just received; keeps ``seen_at`` if it brings no new tick."""
    unchanged = previous is not None and previous.snapshot.sampled_at == snapshot.sampled_at
    seen_at = previous.seen_at if previous is not None and unchanged else received_at
    return NodeEntry(node, url, snapshot, seen_at, seen_at + staleness)


def build(previous: GpuStore, fresh: Iterable[NodeEntry], now: float) -> GpuStore:
    """The next store: this round's entries over the previous ones that are still fresh.

    Nodes that did not answer keep their previous entry until it goes stale. When
    two collectors report the same node (a rollout overlap), the newer tick wins.
    """
    nodes = {name: e for name, e in previous.nodes.items() if e.fresh_until >= now}
    replaced: set[NodeName] = set()
    for new in fresh:
        old = nodes.get(new.node)
        if new.node in replaced and old is not None and _newer(old, new):
            continue
        nodes[new.node] = new
        replaced.add(new.node)
    pods: dict[PodKey, PodEntry] = {}
    for node in nodes.values():
        sampled_at = node.snapshot.sampled_at or node.seen_at
        for value in node.snapshot.pods:
            lag = max(0.0, sampled_at - value.sample_time)
            pod = PodEntry(value, node.node, node.fresh_until - lag, node.window_seconds)
            key = (value.namespace, value.pod)
            if pod.fresh_until < now or (key in pods and pods[key].fresh_until >= pod.fresh_until):
                continue
            pods[key] = pod
    return GpuStore(MappingProxyType(nodes), MappingProxyType(pods))


def _newer(a: NodeEntry, b: NodeEntry) -> bool:
    return (a.snapshot.sampled_at or 0.0) >= (b.snapshot.sampled_at or 0.0)


def answer(store: GpuStore, targets: Sequence[Target], now: float) -> dict[ObjectRef, Sample]:
    """At most one Sample per target; targets without a fresh value are absent."""
    result: dict[ObjectRef, Sample] = {}
    for target in targets:
        if target.obj.kind is NODES:
            sample = _node_sample(store.nodes.get(NodeName(target.obj.name)), now)
        else:
            sample = _pods_sample(store, target, now)
        if sample is not None:
            result[target.obj] = sample
    return result


def _node_sample(node: NodeEntry | None, now: float) -> Sample | None:
    """The mean over the node's measured devices (full GPUs and MIG devices with a value)."""
    if node is None or node.fresh_until < now or node.snapshot.sampled_at is None:
        return None
    values = [
        g.utilization for g in node.snapshot.gpus if g.status == OK and g.utilization is not None
    ]
    if not values:
        return None
    return Sample(math.fsum(values) / len(values), node.snapshot.sampled_at, node.window_seconds)


def _pods_sample(store: GpuStore, target: Target, now: float) -> Sample | None:
    """A pod's own value; for objects made of pods, the mean over pods that have one."""
    entries = [e for e in (_pod_entry(store, pod, now) for pod in target.pods) if e is not None]
    if not entries:
        return None
    if target.obj.kind is PODS and len(entries) == 1:
        only = entries[0]
        return Sample(only.value.utilization, only.value.sample_time, only.window_seconds)
    mean = math.fsum(e.value.utilization for e in entries) / len(entries)
    return Sample(
        mean,
        min(e.value.sample_time for e in entries),  # the value is as old as its oldest part
        max(e.window_seconds for e in entries),
    )


def _pod_entry(store: GpuStore, pod: PodInfo, now: float) -> PodEntry | None:
    found = store.pods.get(pod.key)
    if found is None or found.fresh_until < now:
        return None
    # Same name, another incarnation (a StatefulSet pod recreated): not this pod's value.
    if found.value.uid is not None and pod.uid and found.value.uid != pod.uid:
        return None
    return found
