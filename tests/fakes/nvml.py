"""A scripted ``NvmlReader`` (collectors.gpu.model) for tests: no GPU, no pynvml.

GPUs are plain mutable records; ``fail(index, error)`` makes every later call about that GPU
raise (a GPU lost mid-run, a call not supported), ``fail_enumeration(error)`` makes
``devices()`` raise (library gone, driver reloaded), ``recover()`` undoes both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from collectors.gpu.model import (
    ComputeProcess,
    DeviceInfo,
    DeviceUsage,
    GpuUUID,
    MigDeviceInfo,
    MigUsage,
    NotSupportedError,
    NvmlError,
    ProcessSample,
)

GIB = 1 << 30


@dataclass
class FakeProcess:
    pid: int
    sm_percent: float | None  # None: running but no utilization sample (idle)
    memory_bytes: int | None = GIB


@dataclass
class FakeMig:
    uuid: str
    sm_percent: float | None
    memory_used_bytes: int = GIB
    memory_total_bytes: int = 10 * GIB


@dataclass
class FakeGpu:
    uuid: str
    utilization: float | None = 50.0  # None: NVML says "not supported" for utilization rates
    memory_used_bytes: int = 4 * GIB
    memory_total_bytes: int = 80 * GIB
    name: str = "NVIDIA H100 80GB HBM3"
    processes: list[FakeProcess] = field(default_factory=list)
    per_process_supported: bool = True
    mig: list[FakeMig] | None = None
    gpm: bool = True


class FakeNvml:
    def __init__(self, gpus: Sequence[FakeGpu], now_us: int = 1_000_000) -> None:
        self.gpus = list(gpus)
        self.now_us = now_us
        self._failures: dict[int, NvmlError] = {}
        self._enumeration_failure: NvmlError | None = None
        self._gpm_primed: set[str] = set()
        self.closed = False
        self.since: list[tuple[int, int]] = []  # (index, since_us) of process_samples calls

    # scripting
    def fail(self, index: int, error: NvmlError) -> None:
        self._failures[index] = error

    def fail_enumeration(self, error: NvmlError) -> None:
        self._enumeration_failure = error

    def recover(self) -> None:
        self._failures.clear()
        self._enumeration_failure = None

    def _gpu(self, index: int) -> FakeGpu:
        if index in self._failures:
            raise self._failures[index]
        return self.gpus[index]

    # NvmlReader
    def devices(self) -> Sequence[DeviceInfo]:
        if self._enumeration_failure is not None:
            raise self._enumeration_failure
        return [
            DeviceInfo(i, GpuUUID(g.uuid), g.name, g.mig is not None)
            for i, g in enumerate(self.gpus)
        ]

    def usage(self, index: int) -> DeviceUsage:
        gpu = self._gpu(index)
        util = None if gpu.mig is not None else gpu.utilization
        return DeviceUsage(util, gpu.memory_used_bytes, gpu.memory_total_bytes)

    def process_samples(self, index: int, since_us: int) -> Sequence[ProcessSample]:
        gpu = self._gpu(index)
        self.since.append((index, since_us))
        if not gpu.per_process_supported or gpu.mig is not None:
            raise NotSupportedError("fake: no per-process accounting")
        return [
            ProcessSample(p.pid, self.now_us, p.sm_percent)
            for p in gpu.processes
            if p.sm_percent is not None and self.now_us > since_us
        ]

    def compute_processes(self, index: int) -> Sequence[ComputeProcess]:
        gpu = self._gpu(index)
        return [ComputeProcess(p.pid, p.memory_bytes) for p in gpu.processes]

    def mig_devices(self, index: int) -> Sequence[MigDeviceInfo]:
        gpu = self._gpu(index)
        return [
            MigDeviceInfo(index, i, GpuUUID(m.uuid), i + 1) for i, m in enumerate(gpu.mig or [])
        ]

    def mig_usage(self, mig: MigDeviceInfo) -> MigUsage:
        gpu = self._gpu(mig.parent_index)
        fake = (gpu.mig or [])[mig.mig_index]
        if not gpu.gpm:
            return MigUsage(fake.memory_used_bytes, fake.memory_total_bytes, False, None)
        first = fake.uuid not in self._gpm_primed  # GPM: no value before the second sample
        self._gpm_primed.add(fake.uuid)
        value = None if first else fake.sm_percent
        return MigUsage(fake.memory_used_bytes, fake.memory_total_bytes, True, value)

    def close(self) -> None:
        self.closed = True
