"""The PodResources codec and client, against a fake kubelet gRPC server on a unix socket."""

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.gpu.model import ContainerName, ContainerRef, GpuUUID, Namespace, PodName
from collectors.gpu.podresources import (
    ContainerDevices,
    ContainerResources,
    PodResources,
    PodResourcesClient,
    PodResourcesError,
    decode_list_response,
    encode_list_response,
    gpu_assignments,
)
from tests.fakes.podresources import FakePodResourcesServer

GPU0 = "GPU-11111111-0000-4000-8000-000000000000"
GPU1 = "GPU-11111111-0000-4000-8000-000000000001"
MIG0 = "MIG-22222222-0000-4000-8000-000000000000"

PODS = [
    PodResources(
        "llm-0",
        "ml",
        (
            ContainerResources(
                "server",
                (
                    ContainerDevices("nvidia.com/gpu", (GPU0,)),
                    ContainerDevices("example.com/nic", ("nic-0",)),
                ),
            ),
            ContainerResources("sidecar", ()),
        ),
    ),
    PodResources(
        "embed-0",
        "ml",
        (ContainerResources("c", (ContainerDevices("nvidia.com/gpu", (f"{GPU1}::0",)),)),),
    ),
    PodResources(
        "embed-1",
        "ml",
        (ContainerResources("c", (ContainerDevices("nvidia.com/gpu", (f"{GPU1}::1",)),)),),
    ),
    PodResources(
        "mig-0",
        "batch",
        (ContainerResources("w", (ContainerDevices("nvidia.com/mig-1g.10gb", (MIG0,)),)),),
    ),
    PodResources("cpu-only", "web", (ContainerResources("app", ()),)),
]


def ref(ns: str, pod: str, container: str) -> ContainerRef:
    return ContainerRef(Namespace(ns), PodName(pod), ContainerName(container))


def test_gpu_assignments_fold_replicas_and_mig_and_skip_other_resources() -> None:
    assert gpu_assignments(PODS) == {
        GpuUUID(GPU0): [ref("ml", "llm-0", "server")],
        GpuUUID(GPU1): [ref("ml", "embed-0", "c"), ref("ml", "embed-1", "c")],
        GpuUUID(MIG0): [ref("batch", "mig-0", "w")],
    }


def test_decode_known_bytes() -> None:
    # ListPodResourcesResponse{pod_resources: [{name: "p", namespace: "n",
    #   containers: [{name: "c", devices: [{resource_name: "r", device_ids: ["d"]}]}]}]}
    devices = b"\x0a\x01r\x12\x01d"
    container = b"\x0a\x01c\x12" + bytes([len(devices)]) + devices
    pod = b"\x0a\x01p\x12\x01n\x1a" + bytes([len(container)]) + container
    data = b"\x0a" + bytes([len(pod)]) + pod
    expected = [
        PodResources("p", "n", (ContainerResources("c", (ContainerDevices("r", ("d",)),)),))
    ]
    assert decode_list_response(data) == expected
    assert encode_list_response(expected) == data


def test_decode_skips_unknown_fields() -> None:
    # cpu_ids (field 3, varint) in a container, topology (field 3, bytes) in devices.
    devices = b"\x0a\x01r\x12\x01d\x1a\x02\x08\x01"
    container = b"\x0a\x01c\x12" + bytes([len(devices)]) + devices + b"\x18\x05"
    pod = b"\x0a\x01p\x12\x01n\x1a" + bytes([len(container)]) + container
    data = b"\x0a" + bytes([len(pod)]) + pod
    assert decode_list_response(data)[0].containers[0].devices[0].device_ids == ("d",)


@pytest.mark.parametrize("data", [b"\x0a\x05ab", b"\x0a", b"\x0b", b"\x0a\x01\xff"])
def test_decode_rejects_malformed(data: bytes) -> None:
    with pytest.raises(PodResourcesError):
        decode_list_response(data)


text = st.text(max_size=70)
devices_st = st.builds(ContainerDevices, text, st.lists(text, max_size=3).map(tuple))
containers_st = st.builds(ContainerResources, text, st.lists(devices_st, max_size=3).map(tuple))
pods_st = st.lists(
    st.builds(PodResources, text, text, st.lists(containers_st, max_size=3).map(tuple)), max_size=4
)


@given(pods_st)
def test_codec_round_trip(pods: list[PodResources]) -> None:
    assert decode_list_response(encode_list_response(pods)) == pods


@pytest.fixture
async def kubelet(tmp_path: Path) -> AsyncIterator[tuple[FakePodResourcesServer, str]]:
    server = FakePodResourcesServer(PODS)
    socket_path = str(tmp_path / "kubelet.sock")
    await server.start(socket_path)
    yield server, socket_path
    await server.stop()


async def test_client_lists_exclusive_devices_through_the_socket(
    kubelet: tuple[FakePodResourcesServer, str],
) -> None:
    server, socket_path = kubelet
    client = PodResourcesClient(socket_path)
    try:
        assert await client.list() == PODS
        assignments = await client.assignments()
    finally:
        await client.aclose()
    assert assignments[GpuUUID(GPU0)] == [ref("ml", "llm-0", "server")]
    assert assignments[GpuUUID(MIG0)] == [ref("batch", "mig-0", "w")]
    assert server.calls == 2


async def test_client_translates_rpc_failure(kubelet: tuple[FakePodResourcesServer, str]) -> None:
    server, socket_path = kubelet
    server.fail_with = grpc.StatusCode.UNAVAILABLE
    client = PodResourcesClient(socket_path)
    try:
        with pytest.raises(PodResourcesError, match="UNAVAILABLE"):
            await client.list()
    finally:
        await client.aclose()


async def test_client_without_socket_fails_clearly(tmp_path: Path) -> None:
    client = PodResourcesClient(str(tmp_path / "missing.sock"), timeout_s=0.5)
    try:
        with pytest.raises(PodResourcesError, match="PodResources List"):
            await client.list()
    finally:
        await client.aclose()
