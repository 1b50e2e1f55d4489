"""Scenario parsing and curves for --simulate."""

from pathlib import Path

import pytest

from collectors.gpu.model import GpuLostError, GpuUUID, PodUID
from collectors.gpu.simulate import Curve, ScenarioError, Simulation, load_scenario, parse_scenario
from tests.fakes.clock import FakeClock

SCENARIOS = Path(__file__).resolve().parents[2] / "collectors/gpu/scenarios"


@pytest.mark.parametrize(
    ("curve", "t", "value"),
    [
        (Curve((0, 10), (0, 100)), 5, 50),
        (Curve((0, 10), (0, 100)), 20, 100),
        (Curve((0, 10), (0, 100), step=True), 5, 0),
        (Curve((0, 10), (0, 100), step=True), 10, 100),
        (Curve((0, 10, 20), (0, 100, 0), repeat=True), 25, 50),
        (Curve((5,), (42,)), 0, 42),
    ],
)
def test_curve(curve: Curve, t: float, value: float) -> None:
    assert curve.at(t) == pytest.approx(value)


def test_shipped_scenarios_load() -> None:
    bench = load_scenario(SCENARIOS / "bench-8gpu-64proc.yaml")
    assert (len(bench.gpus), len(bench.processes)) == (8, 64)
    demo = load_scenario(SCENARIOS / "demo-2gpu.yaml")
    assert len(demo.gpus) == 2


def test_invalid_scenario_reports_every_problem() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(
            {
                "gpus": [{"uuid": "GPU-a", "utilization": {"keyframes": [[0, 150]]}}],
                "pods": [
                    {
                        "namespace": "ml",
                        "name": "p",
                        "uid": "u",
                        "containers": [
                            {
                                "name": "c",
                                "gpus": ["GPU-zzz"],
                                "processes": [{"pid": 1, "gpu": "GPU-b"}],
                            }
                        ],
                    }
                ],
            }
        )
    message = str(info.value)
    for expected in ("node: required", "[0, 100]", "unknown device GPU-zzz", "unknown gpu 'GPU-b'"):
        assert expected in message


def test_lost_at_and_mig_without_gpm() -> None:
    clock = FakeClock(0)
    sim = Simulation(
        parse_scenario(
            {
                "node": "n",
                "gpus": [
                    {"uuid": "GPU-a", "lostAt": 5},
                    {"uuid": "GPU-b", "mig": {"gpm": False, "devices": [{"uuid": "MIG-1"}]}},
                ],
            }
        ),
        clock=clock,
    )
    assert sim.usage(0).utilization_percent == 0
    [mig] = sim.mig_devices(1)
    usage = sim.mig_usage(mig)
    assert (usage.sm_supported, usage.sm_percent) == (False, None)
    clock.advance(5)
    with pytest.raises(GpuLostError):
        sim.usage(0)


async def test_simulation_ports() -> None:
    sim = Simulation(load_scenario(SCENARIOS / "demo-2gpu.yaml"), clock=FakeClock(0))
    assignments = await sim.assignments()
    assert len(assignments[GpuUUID("GPU-5a1d0c4e-0000-4000-8000-000000000001")]) == 2
    owner = sim.owner_of(4201)
    assert owner is not None
    ref = sim.lookup(owner.pod_uid)
    assert ref is not None
    assert (ref.name, ref.containers[owner.container_id or ""]) == ("embed-0", "server")
    assert sim.lookup(PodUID("nope")) is None
