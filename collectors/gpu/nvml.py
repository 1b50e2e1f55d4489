"""The real ``NvmlReader``: the only module of the project that imports pynvml.

pynvml raises ``NVMLError_<Name>`` subclasses; ``_translate`` maps them onto our error tree at this
boundary (causes chained), so nothing else knows pynvml exists. Handles are cached per index and
UUIDs per index are remembered so a GPU that is lost mid-run keeps its identity in reports.

GPM (per-MIG SM utilization, Hopper and newer) needs two samples: each ``mig_usage`` call takes a
new sample, computes ``NVML_GPM_METRIC_SM_UTIL`` against the previous one and keeps the new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import pynvml

from collectors.gpu.model import (
    ComputeProcess,
    DeviceInfo,
    DeviceUsage,
    GpuLostError,
    GpuUUID,
    MigDeviceInfo,
    MigUsage,
    NotSupportedError,
    NvmlError,
    NvmlUnavailableError,
    ProcessSample,
)

T = TypeVar("T")

_UNAVAILABLE = frozenset(
    {
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
        pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
        pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH,
        pynvml.NVML_ERROR_UNINITIALIZED,
    }
)
_LOST = frozenset({pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_RESET_REQUIRED})


def _translate(exc: pynvml.NVMLError) -> NvmlError:
    value = getattr(exc, "value", None)
    message = f"NVML: {exc}"
    if value in _UNAVAILABLE:
        return NvmlUnavailableError(message)
    if value in _LOST:
        return GpuLostError(message)
    if value == pynvml.NVML_ERROR_NOT_SUPPORTED:
        return NotSupportedError(message)
    return NvmlError(message)


@contextmanager
def _nvml_errors() -> Iterator[None]:
    try:
        yield
    except pynvml.NVMLError as exc:
        raise _translate(exc) from exc


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class NvmlDeviceReader:
    """``NvmlReader`` over libnvidia-ml. ``open()`` raises ``NvmlUnavailableError`` without NVML."""

    def __init__(self) -> None:
        self._handles: dict[int, Any] = {}
        self._known: dict[int, DeviceInfo] = {}
        self._gpm_previous: dict[GpuUUID, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls) -> NvmlDeviceReader:
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise NvmlUnavailableError(f"NVML cannot be initialised: {exc}") from exc
        except OSError as exc:  # pragma: no cover - loader errors outside NVMLError
            raise NvmlUnavailableError(f"NVML library cannot be loaded: {exc}") from exc
        return cls()

    def close(self) -> None:
        with self._lock:
            for sample in self._gpm_previous.values():
                with suppress(pynvml.NVMLError):
                    pynvml.nvmlGpmSampleFree(sample)
            self._gpm_previous.clear()
        with suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()

    def _handle(self, index: int) -> Any:
        handle = self._handles.get(index)
        if handle is None:
            with _nvml_errors():
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._handles[index] = handle
        return handle

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        with _nvml_errors():
            return fn(*args)

    def devices(self) -> Sequence[DeviceInfo]:
        count = self._call(pynvml.nvmlDeviceGetCount)
        found: list[DeviceInfo] = []
        for index in range(count):
            try:
                found.append(self._describe(index))
            except NvmlError:
                # A lost GPU keeps the identity we saw last; usage() then reports the loss.
                self._handles.pop(index, None)
                if index in self._known:
                    found.append(self._known[index])
        return found

    def _describe(self, index: int) -> DeviceInfo:
        handle = self._handle(index)
        uuid = GpuUUID(_text(self._call(pynvml.nvmlDeviceGetUUID, handle)))
        name = _text(self._call(pynvml.nvmlDeviceGetName, handle))
        try:
            current, _pending = self._call(pynvml.nvmlDeviceGetMigMode, handle)
            mig = current == pynvml.NVML_DEVICE_MIG_ENABLE
        except NotSupportedError:
            mig = False
        info = DeviceInfo(index=index, uuid=uuid, name=name, mig_enabled=mig)
        self._known[index] = info
        return info

    def usage(self, index: int) -> DeviceUsage:
        handle = self._handle(index)
        memory = self._call(pynvml.nvmlDeviceGetMemoryInfo, handle)
        try:
            rates = self._call(pynvml.nvmlDeviceGetUtilizationRates, handle)
            utilization: float | None = float(rates.gpu)
        except NotSupportedError:
            utilization = None
        return DeviceUsage(
            utilization_percent=utilization,
            memory_used_bytes=int(memory.used),
            memory_total_bytes=int(memory.total),
        )

    def process_samples(self, index: int, since_us: int) -> Sequence[ProcessSample]:
        handle = self._handle(index)
        try:
            raw = pynvml.nvmlDeviceGetProcessUtilization(handle, since_us)
        except pynvml.NVMLError_NotFound:
            return []
        except pynvml.NVMLError as exc:
            raise _translate(exc) from exc
        return [
            ProcessSample(pid=int(s.pid), timestamp_us=int(s.timeStamp), sm_percent=float(s.smUtil))
            for s in raw
        ]

    def compute_processes(self, index: int) -> Sequence[ComputeProcess]:
        return self._processes(self._handle(index))

    def _processes(self, handle: Any) -> Sequence[ComputeProcess]:
        raw = self._call(pynvml.nvmlDeviceGetComputeRunningProcesses, handle)
        out = []
        for p in raw:
            used = p.usedGpuMemory
            # NVML_VALUE_NOT_AVAILABLE (ULL max) arrives as None from pynvml.
            out.append(
                ComputeProcess(
                    pid=int(p.pid), used_memory_bytes=None if used is None else int(used)
                )
            )
        return out

    def mig_devices(self, index: int) -> Sequence[MigDeviceInfo]:
        handle = self._handle(index)
        count = self._call(pynvml.nvmlDeviceGetMaxMigDeviceCount, handle)
        found = []
        for mig_index in range(count):
            try:
                mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, mig_index)
            except pynvml.NVMLError_NotFound:
                continue  # slot without a MIG device
            except pynvml.NVMLError as exc:
                raise _translate(exc) from exc
            uuid = GpuUUID(_text(self._call(pynvml.nvmlDeviceGetUUID, mig)))
            gi = int(self._call(pynvml.nvmlDeviceGetGpuInstanceId, mig))
            found.append(
                MigDeviceInfo(
                    parent_index=index, mig_index=mig_index, uuid=uuid, gpu_instance_id=gi
                )
            )
        return found

    def mig_usage(self, mig: MigDeviceInfo) -> MigUsage:
        parent = self._handle(mig.parent_index)
        handle = self._call(pynvml.nvmlDeviceGetMigDeviceHandleByIndex, parent, mig.mig_index)
        memory = self._call(pynvml.nvmlDeviceGetMemoryInfo, handle)
        supported = self._gpm_supported(parent)
        sm = self._gpm_sm_util(parent, mig) if supported else None
        return MigUsage(
            memory_used_bytes=int(memory.used),
            memory_total_bytes=int(memory.total),
            sm_supported=supported,
            sm_percent=sm,
        )

    def _gpm_supported(self, parent: Any) -> bool:
        try:
            support = self._call(pynvml.nvmlGpmQueryDeviceSupport, parent)
        except (NotSupportedError, NvmlUnavailableError):
            return False  # old driver: the function itself is missing
        return bool(support.isSupportedDevice)

    def _gpm_sm_util(self, parent: Any, mig: MigDeviceInfo) -> float | None:
        with self._lock:
            sample = self._call(pynvml.nvmlGpmSampleAlloc)
            try:
                self._call(pynvml.nvmlGpmMigSampleGet, parent, mig.gpu_instance_id, sample)
            except NvmlError:
                pynvml.nvmlGpmSampleFree(sample)
                raise
            previous = self._gpm_previous.pop(mig.uuid, None)
            self._gpm_previous[mig.uuid] = sample
            if previous is None:
                return None  # GPM needs two samples: a value from the next tick on
            try:
                return self._gpm_metric(previous, sample)
            finally:
                pynvml.nvmlGpmSampleFree(previous)

    def _gpm_metric(self, first: Any, second: Any) -> float | None:
        request = pynvml.c_nvmlGpmMetricsGet_t()
        request.version = pynvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = 1
        request.sample1 = first
        request.sample2 = second
        request.metrics[0].metricId = pynvml.NVML_GPM_METRIC_SM_UTIL
        result = self._call(pynvml.nvmlGpmMetricsGet, request)
        metric = result.metrics[0]
        if metric.nvmlReturn != pynvml.NVML_SUCCESS:
            raise _translate(pynvml.NVMLError(metric.nvmlReturn))
        return float(metric.value)
