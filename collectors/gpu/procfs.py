"""PID → pod UID and container id, from ``<proc_root>/<pid>/cgroup``.

Shapes understood (cgroup v1 lines ``N:controllers:path`` and the v2 line ``0::path``)::

    systemd driver   /kubepods.slice/kubepods-burstable.slice/
                     kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
    cgroupfs driver  /kubepods/burstable/pod<uid>/<container id>
    guaranteed QoS   /kubepods.slice/kubepods-pod<uid>.slice/…  and  /kubepods/pod<uid>/…

Container scopes seen: ``cri-containerd-<id>.scope``, ``crio-<id>.scope``, ``docker-<id>.scope``,
or the bare id under cgroupfs. Static pods have a 32-hex-digit UID (a hash), returned as is.
Processes outside ``kubepods`` (the host, system daemons) have no owner: None.
"""

from __future__ import annotations

import re
from pathlib import Path

from collectors.gpu.model import CgroupOwner, PodUID

_UUID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_POD = re.compile(rf"^(?:kubepods-(?:[a-z]+-)?)?pod(?P<uid>{_UUID}|[0-9a-f]{{32}})(?:\.slice)?$")
_SCOPE = re.compile(r"^(?:cri-containerd|crio|docker|containerd)-(?P<id>[0-9a-f]{12,64})\.scope$")
_BARE_ID = re.compile(r"^(?P<id>[0-9a-f]{64})$")


def parse_cgroup(text: str) -> CgroupOwner | None:
    """The pod owning a process, from the contents of its ``cgroup`` file; None outside pods."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or "kubepods" not in parts[2]:
            continue
        owner = _parse_path(parts[2])
        if owner is not None:
            return owner
    return None


def _parse_path(path: str) -> CgroupOwner | None:
    segments = [s for s in path.split("/") if s]
    for position, segment in enumerate(segments):
        match = _POD.match(segment)
        if match is None:
            continue
        uid = PodUID(match.group("uid").replace("_", "-"))
        rest = segments[position + 1 :]
        return CgroupOwner(pod_uid=uid, container_id=_container_id(rest[0]) if rest else None)
    return None


def _container_id(segment: str) -> str | None:
    match = _SCOPE.match(segment) or _BARE_ID.match(segment)
    return match.group("id") if match else None


class ProcfsPidResolver:
    """``PidResolver`` reading ``<proc_root>/<pid>/cgroup`` (hostPID and /proc mounted)."""

    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self._proc_root = proc_root

    def owner_of(self, pid: int) -> CgroupOwner | None:
        try:
            text = (self._proc_root / str(pid) / "cgroup").read_text()
        except OSError:
            return None  # the process exited, or is not visible from this PID namespace
        return parse_cgroup(text)
