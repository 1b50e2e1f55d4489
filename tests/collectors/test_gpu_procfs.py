"""PID → pod UID from /proc/<pid>/cgroup: cgroup v1 and v2 x systemd and cgroupfs drivers."""

from pathlib import Path

import pytest

from collectors.gpu.model import CgroupOwner, PodUID
from collectors.gpu.procfs import ProcfsPidResolver, parse_cgroup

UID = "6f1c2b3a-1234-4cde-8f00-0123456789ab"
UID_US = UID.replace("-", "_")
CID = "a" * 64

V2_SYSTEMD = (
    f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/"
    f"cri-containerd-{CID}.scope\n"
)
V2_CGROUPFS = f"0::/kubepods/burstable/pod{UID}/{CID}\n"
V1_SYSTEMD = (
    "12:pids:/system.slice/containerd.service\n"
    f"11:memory:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/"
    f"cri-containerd-{CID}.scope\n"
    f"4:cpu,cpuacct:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/"
    f"cri-containerd-{CID}.scope\n"
    "1:name=systemd:/system.slice/containerd.service\n"
)
V1_CGROUPFS = (
    f"11:memory:/kubepods/besteffort/pod{UID}/{CID}\n"
    f"10:devices:/kubepods/besteffort/pod{UID}/{CID}\n"
    "0::/\n"
)
GUARANTEED_SYSTEMD = f"0::/kubepods.slice/kubepods-pod{UID_US}.slice/crio-{CID}.scope\n"
GUARANTEED_CGROUPFS = f"4:cpu:/kubepods/pod{UID}/{CID}\n"
HOST_V2 = "0::/system.slice/sshd.service\n"
HOST_V1 = "12:pids:/user.slice/user-0.slice/session-1.scope\n1:name=systemd:/init.scope\n"
POD_LEVEL_ONLY = (
    f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice\n"
)
STATIC_POD = "0::/kubepods/burstable/pod0123456789abcdef0123456789abcdef/" + CID + "\n"

OWNER = CgroupOwner(PodUID(UID), CID)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(V2_SYSTEMD, OWNER, id="v2-systemd"),
        pytest.param(V2_CGROUPFS, OWNER, id="v2-cgroupfs"),
        pytest.param(V1_SYSTEMD, OWNER, id="v1-systemd"),
        pytest.param(V1_CGROUPFS, OWNER, id="v1-cgroupfs"),
        pytest.param(GUARANTEED_SYSTEMD, OWNER, id="guaranteed-systemd-crio"),
        pytest.param(GUARANTEED_CGROUPFS, OWNER, id="guaranteed-cgroupfs"),
        pytest.param(POD_LEVEL_ONLY, CgroupOwner(PodUID(UID), None), id="pod-cgroup-no-container"),
        pytest.param(
            STATIC_POD,
            CgroupOwner(PodUID("0123456789abcdef0123456789abcdef"), CID),
            id="static-pod-hash-uid",
        ),
        pytest.param(HOST_V2, None, id="host-v2"),
        pytest.param(HOST_V1, None, id="host-v1"),
        pytest.param("", None, id="empty"),
        pytest.param("garbage without colons\n", None, id="garbage"),
    ],
)
def test_parse_cgroup(text: str, expected: CgroupOwner | None) -> None:
    assert parse_cgroup(text) == expected


@pytest.fixture
def proc_root(tmp_path: Path) -> Path:
    tree = {
        101: V2_SYSTEMD,
        102: V2_CGROUPFS,
        103: V1_SYSTEMD,
        104: V1_CGROUPFS,
        1: HOST_V2,
        2: HOST_V1,
    }
    for pid, text in tree.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(text)
    (tmp_path / "self").mkdir()  # non-numeric entries exist in a real /proc
    return tmp_path


@pytest.mark.parametrize("pid", [101, 102, 103, 104])
def test_resolver_reads_pod_processes(proc_root: Path, pid: int) -> None:
    assert ProcfsPidResolver(proc_root).owner_of(pid) == OWNER


@pytest.mark.parametrize("pid", [1, 2])
def test_resolver_host_processes_have_no_pod(proc_root: Path, pid: int) -> None:
    assert ProcfsPidResolver(proc_root).owner_of(pid) is None


def test_resolver_exited_process_is_none(proc_root: Path) -> None:
    assert ProcfsPidResolver(proc_root).owner_of(999) is None
