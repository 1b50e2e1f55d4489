"""``--simulate SCENARIO_FILE``: GPUs, pods, processes and utilization over time, from YAML.

For the demo and tests only, never a fallback: everything produced under simulation is marked
(``simulated="true"`` on every series, ``"simulated": true`` in ``/snapshot``). A ``Simulation``
implements every port the sampler reads — ``NvmlReader``, ``AssignmentSource`` (what the kubelet's
PodResources would list), ``PidResolver`` and ``PodLookup`` — so the real join, window, exporter
and server run unchanged on top of it.

Scenario format::

    node: sim-gpu-node-1
    gpus:
      - uuid: GPU-…                      # required, unique
        name: NVIDIA H100 80GB HBM3      # optional
        memoryTotalBytes: 85899345920    # optional (80 GiB)
        utilization: 40                  # optional; default: sum of its processes, capped at 100
        lostAt: 45                       # optional: seconds after start it falls off the bus
        mig:                             # optional: MIG mode with these devices
          gpm: true                      # false: per-MIG utilization "unsupported" (pre-Hopper)
          devices: [{uuid: MIG-…, memoryTotalBytes: 10737418240, utilization: 30}]
    pods:
      - {namespace: ml, name: web-1, uid: 6f1c…-…,
         containers: [{name: server,
                       gpus: [GPU-…],    # assigned by the device plugin (exclusive, or GPU-…::n
                                         # replicas when time-slicing); MIG-… for MIG devices
                       processes: [{pid: 4101, gpu: GPU-…, memoryBytes: 1073741824,
                                    utilization: {mode: linear, repeat: true,
                                                  keyframes: [[0, 10], [30, 90], [60, 10]]}}]}]}

A utilization is a number or ``{keyframes: [[t, value], …], mode: linear | step, repeat: bool}``;
``t`` is seconds since the collector started; with ``repeat`` the curve loops over the last ``t``.
"""

from __future__ import annotations

import bisect
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from collectors.gpu.model import (
    CgroupOwner,
    ComputeProcess,
    ContainerName,
    ContainerRef,
    DeviceInfo,
    DeviceUsage,
    GpuLostError,
    GpuUUID,
    MigDeviceInfo,
    MigUsage,
    NodeName,
    NotSupportedError,
    NvmlError,
    PodName,
    PodRef,
    PodUID,
    ProcessSample,
)
from collectors.gpu.model import Namespace as Ns
from collectors.gpu.podresources import (
    ContainerDevices,
    ContainerResources,
    PodResources,
    gpu_assignments,
)

GIB = 1 << 30


class ScenarioError(ValueError):
    """The scenario file is invalid; the message lists every problem found."""


@dataclass(frozen=True, slots=True)
class Curve:
    """Utilization over time: piecewise-linear or step keyframes, optionally repeating."""

    times: tuple[float, ...]
    values: tuple[float, ...]
    step: bool = False
    repeat: bool = False

    def at(self, t: float) -> float:
        if self.repeat and self.times[-1] > 0:
            t = t % self.times[-1]
        i = bisect.bisect_right(self.times, t)
        if i == 0:
            return self.values[0]
        if i == len(self.times) or self.step:
            return self.values[i - 1]
        t0, t1 = self.times[i - 1], self.times[i]
        v0, v1 = self.values[i - 1], self.values[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


@dataclass(frozen=True, slots=True)
class SimProcess:
    pid: int
    gpu: GpuUUID
    memory_bytes: int
    utilization: Curve
    pod_uid: PodUID
    container_id: str


@dataclass(frozen=True, slots=True)
class SimMig:
    uuid: GpuUUID
    memory_total_bytes: int
    utilization: Curve


@dataclass(frozen=True, slots=True)
class SimGpu:
    index: int
    uuid: GpuUUID
    name: str
    memory_total_bytes: int
    utilization: Curve | None
    lost_at: float | None
    mig: tuple[SimMig, ...] | None
    gpm: bool


@dataclass(frozen=True, slots=True)
class Scenario:
    node: NodeName
    gpus: tuple[SimGpu, ...]
    pods: tuple[PodResources, ...]
    refs: Mapping[PodUID, PodRef]
    processes: tuple[SimProcess, ...]


# --- parsing -------------------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def _curve(raw: Any, where: str, problems: _Problems) -> Curve:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return Curve((0.0,), (float(raw),))
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("keyframes"), list)
        or not raw["keyframes"]
    ):
        problems.add(where, "utilization must be a number or {keyframes: [[t, value], ...]}")
        return Curve((0.0,), (0.0,))
    points: list[tuple[float, float]] = []
    for point in raw["keyframes"]:
        if not (
            isinstance(point, list)
            and len(point) == 2
            and all(isinstance(x, int | float) for x in point)
        ):
            problems.add(where, f"keyframe {point!r} is not [t, value]")
            continue
        points.append((float(point[0]), float(point[1])))
    times = [p[0] for p in points]
    if times != sorted(set(times)):
        problems.add(where, "keyframe times must be strictly increasing")
    if any(not 0 <= p[1] <= 100 for p in points):
        problems.add(where, "utilization keyframes must lie in [0, 100]")
    mode = raw.get("mode", "linear")
    if mode not in ("linear", "step"):
        problems.add(where, f"mode must be linear or step, not {mode!r}")
    if not points:
        return Curve((0.0,), (0.0,))
    return Curve(tuple(times), tuple(p[1] for p in points), mode == "step", bool(raw.get("repeat")))


def _container_id(uid: str, name: str) -> str:
    return hashlib.sha256(f"{uid}/{name}".encode()).hexdigest()


def parse_scenario(data: Any) -> Scenario:
    problems = _Problems()
    if not isinstance(data, dict):
        raise ScenarioError("scenario: the document must be a mapping")
    node = data.get("node")
    if not isinstance(node, str) or not node:
        problems.add("node", "required string")
    gpus = _parse_gpus(data.get("gpus"), problems)
    known = {g.uuid for g in gpus} | {m.uuid for g in gpus for m in g.mig or ()}
    pods, refs, processes = _parse_pods(data.get("pods", []), known, problems)
    if problems.items:
        raise ScenarioError("invalid scenario:\n  " + "\n  ".join(problems.items))
    return Scenario(NodeName(str(node)), tuple(gpus), tuple(pods), refs, tuple(processes))


def _parse_gpus(raw: Any, problems: _Problems) -> list[SimGpu]:
    if not isinstance(raw, list) or not raw:
        problems.add("gpus", "a non-empty list is required")
        return []
    gpus = []
    for index, item in enumerate(raw):
        where = f"gpus[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("uuid"), str):
            problems.add(where, "a mapping with a uuid is required")
            continue
        mig_raw = item.get("mig")
        migs: tuple[SimMig, ...] | None = None
        if isinstance(mig_raw, dict):
            migs = tuple(
                SimMig(
                    GpuUUID(str(m.get("uuid"))),
                    int(m.get("memoryTotalBytes", 10 * GIB)),
                    _curve(m.get("utilization", 0), f"{where}.mig.devices[{i}]", problems),
                )
                for i, m in enumerate(mig_raw.get("devices", []))
                if isinstance(m, dict)
            )
        util = item.get("utilization")
        lost_at = item.get("lostAt")
        gpus.append(
            SimGpu(
                index=index,
                uuid=GpuUUID(item["uuid"]),
                name=str(item.get("name", "NVIDIA H100 80GB HBM3")),
                memory_total_bytes=int(item.get("memoryTotalBytes", 80 * GIB)),
                utilization=None if util is None else _curve(util, where, problems),
                lost_at=None if lost_at is None else float(lost_at),
                mig=migs,
                gpm=bool(mig_raw.get("gpm", True)) if isinstance(mig_raw, dict) else False,
            )
        )
    if len({g.uuid for g in gpus}) != len(gpus):
        problems.add("gpus", "uuids must be unique")
    return gpus


def _parse_pods(
    raw: Any, known: set[GpuUUID], problems: _Problems
) -> tuple[list[PodResources], dict[PodUID, PodRef], list[SimProcess]]:
    pods: list[PodResources] = []
    refs: dict[PodUID, PodRef] = {}
    processes: list[SimProcess] = []
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        where = f"pods[{index}]"
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) for k in ("namespace", "name", "uid")
        ):
            problems.add(where, "namespace, name and uid are required strings")
            continue
        uid = PodUID(item["uid"])
        containers: list[ContainerResources] = []
        ids: dict[str, ContainerName] = {}
        for c_index, c in enumerate(item.get("containers", [])):
            c_where = f"{where}.containers[{c_index}]"
            name = str(c.get("name", f"c{c_index}"))
            cid = str(c.get("id") or _container_id(uid, name))
            ids[cid] = ContainerName(name)
            devices = [str(d) for d in c.get("gpus", [])]
            for d in devices:
                if d.split("::", 1)[0] not in known:
                    problems.add(c_where, f"unknown device {d}")
            by_kind = _group_devices(devices)
            containers.append(ContainerResources(name, tuple(by_kind)))
            for p_index, p in enumerate(c.get("processes", [])):
                p_where = f"{c_where}.processes[{p_index}]"
                gpu = GpuUUID(str(p.get("gpu", devices[0].split("::")[0] if devices else "")))
                if gpu not in known:
                    problems.add(p_where, f"unknown gpu {gpu!r}")
                processes.append(
                    SimProcess(
                        pid=int(p["pid"]),
                        gpu=gpu,
                        memory_bytes=int(p.get("memoryBytes", GIB)),
                        utilization=_curve(p.get("utilization", 0), p_where, problems),
                        pod_uid=uid,
                        container_id=cid,
                    )
                )
        pods.append(PodResources(item["name"], item["namespace"], tuple(containers)))
        refs[uid] = PodRef(Ns(item["namespace"]), PodName(item["name"]), uid, ids)
    if len({p.pid for p in processes}) != len(processes):
        problems.add("pods", "process pids must be unique")
    return pods, refs, processes


def _group_devices(devices: Sequence[str]) -> list[ContainerDevices]:
    gpus = tuple(d for d in devices if not d.startswith("MIG-"))
    migs = tuple(d for d in devices if d.startswith("MIG-"))
    out = []
    if gpus:
        out.append(ContainerDevices("nvidia.com/gpu", gpus))
    if migs:
        out.append(ContainerDevices("nvidia.com/mig-1g.10gb", migs))
    return out


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    return parse_scenario(data)


# --- the simulated node --------------------------------------------------------------------------


class Simulation:
    """Every port the sampler needs, driven by a ``Scenario`` and a clock."""

    def __init__(self, scenario: Scenario, clock: Callable[[], float] = time.time) -> None:
        self.scenario = scenario
        self._clock = clock
        self._start = clock()
        self._owners = {p.pid: CgroupOwner(p.pod_uid, p.container_id) for p in scenario.processes}
        self._assignments = gpu_assignments(scenario.pods)

    def _t(self) -> float:
        return self._clock() - self._start

    def _gpu(self, index: int) -> SimGpu:
        gpu = self.scenario.gpus[index]
        if gpu.lost_at is not None and self._t() >= gpu.lost_at:
            raise GpuLostError(f"simulated: GPU {index} is lost")
        return gpu

    def _on(self, uuid: GpuUUID) -> list[SimProcess]:
        return [p for p in self.scenario.processes if p.gpu == uuid]

    # NvmlReader
    def devices(self) -> Sequence[DeviceInfo]:
        return [DeviceInfo(g.index, g.uuid, g.name, g.mig is not None) for g in self.scenario.gpus]

    def usage(self, index: int) -> DeviceUsage:
        gpu = self._gpu(index)
        t = self._t()
        processes = self._on(gpu.uuid)
        used = sum(p.memory_bytes for p in processes)
        if gpu.mig is not None:
            used += sum(m.memory_total_bytes // 4 for m in gpu.mig)
            return DeviceUsage(None, used, gpu.memory_total_bytes)
        if gpu.utilization is not None:
            util = gpu.utilization.at(t)
        else:
            util = min(100.0, sum(p.utilization.at(t) for p in processes))
        return DeviceUsage(round(util), used, gpu.memory_total_bytes)

    def process_samples(self, index: int, since_us: int) -> Sequence[ProcessSample]:
        gpu = self._gpu(index)
        if gpu.mig is not None:
            raise NotSupportedError("simulated: no per-process samples in MIG mode")
        now_us = int(self._clock() * 1e6)
        if now_us <= since_us:
            return []
        t = self._t()
        return [
            ProcessSample(p.pid, now_us, round(p.utilization.at(t))) for p in self._on(gpu.uuid)
        ]

    def compute_processes(self, index: int) -> Sequence[ComputeProcess]:
        gpu = self._gpu(index)
        return [ComputeProcess(p.pid, p.memory_bytes) for p in self._on(gpu.uuid)]

    def mig_devices(self, index: int) -> Sequence[MigDeviceInfo]:
        gpu = self._gpu(index)
        return [
            MigDeviceInfo(index, i, m.uuid, gpu_instance_id=i + 1)
            for i, m in enumerate(gpu.mig or ())
        ]

    def mig_usage(self, mig: MigDeviceInfo) -> MigUsage:
        gpu = self._gpu(mig.parent_index)
        if gpu.mig is None or mig.mig_index >= len(gpu.mig):
            raise NvmlError("simulated: no such MIG device")
        sim = gpu.mig[mig.mig_index]
        used = sim.memory_total_bytes // 4
        if not gpu.gpm:
            return MigUsage(used, sim.memory_total_bytes, sm_supported=False, sm_percent=None)
        return MigUsage(used, sim.memory_total_bytes, True, sim.utilization.at(self._t()))

    def close(self) -> None:
        return None

    # AssignmentSource
    async def assignments(self) -> Mapping[GpuUUID, Sequence[ContainerRef]]:
        return self._assignments

    async def aclose(self) -> None:
        return None

    # PidResolver
    def owner_of(self, pid: int) -> CgroupOwner | None:
        return self._owners.get(pid)

    # PodLookup
    def lookup(self, uid: PodUID) -> PodRef | None:
        return self.scenario.refs.get(uid)
