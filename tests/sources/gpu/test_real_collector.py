"""The adapter's GPU source pulling the real collector app (simulation backend) over loopback."""

import json
from pathlib import Path

import aiohttp

from adapter.core.model import MetricName, NodeName
from adapter.core.selectors import EVERYTHING
from adapter.sources.gpu import GpuSource, StaticDiscovery
from collectors.gpu.model import NodeName as CollectorNode
from collectors.gpu.sampler import Sampler
from collectors.gpu.server import CollectorState, build_app, serve
from collectors.gpu.simulate import Simulation, load_scenario
from tests.fakes.clock import FakeClock
from tests.sources.gpu.helpers import T0, deployment_target, node_target, pod, pod_target

DEMO = Path(__file__).resolve().parents[3] / "collectors/gpu/scenarios/demo-2gpu.yaml"
NODE = "sim-gpu-node-1"
GPU = MetricName("gpu_utilization")
LLM = pod("llm-0", node=NODE, uid="3b0e8a52-6d0c-4c51-9a8e-2f1f0d9e0a01")
EMBED_0 = pod("embed-0", node=NODE, uid="3b0e8a52-6d0c-4c51-9a8e-2f1f0d9e0a02")
EMBED_1 = pod("embed-1", node=NODE, uid="3b0e8a52-6d0c-4c51-9a8e-2f1f0d9e0a03")
TARGETS = (
    pod_target(LLM),
    pod_target(EMBED_0),
    pod_target(EMBED_1),
    deployment_target("embed", EMBED_0, EMBED_1),
    node_target(NODE, LLM, EMBED_0, EMBED_1),
)


async def test_the_real_collector_end_to_end() -> None:
    clock = FakeClock(T0)
    sim = Simulation(load_scenario(DEMO), clock=clock)
    sampler = Sampler(sim, sim, sim, sim, node=CollectorNode(NODE), simulated=True, clock=clock)
    runner, port = await serve(
        build_app(CollectorState(NODE, True, sampler), run_sampler=False), "127.0.0.1", 0
    )
    url = f"http://127.0.0.1:{port}"
    source = GpuSource(StaticDiscovery([url]), pull_interval=5.0, clock=clock)
    try:
        await source.refresh_once()  # not ready yet: a 503, nothing served
        assert await source.fetch(GPU, TARGETS, EVERYTHING) == {}

        await sampler.sample_once()
        await source.refresh_once()
        got = {
            o.name: (s.value, s.timestamp, s.window_seconds)
            for o, s in (await source.fetch(GPU, TARGETS, EVERYTHING)).items()
        }
        assert got == {
            "llm-0": (20.0, T0, 10),
            "embed-0": (30.0, T0, 10),
            "embed-1": (15.0, T0, 10),
            "embed": (22.5, T0, 10),
            NODE: (32.5, T0, 10),  # GPU 0: 20; GPU 1 (time-sliced): 30 + 15
        }

        clock.advance(30)  # embed-0 steps to 60; llm-0 climbs to 55
        for _ in range(5):
            await sampler.sample_once()
            clock.advance(1)
        await source.refresh_once()
        async with aiohttp.ClientSession() as session, session.get(f"{url}/snapshot") as resp:
            wire = json.loads(await resp.text())
        served = await source.fetch(GPU, TARGETS[:3], EVERYTHING)
        assert {o.name: s.value for o, s in served.items()} == {
            p["pod"]: p["utilization"] for p in wire["pods"]
        }
        assert {o.name: s.timestamp for o, s in served.items()} == {
            p["pod"]: p["sampleTime"] for p in wire["pods"]
        }
        assert source.snapshot_age(NodeName(NODE)) == 0

        await runner.cleanup()  # the collector dies: served until the bound, then omitted
        clock.advance(15)
        await source.refresh_once()
        assert len(await source.fetch(GPU, TARGETS, EVERYTHING)) == 5
        clock.advance(1)
        await source.refresh_once()
        assert await source.fetch(GPU, TARGETS, EVERYTHING) == {}
    finally:
        await runner.cleanup()
        await source.close()
