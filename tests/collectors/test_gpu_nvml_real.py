"""The real NVML reader on a real GPU; skipped where NVML cannot initialise."""

import pytest

from collectors.gpu.model import NodeName, NvmlUnavailableError
from collectors.gpu.nvml import NvmlDeviceReader
from collectors.gpu.podlookup import NoPodLookup
from collectors.gpu.procfs import ProcfsPidResolver
from collectors.gpu.sampler import Sampler
from tests.fakes.collector_ports import StaticAssignments

pytestmark = pytest.mark.gpu


@pytest.fixture
def reader():  # type: ignore[no-untyped-def]

    try:
        reader = NvmlDeviceReader.open()
    except NvmlUnavailableError as exc:
        pytest.skip(f"no NVML: {exc}")
    yield reader
    reader.close()


def test_real_devices_usage_and_processes(reader) -> None:  # type: ignore[no-untyped-def]
    devices = reader.devices()
    assert devices, "NVML initialised but lists no GPU"
    for device in devices:
        assert device.uuid.startswith("GPU-")
        usage = reader.usage(device.index)
        assert usage.memory_total_bytes > 0
        assert 0 <= usage.memory_used_bytes <= usage.memory_total_bytes
        if device.mig_enabled:
            for mig in reader.mig_devices(device.index):
                mig_usage = reader.mig_usage(mig)
                assert mig.uuid.startswith("MIG-")
                assert mig_usage.sm_supported or mig_usage.sm_percent is None
        else:
            assert usage.utilization_percent is not None
            assert 0 <= usage.utilization_percent <= 100
            reader.compute_processes(device.index)
            for sample in reader.process_samples(device.index, 0):
                assert 0 <= sample.sm_percent <= 100


async def test_sampler_on_real_gpus(reader) -> None:  # type: ignore[no-untyped-def]

    sampler = Sampler(
        reader, StaticAssignments({}), ProcfsPidResolver(), NoPodLookup(), node=NodeName("real")
    )
    await sampler.sample_once()
    snapshot = sampler.snapshot()
    assert snapshot.ready
    assert {v.state.status for v in snapshot.gpus} <= {"ok", "unsupported"}
