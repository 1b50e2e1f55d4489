"""Value types shared by every layer.

Identifiers are ``NewType`` strings so mypy keeps a namespace from being passed
where a pod name is expected. Everything is frozen: snapshots are shared between
the background refreshers and the request path without locks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple, NewType

Namespace = NewType("Namespace", str)
PodName = NewType("PodName", str)
PodUID = NewType("PodUID", str)
NodeName = NewType("NodeName", str)
MetricName = NewType("MetricName", str)

API_GROUP = "custom.metrics.k8s.io"
VERSIONS = ("v1beta2", "v1beta1")  # preferred first
PREFERRED_VERSION = VERSIONS[0]

# Phases after which a pod never runs again: such pods are never served.
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """The pod's controller (``metadata.ownerReferences[controller=true]``)."""

    api_version: str
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What selection and attribution need of a pod, and nothing more.

    Times are Unix seconds (UTC). ``ready_since`` is the last transition of the
    Ready condition to True, or None while the pod is not Ready.
    """

    namespace: Namespace
    name: PodName
    uid: PodUID
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    phase: str = "Running"
    ready: bool = True
    start_time: float | None = None
    ready_since: float | None = None
    node_name: NodeName | None = None
    pod_ip: str | None = None
    owner: OwnerRef | None = None
    deleting: bool = False

    @property
    def live(self) -> bool:
        """True while the pod may still run: not terminal and not being deleted."""
        return not self.deleting and self.phase not in TERMINAL_PHASES

    @property
    def key(self) -> tuple[Namespace, PodName]:
        return (self.namespace, self.name)


class Scope(Enum):
    NAMESPACED = "Namespaced"
    CLUSTER = "Cluster"


@dataclass(frozen=True, slots=True)
class GroupResource:
    """A resource as the URL names it: ``pods``, ``deployments.apps``, ``nodes``."""

    resource: str
    group: str = ""

    @classmethod
    def parse(cls, text: str) -> GroupResource:
        resource, _, group = text.partition(".")
        return cls(resource=resource, group=group)

    def __str__(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


@dataclass(frozen=True, slots=True, eq=False)
class ResourceKind:
    """How a group-resource is described in a MetricValue's ``describedObject``.

    Compared and hashed by identity: the instances below are the only ones, and
    ObjectRefs (dict keys on the request path) hash much faster this way.
    """

    group_resource: GroupResource
    kind: str
    api_version: str  # the object's real apiVersion: "v1", "apps/v1"
    scope: Scope


# The resources this adapter knows how to resolve to pods.
PODS = ResourceKind(GroupResource("pods"), "Pod", "v1", Scope.NAMESPACED)
DEPLOYMENTS = ResourceKind(
    GroupResource("deployments", "apps"), "Deployment", "apps/v1", Scope.NAMESPACED
)
STATEFULSETS = ResourceKind(
    GroupResource("statefulsets", "apps"), "StatefulSet", "apps/v1", Scope.NAMESPACED
)
REPLICASETS = ResourceKind(
    GroupResource("replicasets", "apps"), "ReplicaSet", "apps/v1", Scope.NAMESPACED
)
NODES = ResourceKind(GroupResource("nodes"), "Node", "v1", Scope.CLUSTER)
NAMESPACES = ResourceKind(GroupResource("namespaces"), "Namespace", "v1", Scope.CLUSTER)

KNOWN_RESOURCES: Mapping[str, ResourceKind] = {
    str(rk.group_resource): rk
    for rk in (PODS, DEPLOYMENTS, STATEFULSETS, REPLICASETS, NODES, NAMESPACES)
}


class ObjectRef(NamedTuple):
    """The object a value describes (``describedObject`` on the wire).

    The value types built per object on the request path (ObjectRef, Target,
    Sample, MetricValue) are NamedTuples: construction and hashing run in C,
    several times faster than frozen dataclasses, and they are just as immutable.
    """

    kind: ResourceKind
    name: str
    namespace: Namespace | None = None


class Target(NamedTuple):
    """An object whose value is asked for, with the live pods its value is made of.

    For a pod, ``pods`` is the pod itself; for a deployment, its live pods; for a
    namespace, every live pod in it; for a node, the live pods scheduled there.
    """

    obj: ObjectRef
    pods: tuple[PodInfo, ...]


class Sample(NamedTuple):
    """One value as a source measured it.

    ``timestamp`` is the Unix time the value describes (the sample's own time,
    never the time of the request); ``window_seconds`` is the window it was
    computed over (a ``rate()`` range, a rolling average), or None for a gauge.
    A Sample is always finite: sources omit missing or NaN data instead of
    making a Sample of it.
    """

    value: float
    timestamp: float
    window_seconds: int | None = None
    family: str | None = None
    """The server family the value was read from (Prometheus built-ins), else None."""


class MetricValue(NamedTuple):
    """A resolved answer, ready to be rendered for either API version."""

    obj: ObjectRef
    metric: MetricName
    sample: Sample
    metric_selector: str | None = None  # canonical metricLabelSelector, None when empty
