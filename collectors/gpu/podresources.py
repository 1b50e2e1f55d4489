"""The kubelet PodResources API (``v1.PodResourcesLister/List``) over its unix socket.

No generated code: the four messages we read are encoded and decoded by a tiny protobuf codec
(varints and length-delimited fields; unknown fields skipped, as protobuf requires). Field numbers
from k8s.io/kubelet ``pkg/apis/podresources/v1/api.proto``::

    message ListPodResourcesRequest {}
    message ListPodResourcesResponse { repeated PodResources pod_resources = 1; }
    message PodResources { string name = 1; string namespace = 2;
                           repeated ContainerResources containers = 3; }
    message ContainerResources { string name = 1; repeated ContainerDevices devices = 2; }
    message ContainerDevices { string resource_name = 1; repeated string device_ids = 2; }

Device ids of ``nvidia.com/gpu`` are GPU UUIDs; with time-slicing the NVIDIA device plugin hands
out replicas ``GPU-<uuid>::<n>`` (several pods, one GPU); MIG strategies use ``nvidia.com/mig-*``
with ``MIG-<uuid>`` ids. ``gpu_assignments`` folds all of them to device UUID → containers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio

from collectors.gpu.model import ContainerName, ContainerRef, GpuUUID, Namespace, PodName

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
LIST_METHOD = "/v1.PodResourcesLister/List"
GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class PodResourcesError(Exception):
    """The kubelet PodResources API could not be read (socket missing, RPC failed, bad bytes)."""


@dataclass(frozen=True, slots=True)
class ContainerDevices:
    resource_name: str
    device_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContainerResources:
    name: str
    devices: tuple[ContainerDevices, ...]


@dataclass(frozen=True, slots=True)
class PodResources:
    name: str
    namespace: str
    containers: tuple[ContainerResources, ...]


# --- codec ---------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise PodResourcesError("truncated or oversized varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (field number, payload) of length-delimited fields; skip the others."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, pos = _read_varint(data, pos)
        elif wire == _I64:
            pos += 8
        elif wire == _I32:
            pos += 4
        elif wire == _LEN:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise PodResourcesError("length-delimited field runs past the message")
            yield number, data[pos : pos + length]
            pos += length
        else:
            raise PodResourcesError(f"unsupported wire type {wire}")
    if pos > len(data):
        raise PodResourcesError("fixed-width field runs past the message")


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(len(payload)) + payload


def encode_list_request() -> bytes:
    return b""


def decode_list_request(_data: bytes) -> None:
    return None


def encode_list_response(pods: Sequence[PodResources]) -> bytes:
    return b"".join(_field(1, _encode_pod(p)) for p in pods)


def _encode_pod(pod: PodResources) -> bytes:
    parts = [_field(1, pod.name.encode()), _field(2, pod.namespace.encode())]
    parts += [_field(3, _encode_container(c)) for c in pod.containers]
    return b"".join(parts)


def _encode_container(container: ContainerResources) -> bytes:
    parts = [_field(1, container.name.encode())]
    for devices in container.devices:
        body = _field(1, devices.resource_name.encode())
        body += b"".join(_field(2, d.encode()) for d in devices.device_ids)
        parts.append(_field(2, body))
    return b"".join(parts)


def decode_list_response(data: bytes) -> list[PodResources]:
    try:
        return [_decode_pod(payload) for number, payload in _fields(data) if number == 1]
    except UnicodeDecodeError as exc:
        raise PodResourcesError("a string field is not UTF-8") from exc


def _decode_pod(data: bytes) -> PodResources:
    name = namespace = ""
    containers = []
    for number, payload in _fields(data):
        if number == 1:
            name = payload.decode()
        elif number == 2:
            namespace = payload.decode()
        elif number == 3:
            containers.append(_decode_container(payload))
    return PodResources(name=name, namespace=namespace, containers=tuple(containers))


def _decode_container(data: bytes) -> ContainerResources:
    name = ""
    devices = []
    for number, payload in _fields(data):
        if number == 1:
            name = payload.decode()
        elif number == 2:
            devices.append(_decode_devices(payload))
    return ContainerResources(name=name, devices=tuple(devices))


def _decode_devices(data: bytes) -> ContainerDevices:
    resource = ""
    ids = []
    for number, payload in _fields(data):
        if number == 1:
            resource = payload.decode()
        elif number == 2:
            ids.append(payload.decode())
    return ContainerDevices(resource_name=resource, device_ids=tuple(ids))


# --- the join input ------------------------------------------------------------------------------


def is_gpu_resource(resource_name: str) -> bool:
    return resource_name == GPU_RESOURCE or resource_name.startswith(MIG_RESOURCE_PREFIX)


def device_uuid(device_id: str) -> GpuUUID:
    """``GPU-x::3`` (a time-slicing replica) → ``GPU-x``; other ids unchanged."""
    return GpuUUID(device_id.split("::", 1)[0])


def gpu_assignments(pods: Sequence[PodResources]) -> dict[GpuUUID, list[ContainerRef]]:
    """Device UUID → containers holding it; a device listed for several pods is shared."""
    out: dict[GpuUUID, list[ContainerRef]] = {}
    for pod in pods:
        for container in pod.containers:
            ref = ContainerRef(
                Namespace(pod.namespace), PodName(pod.name), ContainerName(container.name)
            )
            for devices in container.devices:
                if not is_gpu_resource(devices.resource_name):
                    continue
                for device_id in devices.device_ids:
                    holders = out.setdefault(device_uuid(device_id), [])
                    if ref not in holders:
                        holders.append(ref)
    return out


# --- the client ----------------------------------------------------------------------------------


class PodResourcesClient:
    """``AssignmentSource`` over the kubelet socket; one channel, reused, closed by ``aclose()``."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout_s: float = 2.0) -> None:
        self._target = f"unix://{socket_path}"
        self._timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None

    def _list_call(self) -> grpc.aio.UnaryUnaryMultiCallable:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._target)
        return self._channel.unary_unary(
            LIST_METHOD,
            request_serializer=lambda _req: encode_list_request(),
            response_deserializer=decode_list_response,
        )

    async def list(self) -> list[PodResources]:
        try:
            response: list[PodResources] = await self._list_call()(None, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise PodResourcesError(
                f"PodResources List on {self._target}: {exc.code().name} {exc.details()}"
            ) from exc
        return response

    async def assignments(self) -> Mapping[GpuUUID, Sequence[ContainerRef]]:
        return gpu_assignments(await self.list())

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
