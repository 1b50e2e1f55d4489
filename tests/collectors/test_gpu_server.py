"""The HTTP edge served for real on 127.0.0.1:0: exact /metrics series, exact /snapshot JSON."""

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from collectors.gpu.model import (
    CgroupOwner,
    ContainerName,
    ContainerRef,
    GpuLostError,
    GpuUUID,
    Namespace,
    NodeName,
    PodName,
    PodRef,
    PodUID,
)
from collectors.gpu.sampler import Sampler
from collectors.gpu.server import CollectorState, build_app, serve
from collectors.gpu.simulate import Simulation, load_scenario
from tests.fakes.clock import FakeClock
from tests.fakes.collector_ports import Owners, Pods, StaticAssignments
from tests.fakes.nvml import GIB, FakeGpu, FakeNvml, FakeProcess

G0, G1 = "GPU-aaaa-0", "GPU-aaaa-1"
UID_X, UID_Y = "uid-x", "uid-y"
T0 = 1_763_800_000.0
DEMO = Path(__file__).resolve().parents[2] / "collectors/gpu/scenarios/demo-2gpu.yaml"


def ref(pod: str) -> ContainerRef:
    return ContainerRef(Namespace("ml"), PodName(pod), ContainerName("main"))


def make_sampler() -> tuple[Sampler, FakeNvml, FakeClock]:
    clock = FakeClock(T0)
    nvml = FakeNvml(
        [
            FakeGpu(G0, utilization=70, memory_used_bytes=3 * GIB, processes=[FakeProcess(10, 70)]),
            FakeGpu(G1, utilization=45, processes=[FakeProcess(20, 45, 2 * GIB)]),
        ],
        now_us=int(T0 * 1e6),
    )
    owners = Owners({10: CgroupOwner(PodUID(UID_X), "cx"), 20: CgroupOwner(PodUID(UID_Y), "cy")})
    pods = Pods(
        {
            PodUID(UID_Y): PodRef(
                Namespace("ml"), PodName("y"), PodUID(UID_Y), {"cy": ContainerName("main")}
            )
        }
    )
    source = StaticAssignments({GpuUUID(G0): [ref("x")]})  # G1 is not assigned: shared path
    sampler = Sampler(nvml, source, owners, pods, node=NodeName("n1"), window_s=10, clock=clock)
    return sampler, nvml, clock


@asynccontextmanager
async def serving(state: CollectorState) -> AsyncIterator[Callable[[str], Any]]:
    runner, port = await serve(build_app(state, run_sampler=False), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:

            async def get(path: str) -> tuple[int, str]:
                async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                    return resp.status, await resp.text()

            yield get
    finally:
        await runner.cleanup()


def series(
    text: str, skip: frozenset[str] = frozenset({"gpu_collector_sample_duration_seconds"})
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in skip:
                out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def s(
    name: str, value: float, **labels: str
) -> tuple[tuple[str, frozenset[tuple[str, str]]], float]:
    return (name, frozenset({"node": "n1", **labels}.items())), value


async def test_readyz_before_and_after_the_first_sample() -> None:
    sampler, _, _ = make_sampler()
    async with serving(CollectorState("n1", False, sampler)) as get:
        assert await get("/healthz") == (200, "ok\n")
        status, body = await get("/readyz")
        assert (status, body) == (503, "not ready: no complete sample yet\n")
        status, _ = await get("/snapshot")
        assert status == 503
        await sampler.sample_once()
        assert await get("/readyz") == (200, "ok\n")


async def test_snapshot_exact_json() -> None:
    sampler, nvml, clock = make_sampler()
    await sampler.sample_once()
    clock.advance(1)
    nvml.now_us += 1_000_000
    nvml.gpus[0].utilization = 80
    await sampler.sample_once()
    async with serving(CollectorState("n1", False, sampler)) as get:
        status, body = await get("/snapshot")
    assert status == 200
    assert json.loads(body) == {
        "node": "n1",
        "simulated": False,
        "ready": True,
        "sampledAt": T0 + 1,
        "windowSeconds": 10,
        "intervalSeconds": 1.0,
        "pods": [
            {
                "namespace": "ml",
                "pod": "x",
                "uid": UID_X,
                "utilization": 75.0,
                "memoryUsedBytes": 3 * GIB,
                "gpus": [G0],
                "samples": 2,
                "sampleTime": T0 + 1,
            },
            {
                "namespace": "ml",
                "pod": "y",
                "uid": UID_Y,
                "utilization": 45.0,
                "memoryUsedBytes": 2 * GIB,
                "gpus": [G1],
                "samples": 2,
                "sampleTime": T0 + 1,
            },
        ],
        "gpus": [
            {
                "index": 0,
                "uuid": G0,
                "name": "NVIDIA H100 80GB HBM3",
                "mig": False,
                "parentUuid": None,
                "migIndex": None,
                "status": "ok",
                "utilization": 75.0,
                "samples": 2,
                "memoryUsedBytes": 3 * GIB,
                "memoryTotalBytes": 80 * GIB,
            },
            {
                "index": 1,
                "uuid": G1,
                "name": "NVIDIA H100 80GB HBM3",
                "mig": False,
                "parentUuid": None,
                "migIndex": None,
                "status": "ok",
                "utilization": 45.0,
                "samples": 2,
                "memoryUsedBytes": 4 * GIB,
                "memoryTotalBytes": 80 * GIB,
            },
        ],
    }


async def test_metrics_exact_series_and_labels() -> None:
    sampler, nvml, clock = make_sampler()
    await sampler.sample_once()
    clock.advance(1)
    nvml.now_us += 1_000_000
    nvml.fail(1, GpuLostError("fake: lost"))
    await sampler.sample_once()
    async with serving(CollectorState("n1", False, sampler)) as get:
        status, body = await get("/metrics")
    assert status == 200
    assert "# TYPE gpu_collector_nvml_errors_total counter" in body
    g0 = {"gpu": "0", "uuid": G0}
    pod_x = {"namespace": "ml", "pod": "x", "container": "main"}
    assert series(body) == dict(
        [
            s("gpu_collector_up", 1),
            s("gpu_collector_info", 1, version="0.1.0"),
            s("gpu_collector_ready", 1),
            s("gpu_collector_window_seconds", 10),
            s("gpu_collector_samples_total", 2),
            s("gpu_collector_last_sample_timestamp_seconds", T0 + 1),
            s("gpu_collector_unattributed_processes", 0),
            s("gpu_collector_nvml_errors_total", 0, gpu="0", kind="gpu_lost"),
            s("gpu_collector_nvml_errors_total", 0, gpu="0", kind="not_supported"),
            s("gpu_collector_nvml_errors_total", 0, gpu="0", kind="unknown"),
            s("gpu_collector_nvml_errors_total", 1, gpu="1", kind="gpu_lost"),
            s("gpu_collector_nvml_errors_total", 0, gpu="1", kind="not_supported"),
            s("gpu_collector_nvml_errors_total", 0, gpu="1", kind="unknown"),
            s("gpu_collector_podresources_errors_total", 0),
            s("gpu_collector_gpu_status", 1, status="ok", **g0),
            s("gpu_collector_gpu_status", 0, status="unsupported", **g0),
            s("gpu_collector_gpu_status", 0, status="lost", **g0),
            s("gpu_collector_gpu_status", 0, status="error", **g0),
            s("gpu_collector_gpu_status", 0, gpu="1", uuid=G1, status="ok"),
            s("gpu_collector_gpu_status", 0, gpu="1", uuid=G1, status="unsupported"),
            s("gpu_collector_gpu_status", 1, gpu="1", uuid=G1, status="lost"),
            s("gpu_collector_gpu_status", 0, gpu="1", uuid=G1, status="error"),
            s("gpu_collector_gpu_utilization_percent", 70, **g0),
            s("gpu_collector_gpu_memory_used_bytes", 3 * GIB, **g0),
            s("gpu_collector_gpu_memory_total_bytes", 80 * GIB, **g0),
            s("gpu_collector_pod_gpu_utilization_percent", 70, **pod_x),
            s("gpu_collector_pod_gpu_device_utilization_percent", 70, **pod_x, **g0),
            s("gpu_collector_pod_gpu_memory_used_bytes", 3 * GIB, **pod_x),
        ]
    )
    assert "gpu_collector_sample_duration_seconds{" in body


async def test_unavailable_nvml_serves_not_ready() -> None:
    state = CollectorState("n1", False, None, "NVML Shared Library Not Found")
    async with serving(state) as get:
        assert await get("/healthz") == (200, "ok\n")
        assert await get("/readyz") == (503, "not ready: NVML Shared Library Not Found\n")
        assert await get("/snapshot") == (503, '{"error": "NVML Shared Library Not Found"}')
        status, body = await get("/metrics")
    assert status == 200
    assert series(body) == dict(
        [
            s("gpu_collector_up", 1),
            s("gpu_collector_info", 1, version="0.1.0"),
            s("gpu_collector_ready", 0),
        ]
    )


async def test_simulation_marks_every_series_and_the_json() -> None:
    clock = FakeClock(T0)
    sim = Simulation(load_scenario(DEMO), clock=clock)
    sampler = Sampler(
        sim, sim, sim, sim, node=NodeName("sim-gpu-node-1"), simulated=True, clock=clock
    )
    await sampler.sample_once()
    async with serving(CollectorState("sim-gpu-node-1", True, sampler)) as get:
        _, metrics = await get("/metrics")
        _, snapshot = await get("/snapshot")
    assert series(metrics)
    assert all(("simulated", "true") in labels for _, labels in series(metrics))
    body = json.loads(snapshot)
    assert body["simulated"] is True
    assert {p["pod"]: p["utilization"] for p in body["pods"]} == {
        "llm-0": 20.0,
        "embed-0": 30.0,
        "embed-1": 15.0,
    }
