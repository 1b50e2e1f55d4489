"""The gpu-collector's small ports, faked: GPU assignments, cgroup owners, pod lookup.

NVML and the kubelet's PodResources socket have their own fakes (nvml.py, podresources.py).
"""

from collections.abc import Mapping, Sequence

from collectors.gpu.model import CgroupOwner, ContainerRef, GpuUUID, PodRef, PodUID


class StaticAssignments:
    def __init__(self, assignments: Mapping[GpuUUID, Sequence[ContainerRef]]) -> None:
        self.assignments_now = dict(assignments)
        self.error: Exception | None = None
        self.closed = False

    async def assignments(self) -> Mapping[GpuUUID, Sequence[ContainerRef]]:
        if self.error is not None:
            raise self.error
        return self.assignments_now

    async def aclose(self) -> None:
        self.closed = True


class Owners:
    def __init__(self, owners: Mapping[int, CgroupOwner]) -> None:
        self.owners = owners

    def owner_of(self, pid: int) -> CgroupOwner | None:
        return self.owners.get(pid)


class Pods:
    def __init__(self, pods: Mapping[PodUID, PodRef]) -> None:
        self.pods = pods

    def lookup(self, uid: PodUID) -> PodRef | None:
        return self.pods.get(uid)
