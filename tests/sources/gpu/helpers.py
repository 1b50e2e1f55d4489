"""Builders for the GPU source tests: snapshot documents, pods, targets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from adapter.core.model import (
    DEPLOYMENTS,
    NODES,
    PODS,
    Namespace,
    NodeName,
    ObjectRef,
    OwnerRef,
    PodInfo,
    PodName,
    PodUID,
    Target,
)

T0 = 1_763_800_000.0
NS = Namespace("ml")


def pod_doc(
    name: str, utilization: float, *, sample_time: float, uid: str | None = None, ns: str = "ml"
) -> dict[str, Any]:
    return {
        "namespace": ns,
        "pod": name,
        "uid": uid,
        "utilization": utilization,
        "memoryUsedBytes": None,
        "gpus": ["GPU-x"],
        "samples": 10,
        "sampleTime": sample_time,
    }


def gpu_doc(
    index: int, utilization: float | None, *, status: str = "ok", mig: bool = False
) -> dict[str, Any]:
    return {
        "index": index,
        "uuid": f"GPU-{index}",
        "name": "NVIDIA H100 80GB HBM3",
        "mig": mig,
        "parentUuid": None,
        "migIndex": None,
        "status": status,
        "utilization": utilization,
        "samples": 10 if utilization is not None else 0,
        "memoryUsedBytes": None,
        "memoryTotalBytes": None,
    }


def snapshot_doc(
    node: str,
    pods: Mapping[str, float] | Iterable[dict[str, Any]] = (),
    gpus: Iterable[float | None] = (),
    *,
    sampled_at: float = T0,
    window: float = 10,
    simulated: bool = False,
    ready: bool = True,
) -> dict[str, Any]:
    """A /snapshot document; ``pods`` as {name: utilization} (sampled at ``sampled_at``) or docs."""
    pod_docs = (
        [pod_doc(name, util, sample_time=sampled_at) for name, util in pods.items()]
        if isinstance(pods, Mapping)
        else list(pods)
    )
    return {
        "node": node,
        "simulated": simulated,
        "ready": ready,
        "sampledAt": sampled_at,
        "windowSeconds": window,
        "intervalSeconds": 1,
        "pods": pod_docs,
        "gpus": [gpu_doc(i, u) for i, u in enumerate(gpus)],
    }


def pod(
    name: str,
    *,
    node: str = "n1",
    owner: str | None = None,
    uid: str | None = None,
    labels: Mapping[str, str] | None = None,
    ip: str | None = None,
    phase: str = "Running",
) -> PodInfo:
    return PodInfo(
        namespace=NS,
        name=PodName(name),
        uid=PodUID(uid or f"uid-{name}"),
        labels=dict(labels or {}),
        phase=phase,
        node_name=NodeName(node),
        pod_ip=ip,
        owner=None if owner is None else OwnerRef("apps/v1", "ReplicaSet", owner),
    )


def pod_target(info: PodInfo) -> Target:
    return Target(ObjectRef(PODS, info.name, info.namespace), (info,))


def deployment_target(name: str, *members: PodInfo) -> Target:
    return Target(ObjectRef(DEPLOYMENTS, name, NS), tuple(members))


def node_target(name: str, *members: PodInfo) -> Target:
    return Target(ObjectRef(NODES, name), tuple(members))
