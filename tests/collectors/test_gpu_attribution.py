"""The pure join: exclusive devices, time-sliced sharing, several GPUs per pod, MIG slices."""

from collections.abc import Mapping

import pytest

from collectors.gpu.attribution import DeviceReading, PodShare, attribute, mean_by
from collectors.gpu.model import (
    CgroupOwner,
    ContainerName,
    ContainerRef,
    GpuUUID,
    Namespace,
    PodName,
    PodRef,
    PodUID,
)
from tests.fakes.collector_ports import Owners, Pods

G0, G1, G2 = GpuUUID("GPU-0"), GpuUUID("GPU-1"), GpuUUID("GPU-2")
MIG_A, MIG_B = GpuUUID("MIG-a"), GpuUUID("MIG-b")
UID_A, UID_B, UID_C = PodUID("uid-a"), PodUID("uid-b"), PodUID("uid-c")


def ref(pod: str, container: str = "main", ns: str = "ml") -> ContainerRef:
    return ContainerRef(Namespace(ns), PodName(pod), ContainerName(container))


def pod(name: str, uid: PodUID, containers: Mapping[str, str] | None = None) -> PodRef:
    named = {k: ContainerName(v) for k, v in (containers or {}).items()}
    return PodRef(Namespace("ml"), PodName(name), uid, named)


OWNERS = Owners(
    {
        10: CgroupOwner(UID_A, "cid-a"),
        11: CgroupOwner(UID_A, "cid-a2"),
        20: CgroupOwner(UID_B, "cid-b"),
        30: CgroupOwner(UID_C, "cid-c"),
    }
)
PODS = Pods(
    {
        UID_A: pod("a", UID_A, {"cid-a": "main", "cid-a2": "worker"}),
        UID_B: pod("b", UID_B, {"cid-b": "main"}),
    }
)


def share(
    name: str,
    device: GpuUUID,
    util: float,
    *,
    uid: PodUID | None,
    index: int = 0,
    memory: int | None = None,
    container: str = "main",
    exclusive: bool,
) -> PodShare:
    return PodShare(
        Namespace("ml"),
        PodName(name),
        ContainerName(container),
        uid,
        device,
        index,
        util,
        memory,
        exclusive,
    )


def test_exclusive_gpu_goes_whole_to_its_pod() -> None:
    reading = DeviceReading(
        G0, 0, 73.0, 5000, process_percent={10: 70.0}, process_memory={10: 4000}
    )
    result = attribute([reading], {G0: [ref("a")]}, OWNERS, PODS)
    assert result.shares == [share("a", G0, 73.0, uid=UID_A, memory=5000, exclusive=True)]


def test_exclusive_gpu_without_a_reading_gives_nothing_never_zero() -> None:
    reading = DeviceReading(G0, 0, None, None)
    assert attribute([reading], {G0: [ref("a")]}, OWNERS, PODS).shares == []


def test_shared_gpu_time_sliced_by_two_pods_splits_by_process_samples() -> None:
    reading = DeviceReading(
        G1,
        1,
        80.0,
        9000,
        process_percent={10: 30.0, 11: 10.0, 20: 40.0, 99: 5.0},
        process_memory={10: 1000, 11: 500, 20: 2000, 99: 100},
    )
    assignments = {G1: [ref("a"), ref("b")]}
    result = attribute([reading], assignments, OWNERS, PODS)
    assert result.shares == [
        share("a", G1, 30.0, uid=UID_A, index=1, memory=1000, exclusive=False),
        share("a", G1, 10.0, uid=UID_A, index=1, memory=500, container="worker", exclusive=False),
        share("b", G1, 40.0, uid=UID_B, index=1, memory=2000, exclusive=False),
    ]
    assert result.unattributed_pids == 0  # pid 99 is a host process: nobody's


def test_idle_process_on_shared_gpu_is_a_measured_zero() -> None:
    reading = DeviceReading(
        G1, 1, 40.0, 0, process_percent={20: 40.0}, process_memory={10: 1, 20: 1}
    )
    result = attribute([reading], {}, OWNERS, PODS)
    assert [(s.pod, s.utilization_percent) for s in result.shares] == [("a", 0.0), ("b", 40.0)]


def test_shared_gpu_without_per_process_samples_gives_nothing() -> None:
    reading = DeviceReading(G1, 1, 80.0, 0, process_percent=None, process_memory={10: 1, 20: 1})
    assert attribute([reading], {G1: [ref("a"), ref("b")]}, OWNERS, PODS).shares == []


def test_unknown_pod_uid_is_counted_not_guessed() -> None:
    reading = DeviceReading(G1, 1, 50.0, 0, process_percent={30: 50.0}, process_memory={30: 1})
    result = attribute([reading], {}, OWNERS, PODS)
    assert result.shares == []
    assert result.unattributed_pids == 1


def test_shared_share_is_capped_at_100() -> None:
    reading = DeviceReading(G1, 1, 100.0, 0, process_percent={10: 80.0, 11: 0.0}, process_memory={})
    owners = Owners({10: CgroupOwner(UID_A, "cid-a"), 11: CgroupOwner(UID_A, "cid-a")})
    more = DeviceReading(G1, 1, 100.0, 0, process_percent={10: 80.0, 11: 70.0}, process_memory={})
    assert attribute([reading], {}, owners, PODS).shares[0].utilization_percent == 80.0
    assert attribute([more], {}, owners, PODS).shares[0].utilization_percent == 100.0


def test_pod_with_two_gpus_gets_the_mean() -> None:
    readings = [DeviceReading(G0, 0, 90.0, 1), DeviceReading(G2, 2, 30.0, 1)]
    assignments = {G0: [ref("a")], G2: [ref("a")]}
    result = attribute(readings, assignments, OWNERS, PODS)
    assert mean_by(result.shares, lambda s: s.pod) == {"a": pytest.approx(60.0)}


def test_mig_slices_are_exclusive_devices() -> None:
    readings = [DeviceReading(MIG_A, 0, 25.0, 100), DeviceReading(MIG_B, 0, 75.0, 200)]
    assignments = {MIG_A: [ref("a")], MIG_B: [ref("b")]}
    result = attribute(readings, assignments, OWNERS, PODS)
    assert [(s.pod, s.device, s.utilization_percent, s.exclusive) for s in result.shares] == [
        ("a", MIG_A, 25.0, True),
        ("b", MIG_B, 75.0, True),
    ]


def test_mig_without_gpm_gives_no_share() -> None:
    readings = [DeviceReading(MIG_A, 0, None, 100)]
    assert attribute(readings, {MIG_A: [ref("a")]}, OWNERS, PODS).shares == []
