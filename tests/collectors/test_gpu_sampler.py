"""The sampler's tick: windows, scripted NVML errors per device, never a false 0."""

import logging

import pytest

from collectors.gpu.model import (
    CgroupOwner,
    ContainerName,
    ContainerRef,
    GpuLostError,
    GpuUUID,
    Namespace,
    NodeName,
    NotSupportedError,
    NvmlUnavailableError,
    PodName,
    PodRef,
    PodUID,
)
from collectors.gpu.sampler import Sampler, Snapshot
from collectors.gpu.wire import render_snapshot
from tests.fakes.clock import FakeClock
from tests.fakes.collector_ports import Owners, Pods, StaticAssignments
from tests.fakes.nvml import FakeGpu, FakeMig, FakeNvml, FakeProcess

G0, G1, G2 = "GPU-aaaa-0", "GPU-aaaa-1", "GPU-aaaa-2"
MIG_A, MIG_B = "MIG-bbbb-a", "MIG-bbbb-b"
UID_X, UID_Y = PodUID("uid-x"), PodUID("uid-y")


def ref(pod: str) -> ContainerRef:
    return ContainerRef(Namespace("ml"), PodName(pod), ContainerName("main"))


def make(
    gpus: list[FakeGpu], assignments: dict[str, list[ContainerRef]]
) -> tuple[Sampler, FakeNvml, FakeClock]:
    clock = FakeClock(1_763_800_000.0)
    nvml = FakeNvml(gpus, now_us=int(clock.now * 1e6))
    owners = Owners({10: CgroupOwner(UID_X, "cx"), 20: CgroupOwner(UID_Y, "cy")})
    pods = Pods(
        {
            UID_X: PodRef(Namespace("ml"), PodName("x"), UID_X, {"cx": ContainerName("main")}),
            UID_Y: PodRef(Namespace("ml"), PodName("y"), UID_Y, {"cy": ContainerName("main")}),
        }
    )
    source = StaticAssignments({GpuUUID(k): v for k, v in assignments.items()})
    sampler = Sampler(nvml, source, owners, pods, node=NodeName("n1"), window_s=10, clock=clock)
    return sampler, nvml, clock


async def tick(sampler: Sampler, nvml: FakeNvml, clock: FakeClock, n: int = 1) -> Snapshot:
    for _ in range(n):
        await sampler.sample_once()
        clock.advance(1)
        nvml.now_us += 1_000_000
    return sampler.snapshot()


def gpu(snapshot: Snapshot, uuid: str) -> tuple[str, float | None]:
    view = next(v for v in snapshot.gpus if v.state.uuid == uuid)
    return view.state.status, view.utilization_percent


def pods(snapshot: Snapshot) -> dict[str, float]:
    return {v.share.pod: v.utilization_percent for v in snapshot.shares}


async def test_not_ready_before_the_first_tick() -> None:
    sampler, _, _ = make([FakeGpu(G0)], {})
    assert not sampler.ready
    assert sampler.snapshot().gpus == []


async def test_window_average_and_expiry() -> None:
    g = FakeGpu(G0, utilization=10)
    sampler, nvml, clock = make([g], {G0: [ref("x")]})
    await tick(sampler, nvml, clock, 5)
    g.utilization = 60
    snap = await tick(sampler, nvml, clock, 5)
    assert sampler.ready
    assert gpu(snap, G0) == ("ok", pytest.approx(35.0))  # type: ignore[comparison-overlap]  # pytest.approx equals floats; its type does not say so
    assert pods(snap) == {"x": pytest.approx(35.0)}
    snap = await tick(sampler, nvml, clock, 5)  # the 10s at 10% have left the window
    assert gpu(snap, G0) == ("ok", pytest.approx(60.0))  # type: ignore[comparison-overlap]  # pytest.approx equals floats; its type does not say so
    assert snap.gpus[0].samples == 10


async def test_gpu_lost_mid_run_is_unavailable_not_zero_and_others_keep_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sampler, nvml, clock = make(
        [FakeGpu(G0, utilization=70), FakeGpu(G1, utilization=20)], {G0: [ref("x")], G1: [ref("y")]}
    )
    await tick(sampler, nvml, clock, 3)
    nvml.fail(0, GpuLostError("fake: GPU is lost"))
    with caplog.at_level(logging.WARNING):
        snap = await tick(sampler, nvml, clock, 2)
    assert gpu(snap, G0) == ("lost", None)
    assert gpu(snap, G1) == ("ok", 20.0)
    assert pods(snap) == {"y": 20.0}  # x is absent, not 0
    assert snap.errors == {("0", "gpu_lost"): 2}
    assert "GPU is lost" in caplog.text
    nvml.recover()
    snap = await tick(sampler, nvml, clock)
    assert gpu(snap, G0) == ("ok", 70.0)
    assert snap.shares[0].samples == 1  # history from before the loss was dropped


async def test_library_missing_marks_every_gpu_and_the_loop_survives() -> None:
    sampler, nvml, clock = make([FakeGpu(G0), FakeGpu(G1)], {})
    await tick(sampler, nvml, clock)
    nvml.fail_enumeration(NvmlUnavailableError("fake: NVML Shared Library Not Found"))
    snap = await tick(sampler, nvml, clock, 2)
    assert [gpu(snap, u) for u in (G0, G1)] == [("error", None), ("error", None)]
    assert snap.errors == {("", "unavailable"): 2}
    nvml.recover()
    assert gpu(await tick(sampler, nvml, clock), G0) == ("ok", 50.0)


async def test_utilization_not_supported_is_null_with_status() -> None:
    sampler, nvml, clock = make([FakeGpu(G0, utilization=None)], {G0: [ref("x")]})
    snap = await tick(sampler, nvml, clock)
    assert gpu(snap, G0) == ("unsupported", None)
    assert snap.shares == []


async def test_per_process_not_supported_on_shared_gpu_is_counted_and_absent() -> None:
    g = FakeGpu(G0, utilization=50, processes=[FakeProcess(10, 30)], per_process_supported=False)
    sampler, nvml, clock = make([g], {G0: [ref("x"), ref("y")]})
    snap = await tick(sampler, nvml, clock)
    assert gpu(snap, G0) == ("ok", 50.0)
    assert snap.shares == []
    assert snap.errors == {("0", "not_supported"): 1}


async def test_other_errors_on_one_call_mark_the_device_error() -> None:
    sampler, nvml, clock = make([FakeGpu(G0), FakeGpu(G1)], {})
    nvml.fail(1, NotSupportedError("fake: memory info not supported"))
    snap = await tick(sampler, nvml, clock)
    assert gpu(snap, G1) == ("unsupported", None)
    assert gpu(snap, G0) == ("ok", 50.0)


async def test_time_sliced_gpu_shares_from_process_samples() -> None:
    g = FakeGpu(G0, utilization=70, processes=[FakeProcess(10, 50), FakeProcess(20, 20)])
    sampler, nvml, clock = make([g], {G0: [ref("x"), ref("y")]})
    snap = await tick(sampler, nvml, clock, 2)
    assert pods(snap) == {"x": 50.0, "y": 20.0}
    # the second call asked only for samples newer than the first tick's
    assert nvml.since[1] == (0, int(1_763_800_000.0 * 1e6))


async def test_pod_with_two_gpus_gets_the_mean() -> None:
    sampler, nvml, clock = make(
        [FakeGpu(G0, utilization=90), FakeGpu(G1, utilization=30)], {G0: [ref("x")], G1: [ref("x")]}
    )
    snap = await tick(sampler, nvml, clock)
    assert len(snap.shares) == 2
    [pod] = render_snapshot(snap)["pods"]
    assert (pod["utilization"], pod["gpus"]) == (60.0, [G0, G1])


async def test_mig_with_gpm_reports_after_two_samples_and_without_gpm_is_unsupported() -> None:
    migs = [FakeMig(MIG_A, 25.0), FakeMig(MIG_B, 75.0)]
    gpus = [FakeGpu(G0, mig=migs), FakeGpu(G1, mig=[FakeMig("MIG-old", 40.0)], gpm=False)]
    sampler, nvml, clock = make(gpus, {MIG_A: [ref("x")], MIG_B: [ref("y")], "MIG-old": [ref("x")]})
    snap = await tick(sampler, nvml, clock)
    assert gpu(snap, MIG_A) == ("ok", None)  # GPM needs a second sample
    snap = await tick(sampler, nvml, clock)
    assert gpu(snap, G0) == ("unsupported", None)  # a MIG-mode GPU has no whole-GPU utilization
    assert gpu(snap, MIG_A) == ("ok", 25.0)
    assert gpu(snap, "MIG-old") == ("unsupported", None)
    assert {v.share.device: v.utilization_percent for v in snap.shares} == {
        MIG_A: 25.0,
        MIG_B: 75.0,
    }


async def test_podresources_failure_keeps_last_assignments() -> None:
    sampler, nvml, clock = make([FakeGpu(G0, utilization=40)], {G0: [ref("x")]})
    await tick(sampler, nvml, clock)
    source = sampler._assignment_source
    assert isinstance(source, StaticAssignments)
    source.error = ConnectionError("kubelet gone")
    snap = await tick(sampler, nvml, clock)
    assert pods(snap) == {"x": 40.0}
    assert snap.errors == {("", "podresources"): 1}


async def test_close_releases_reader_and_channel() -> None:
    sampler, nvml, _ = make([FakeGpu(G0)], {})
    await sampler.close()
    assert nvml.closed
