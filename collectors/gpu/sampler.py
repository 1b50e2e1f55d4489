"""Sampling: one tick reads NVML, joins with the kubelet's view, and feeds the rolling windows.

``Sampler.sample_once()`` is the whole tick and what tests call; ``run()`` repeats it every
``interval_s``. NVML calls and ``/proc`` reads run in a worker thread (``asyncio.to_thread``); the
PodResources call is async gRPC. An error on one device is logged, counted under
``(gpu, kind)`` and turns that device's status to ``lost``/``unsupported``/``error``: its window is
emptied so its utilization and its pods' shares go absent at once, never to 0. Nothing a device
does stops the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from collectors.gpu.attribution import Attribution, DeviceReading, PodShare, attribute
from collectors.gpu.model import (
    AssignmentSource,
    ContainerName,
    ContainerRef,
    DeviceInfo,
    GpuLostError,
    GpuUUID,
    MigDeviceInfo,
    Namespace,
    NodeName,
    NotSupportedError,
    NvmlError,
    NvmlReader,
    PidResolver,
    PodLookup,
    PodName,
    ProcessSample,
)
from collectors.gpu.window import RollingWindow

log = logging.getLogger(__name__)

OK, UNSUPPORTED, LOST, ERROR = "ok", "unsupported", "lost", "error"

ShareKey = tuple[Namespace, PodName, ContainerName, GpuUUID]


@dataclass(frozen=True, slots=True)
class DeviceState:
    """The latest tick's view of a GPU (``mig`` False) or a MIG device (``mig`` True)."""

    index: int  # the GPU's index; for a MIG device, its parent's
    uuid: GpuUUID
    name: str
    mig: bool
    status: str
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    parent_uuid: GpuUUID | None = None
    mig_index: int | None = None
    mig_enabled: bool = False  # a GPU in MIG mode: its own utilization is not reported by NVML


@dataclass(frozen=True, slots=True)
class GpuView:
    state: DeviceState
    utilization_percent: float | None  # window mean; None unless status is ok and samples exist
    samples: int


@dataclass(frozen=True, slots=True)
class ShareView:
    share: PodShare  # the latest share (uid, memory, index)
    utilization_percent: float  # window mean
    samples: int
    sample_time: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the exporter and the JSON endpoint show, computed once per request."""

    node: NodeName
    simulated: bool
    ready: bool
    sampled_at: float | None
    window_s: float
    interval_s: float
    gpus: list[GpuView]
    shares: list[ShareView]
    errors: Mapping[tuple[str, str], int]
    samples_total: int
    sample_duration_s: float | None
    unattributed_pids: int


@dataclass
class _Tick:
    states: list[DeviceState] = field(default_factory=list)
    readings: list[DeviceReading] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


class Sampler:
    def __init__(
        self,
        reader: NvmlReader,
        assignments: AssignmentSource,
        resolver: PidResolver,
        lookup: PodLookup,
        *,
        node: NodeName,
        interval_s: float = 1.0,
        window_s: float = 10.0,
        simulated: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reader = reader
        self._assignment_source = assignments
        self._resolver = resolver
        self._lookup = lookup
        self.node = node
        self.interval_s = interval_s
        self.window_s = window_s
        self.simulated = simulated
        self._clock = clock
        self._devices: list[DeviceInfo] = []
        self._states: list[DeviceState] = []
        self._assignments: Mapping[GpuUUID, Sequence[ContainerRef]] = {}
        self._last_seen_us: dict[GpuUUID, int] = {}
        self._device_window: RollingWindow[GpuUUID] = RollingWindow(window_s)
        self._share_window: RollingWindow[ShareKey] = RollingWindow(window_s)
        self._latest_share: dict[ShareKey, PodShare] = {}
        self._errors: Counter[tuple[str, str]] = Counter()
        self._samples_total = 0
        self._sampled_at: float | None = None
        self._duration_s: float | None = None
        self._unattributed = 0

    @property
    def ready(self) -> bool:
        """True once a complete tick has run."""
        return self._sampled_at is not None

    # --- one tick --------------------------------------------------------------------------------

    async def sample_once(self) -> None:
        started = time.perf_counter()
        now = self._clock()
        tick = await asyncio.to_thread(self._read_devices, now)
        assignments = await self._read_assignments()
        joined = await asyncio.to_thread(
            attribute, tick.readings, assignments, self._resolver, self._lookup
        )
        self._apply(now, tick, joined)
        self._duration_s = time.perf_counter() - started

    async def run(self) -> None:
        """Tick every ``interval_s`` until cancelled; no exception ends the loop."""
        while True:
            started = time.monotonic()
            try:
                await self.sample_once()
            except Exception:
                log.exception("sampling tick failed")
                self._errors[("", "internal")] += 1
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self.interval_s - elapsed))

    async def close(self) -> None:
        """Release NVML and the kubelet channel; the sampler is not used afterwards."""
        await asyncio.to_thread(self._reader.close)
        await self._assignment_source.aclose()

    async def _read_assignments(self) -> Mapping[GpuUUID, Sequence[ContainerRef]]:
        try:
            self._assignments = await self._assignment_source.assignments()
        except Exception as exc:
            # Keep the last known assignments: pods do not move between GPUs while running.
            log.warning("PodResources unavailable: %s", exc)
            self._errors[("", "podresources")] += 1
        return self._assignments

    def _read_devices(self, now: float) -> _Tick:
        tick = _Tick()
        try:
            self._devices = list(self._reader.devices())
        except NvmlError as exc:
            log.error("NVML device enumeration failed: %s", exc)
            tick.errors.append(("", exc.kind))
            tick.states = [_failed(d, exc) for d in self._devices]
            return tick
        for device in self._devices:
            self._read_gpu(device, now, tick)
        return tick

    def _read_gpu(self, device: DeviceInfo, now: float, tick: _Tick) -> None:
        gpu = str(device.index)
        try:
            usage = self._reader.usage(device.index)
        except NvmlError as exc:
            log.warning("GPU %s (%s): %s", gpu, device.uuid, exc)
            tick.errors.append((gpu, exc.kind))
            tick.states.append(_failed(device, exc))
            return
        supported = usage.utilization_percent is not None
        state = DeviceState(
            index=device.index,
            uuid=device.uuid,
            name=device.name,
            mig=False,
            status=OK if supported else UNSUPPORTED,
            memory_used_bytes=usage.memory_used_bytes,
            memory_total_bytes=usage.memory_total_bytes,
            mig_enabled=device.mig_enabled,
        )
        if device.mig_enabled:
            tick.states.append(state)
            self._read_migs(device, tick)
            return
        try:
            percent = self._process_percent(device, now)
            memory = {
                p.pid: p.used_memory_bytes for p in self._reader.compute_processes(device.index)
            }
        except GpuLostError as exc:
            tick.errors.append((gpu, exc.kind))
            tick.states.append(_failed(device, exc))
            return
        except NvmlError as exc:
            # No per-process accounting (e.g. not supported): shared attribution impossible.
            tick.errors.append((gpu, exc.kind))
            percent, memory = None, {}
        tick.states.append(state)
        tick.readings.append(
            DeviceReading(
                uuid=device.uuid,
                gpu_index=device.index,
                utilization_percent=usage.utilization_percent,
                memory_used_bytes=usage.memory_used_bytes,
                process_percent=percent,
                process_memory=memory,
            )
        )

    def _process_percent(self, device: DeviceInfo, now: float) -> dict[int, float]:
        since = self._last_seen_us.get(device.uuid, int((now - self.interval_s) * 1e6))
        samples = self._reader.process_samples(device.index, since)
        if samples:
            self._last_seen_us[device.uuid] = max(s.timestamp_us for s in samples)
        return _mean_per_pid(samples)

    def _read_migs(self, device: DeviceInfo, tick: _Tick) -> None:
        gpu = str(device.index)
        try:
            migs = self._reader.mig_devices(device.index)
        except NvmlError as exc:
            tick.errors.append((gpu, exc.kind))
            return
        for mig in migs:
            try:
                usage = self._reader.mig_usage(mig)
            except NvmlError as exc:
                tick.errors.append((gpu, exc.kind))
                tick.states.append(_mig_state(device, mig, _status_of(exc)))
                continue
            status = OK if usage.sm_supported else UNSUPPORTED
            tick.states.append(
                _mig_state(device, mig, status, usage.memory_used_bytes, usage.memory_total_bytes)
            )
            tick.readings.append(
                DeviceReading(
                    uuid=mig.uuid,
                    gpu_index=device.index,
                    utilization_percent=usage.sm_percent if usage.sm_supported else None,
                    memory_used_bytes=usage.memory_used_bytes,
                )
            )

    def _apply(self, now: float, tick: _Tick, joined: Attribution) -> None:
        for error in tick.errors:
            self._errors[error] += 1
        self._states = tick.states
        for reading in tick.readings:
            if reading.utilization_percent is not None:
                self._device_window.add(reading.uuid, now, reading.utilization_percent)
        # Devices that failed (or vanished) this tick lose their history at once: absent, not 0.
        healthy = {s.uuid for s in tick.states if s.status == OK}
        read = {r.uuid for r in tick.readings}
        self._device_window.drop(lambda uuid: uuid not in healthy)
        self._share_window.drop(lambda key: key[3] not in read)
        for share in joined.shares:
            key = (share.namespace, share.pod, share.container, share.device)
            self._share_window.add(key, now, share.utilization_percent)
            self._latest_share[key] = share
        self._device_window.prune(now)
        self._share_window.prune(now)
        live = set(self._share_window.keys())
        self._latest_share = {k: v for k, v in self._latest_share.items() if k in live}
        self._unattributed = joined.unattributed_pids
        self._samples_total += 1
        self._sampled_at = now

    # --- the view --------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        gpus = []
        for state in self._states:
            stats = self._device_window.stats(state.uuid) if state.status == OK else None
            gpus.append(
                GpuView(
                    state=state,
                    utilization_percent=stats.mean if stats else None,
                    samples=stats.count if stats else 0,
                )
            )
        shares = []
        for key, share in sorted(self._latest_share.items()):
            stats = self._share_window.stats(key)
            if stats is not None:
                shares.append(ShareView(share, stats.mean, stats.count, stats.last_time))
        return Snapshot(
            node=self.node,
            simulated=self.simulated,
            ready=self.ready,
            sampled_at=self._sampled_at,
            window_s=self.window_s,
            interval_s=self.interval_s,
            gpus=gpus,
            shares=shares,
            errors=dict(self._errors),
            samples_total=self._samples_total,
            sample_duration_s=self._duration_s,
            unattributed_pids=self._unattributed,
        )


def _status_of(exc: NvmlError) -> str:
    if isinstance(exc, GpuLostError):
        return LOST
    if isinstance(exc, NotSupportedError):
        return UNSUPPORTED
    return ERROR


def _failed(device: DeviceInfo, exc: NvmlError) -> DeviceState:
    return DeviceState(
        index=device.index,
        uuid=device.uuid,
        name=device.name,
        mig=False,
        status=_status_of(exc),
        mig_enabled=device.mig_enabled,
    )


def _mig_state(
    device: DeviceInfo,
    mig: MigDeviceInfo,
    status: str,
    used: int | None = None,
    total: int | None = None,
) -> DeviceState:
    return DeviceState(
        index=device.index,
        uuid=mig.uuid,
        name=device.name,
        mig=True,
        status=status,
        memory_used_bytes=used,
        memory_total_bytes=total,
        parent_uuid=device.uuid,
        mig_index=mig.mig_index,
    )


def _mean_per_pid(samples: Sequence[ProcessSample]) -> dict[int, float]:
    sums: dict[int, float] = {}
    counts: Counter[int] = Counter()
    for sample in samples:
        sums[sample.pid] = sums.get(sample.pid, 0.0) + sample.sm_percent
        counts[sample.pid] += 1
    return {pid: total / counts[pid] for pid, total in sums.items()}
