"""The pure join: device readings + kubelet assignments + PID owners → per-pod GPU shares.

Two ways a pod gets GPU utilization, chosen per device on every tick:

* **Exclusive** — the kubelet PodResources API lists the device (a GPU UUID or a MIG device UUID)
  for exactly one pod. The pod gets the device's whole utilization
  (``nvmlDeviceGetUtilizationRates`` for a GPU, GPM SM utilization for a MIG device) and the
  device's used memory. This is exact and needs no ``/proc`` access; it is what a GPU requested
  through ``nvidia.com/gpu`` or ``nvidia.com/mig-*`` gives.
* **Shared** — the device is listed for several pods (time-slicing replicas ``GPU-x::n``) or for
  none (MPS, ``NVIDIA_VISIBLE_DEVICES=all``, pods outside the device plugin). Then the per-process
  samples decide: ``nvmlDeviceGetProcessUtilization`` gives each PID's SM utilization, the PID's
  ``/proc/<pid>/cgroup`` gives its pod UID, a ``PodLookup`` gives the pod's namespace and name.
  A pod's share is the sum over its processes (capped at 100), its memory the sum of its processes'
  used memory. A running process with no sample in the tick was idle: 0 is measured, not invented.
  MIG devices have no per-process samples, so a shared MIG device is not attributed.

A device whose reading is unavailable (lost, unsupported, failed) gives nobody a share: pods on it
are absent, never 0. A pod on several devices gets the mean of its per-device shares
(``mean_by``); per-device shares are exported too.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from collectors.gpu.model import (
    ContainerName,
    ContainerRef,
    GpuUUID,
    Namespace,
    PidResolver,
    PodLookup,
    PodName,
    PodUID,
)

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class DeviceReading:
    """One tick's readings of a GPU or MIG device, as the join needs them.

    ``utilization_percent`` None: not available this tick (unsupported, lost, failed).
    ``process_percent`` None: per-process samples could not be read; else PID → mean SM % over the
    tick's samples. ``process_memory`` holds PID → used bytes of running compute processes.
    """

    uuid: GpuUUID
    gpu_index: int
    utilization_percent: float | None
    memory_used_bytes: int | None
    process_percent: Mapping[int, float] | None = None
    process_memory: Mapping[int, int | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PodShare:
    """A container's share of one device in one tick."""

    namespace: Namespace
    pod: PodName
    container: ContainerName
    uid: PodUID | None
    device: GpuUUID
    gpu_index: int
    utilization_percent: float
    memory_used_bytes: int | None
    exclusive: bool


@dataclass(frozen=True, slots=True)
class Attribution:
    shares: list[PodShare]
    unattributed_pids: int  # processes on shared devices whose pod could not be named


def attribute(
    readings: Iterable[DeviceReading],
    assignments: Mapping[GpuUUID, Sequence[ContainerRef]],
    resolver: PidResolver,
    lookup: PodLookup,
) -> Attribution:
    shares: list[PodShare] = []
    unattributed = 0
    for reading in readings:
        holders = assignments.get(reading.uuid, ())
        if len({(h.namespace, h.pod) for h in holders}) == 1:
            shares.extend(_exclusive(reading, holders, resolver))
        else:
            found, missed = _shared(reading, holders, resolver, lookup)
            shares.extend(found)
            unattributed += missed
    return Attribution(shares=shares, unattributed_pids=unattributed)


def _exclusive(
    reading: DeviceReading, holders: Sequence[ContainerRef], resolver: PidResolver
) -> list[PodShare]:
    if reading.utilization_percent is None:
        return []
    # Device-plugin isolation: every process on an exclusive device is the holder's.
    uids = {o.pod_uid for pid in reading.process_memory if (o := resolver.owner_of(pid))}
    uid = next(iter(uids)) if len(uids) == 1 else None
    holder = holders[0]
    return [
        PodShare(
            namespace=holder.namespace,
            pod=holder.pod,
            container=holder.container,
            uid=uid,
            device=reading.uuid,
            gpu_index=reading.gpu_index,
            utilization_percent=reading.utilization_percent,
            memory_used_bytes=reading.memory_used_bytes,
            exclusive=True,
        )
    ]


def _shared(
    reading: DeviceReading,
    holders: Sequence[ContainerRef],
    resolver: PidResolver,
    lookup: PodLookup,
) -> tuple[list[PodShare], int]:
    if reading.process_percent is None:
        return [], 0
    percent: dict[tuple[PodUID, ContainerName], float] = {}
    memory: dict[tuple[PodUID, ContainerName], int | None] = {}
    names: dict[PodUID, tuple[Namespace, PodName]] = {}
    missed = 0
    for pid in sorted(set(reading.process_percent) | set(reading.process_memory)):
        owner = resolver.owner_of(pid)
        if owner is None:
            continue  # a host process: nobody's pod
        pod = lookup.lookup(owner.pod_uid)
        if pod is None:
            missed += 1
            continue
        names[owner.pod_uid] = (pod.namespace, pod.name)
        container = _container_name(owner.container_id, pod.containers, holders, pod.name)
        key = (owner.pod_uid, container)
        percent[key] = percent.get(key, 0.0) + reading.process_percent.get(pid, 0.0)
        memory[key] = _add(memory.get(key, 0), reading.process_memory.get(pid))
    shares = [
        PodShare(
            namespace=names[uid][0],
            pod=names[uid][1],
            container=container,
            uid=uid,
            device=reading.uuid,
            gpu_index=reading.gpu_index,
            utilization_percent=min(100.0, value),
            memory_used_bytes=memory[(uid, container)],
            exclusive=False,
        )
        for (uid, container), value in percent.items()
    ]
    return shares, missed


def _container_name(
    container_id: str | None,
    known: Mapping[str, ContainerName],
    holders: Sequence[ContainerRef],
    pod: PodName,
) -> ContainerName:
    if container_id is not None and container_id in known:
        return known[container_id]
    mine = {h.container for h in holders if h.pod == pod}
    return mine.pop() if len(mine) == 1 else ContainerName("")


def _add(total: int | None, value: int | None) -> int | None:
    return None if total is None or value is None else total + value


def mean_by(shares: Iterable[PodShare], key: Callable[[PodShare], K]) -> dict[K, float]:
    """Mean utilization per key, each device counted once per key (a pod on two GPUs → mean)."""
    per_device: dict[K, dict[GpuUUID, float]] = {}
    for share in shares:
        devices = per_device.setdefault(key(share), {})
        devices[share.device] = devices.get(share.device, 0.0) + share.utilization_percent
    return {k: sum(v.values()) / len(v) for k, v in per_device.items()}
