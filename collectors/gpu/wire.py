"""The ``/snapshot`` JSON shape read by the adapter's GPU source (see ``collectors.gpu.server``).

Pure: ``Snapshot`` in, ``SnapshotJSON`` out. Pods whose every share left the window are absent;
utilization of a GPU that is unsupported, lost or failing is ``null``, never 0.
"""

from __future__ import annotations

from typing import TypedDict

from collectors.gpu.sampler import GpuView, ShareView, Snapshot


class PodJSON(TypedDict):
    namespace: str
    pod: str
    uid: str | None
    utilization: float
    memoryUsedBytes: int | None
    gpus: list[str]
    samples: int
    sampleTime: float


class GpuJSON(TypedDict):
    index: int
    uuid: str
    name: str
    mig: bool
    parentUuid: str | None
    migIndex: int | None
    status: str
    utilization: float | None
    samples: int
    memoryUsedBytes: int | None
    memoryTotalBytes: int | None


class SnapshotJSON(TypedDict):
    node: str
    simulated: bool
    ready: bool
    sampledAt: float | None
    windowSeconds: float
    intervalSeconds: float
    pods: list[PodJSON]
    gpus: list[GpuJSON]


def _round(value: float) -> float:
    return round(value, 2)


def render_snapshot(snapshot: Snapshot) -> SnapshotJSON:
    return {
        "node": snapshot.node,
        "simulated": snapshot.simulated,
        "ready": snapshot.ready,
        "sampledAt": snapshot.sampled_at,
        "windowSeconds": snapshot.window_s,
        "intervalSeconds": snapshot.interval_s,
        "pods": [_pod(views) for views in group_by_pod(snapshot.shares).values()],
        "gpus": [_gpu(view) for view in snapshot.gpus],
    }


def group_by_pod(shares: list[ShareView]) -> dict[tuple[str, str], list[ShareView]]:
    pods: dict[tuple[str, str], list[ShareView]] = {}
    for view in shares:
        pods.setdefault((view.share.namespace, view.share.pod), []).append(view)
    return pods


def device_means(views: list[ShareView]) -> dict[str, float]:
    """Per device: the sum over the pod's (or container's) shares of it, in window means."""
    per_device: dict[str, float] = {}
    for view in views:
        device = view.share.device
        per_device[device] = min(100.0, per_device.get(device, 0.0) + view.utilization_percent)
    return per_device


def _memory(views: list[ShareView]) -> int | None:
    known = [v.share.memory_used_bytes for v in views if v.share.memory_used_bytes is not None]
    return sum(known) if known else None


def _pod(views: list[ShareView]) -> PodJSON:
    first = views[0].share
    per_device = device_means(views)
    uids = [v.share.uid for v in views if v.share.uid is not None]
    return {
        "namespace": first.namespace,
        "pod": first.pod,
        "uid": uids[0] if uids else None,
        "utilization": _round(sum(per_device.values()) / len(per_device)),
        "memoryUsedBytes": _memory(views),
        "gpus": sorted(per_device),
        "samples": max(v.samples for v in views),
        "sampleTime": max(v.sample_time for v in views),
    }


def _gpu(view: GpuView) -> GpuJSON:
    state = view.state
    util = view.utilization_percent
    return {
        "index": state.index,
        "uuid": state.uuid,
        "name": state.name,
        "mig": state.mig,
        "parentUuid": state.parent_uuid,
        "migIndex": state.mig_index,
        "status": state.status,
        "utilization": None if util is None else _round(util),
        "samples": view.samples,
        "memoryUsedBytes": state.memory_used_bytes,
        "memoryTotalBytes": state.memory_total_bytes,
    }
