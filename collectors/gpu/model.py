"""Value types and ports of the collector; no pynvml, no aiohttp, no gRPC here.

The ``NvmlReader`` Protocol is the seam between the sampler and NVML: the real reader lives in
``collectors.gpu.nvml`` (the only module importing pynvml), a scripted fake in
``tests/fakes/nvml.py`` and a scenario-driven one in ``collectors.gpu.simulate``.

Error tree raised by readers (one per device call; the sampler counts them by ``kind``)::

    NvmlError                      kind="unknown"
    ├── NvmlUnavailableError       kind="unavailable"   driver not loaded, library not found
    ├── GpuLostError               kind="gpu_lost"      fell off the bus, needs a reset
    └── NotSupportedError          kind="not_supported" this device cannot report that value
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NewType, Protocol

GpuUUID = NewType("GpuUUID", str)  # "GPU-…" for a full GPU, "MIG-…" for a MIG device
PodUID = NewType("PodUID", str)  # with dashes, as in metadata.uid
Namespace = NewType("Namespace", str)
PodName = NewType("PodName", str)
ContainerName = NewType("ContainerName", str)
NodeName = NewType("NodeName", str)


class NvmlError(Exception):
    """An NVML call failed for a reason we do not classify further."""

    kind = "unknown"


class NvmlUnavailableError(NvmlError):
    """NVML cannot be used at all on this machine: no driver, no libnvidia-ml.so."""

    kind = "unavailable"


class GpuLostError(NvmlError):
    """The GPU stopped answering (fell off the bus, reset required)."""

    kind = "gpu_lost"


class NotSupportedError(NvmlError):
    """The device cannot report this value (e.g. utilization rates on a MIG-enabled GPU)."""

    kind = "not_supported"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A physical GPU as enumerated by NVML."""

    index: int
    uuid: GpuUUID
    name: str
    mig_enabled: bool


@dataclass(frozen=True, slots=True)
class DeviceUsage:
    """Whole-GPU readings. ``utilization_percent`` is None where NVML cannot report it (MIG)."""

    utilization_percent: float | None
    memory_used_bytes: int
    memory_total_bytes: int


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One ``nvmlProcessUtilizationSample_t``: SM utilization of ``pid`` at ``timestamp_us``."""

    pid: int
    timestamp_us: int
    sm_percent: float


@dataclass(frozen=True, slots=True)
class ComputeProcess:
    """A process holding a CUDA context on the device."""

    pid: int
    used_memory_bytes: int | None  # None when NVML hides it (no permission, MIG without GI view)


@dataclass(frozen=True, slots=True)
class MigDeviceInfo:
    """A MIG device (GPU instance + compute instance) on a MIG-enabled GPU."""

    parent_index: int
    mig_index: int
    uuid: GpuUUID
    gpu_instance_id: int


@dataclass(frozen=True, slots=True)
class MigUsage:
    """Readings of one MIG device.

    ``sm_supported`` is False when the hardware has no GPM (pre-Hopper): then
    ``sm_percent`` is None, always; it is never reported as a number. It is also None on the first
    reading of a supported device, because GPM needs two samples.
    """

    memory_used_bytes: int
    memory_total_bytes: int
    sm_supported: bool
    sm_percent: float | None


class NvmlReader(Protocol):
    """Blocking NVML access (the sampler calls it from a worker thread).

    Every method may raise an ``NvmlError`` subclass; per-device calls fail independently.
    """

    def devices(self) -> Sequence[DeviceInfo]: ...

    def usage(self, index: int) -> DeviceUsage: ...

    def process_samples(self, index: int, since_us: int) -> Sequence[ProcessSample]:
        """Samples newer than ``since_us``; empty when NVML has none (its NotFound)."""
        ...

    def compute_processes(self, index: int) -> Sequence[ComputeProcess]: ...

    def mig_devices(self, index: int) -> Sequence[MigDeviceInfo]: ...

    def mig_usage(self, mig: MigDeviceInfo) -> MigUsage: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """A container that a device was assigned to (kubelet PodResources)."""

    namespace: Namespace
    pod: PodName
    container: ContainerName


@dataclass(frozen=True, slots=True)
class CgroupOwner:
    """Who a PID belongs to, read from ``/proc/<pid>/cgroup``."""

    pod_uid: PodUID
    container_id: str | None


@dataclass(frozen=True, slots=True)
class PodRef:
    """A pod by name, with the container-id → name map when the lookup knows it."""

    namespace: Namespace
    name: PodName
    uid: PodUID | None = None
    containers: Mapping[str, ContainerName] = field(default_factory=dict, hash=False)


class AssignmentSource(Protocol):
    """Device UUID → containers it is assigned to (kubelet PodResources ``List``)."""

    async def assignments(self) -> Mapping[GpuUUID, Sequence[ContainerRef]]: ...

    async def aclose(self) -> None: ...


class PidResolver(Protocol):
    """PID → pod UID and container id (``/proc/<pid>/cgroup``); None for non-pod processes."""

    def owner_of(self, pid: int) -> CgroupOwner | None: ...


class PodLookup(Protocol):
    """Pod UID → namespace/name, for this node's pods; None when unknown."""

    def lookup(self, uid: PodUID) -> PodRef | None: ...
