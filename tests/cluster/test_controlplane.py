"""The suite's own helpers, without a control plane (these run everywhere, CI included): how
binaries are found and why the suite skips, the certificates the control plane is given, the
GPU scenario the simulated collector is fed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collectors.gpu.simulate import load_scenario
from tests.cluster import controlplane
from tests.cluster.conftest import gpu_scenario
from tests.cluster.controlplane import Pki, missing_assets


def _executable(path: Path) -> None:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_assets_are_found_as_envtest_finds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    reason = missing_assets()
    assert reason is not None
    assert "kube-apiserver, kube-controller-manager, etcd not found" in reason
    assert "KUBEBUILDER_ASSETS is not set" in reason
    assert "CI does not have" in reason
    for name in ("kube-apiserver", "kube-controller-manager"):
        _executable(tmp_path / name)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    reason = missing_assets()
    assert reason is not None
    assert "etcd not found" in reason  # etcd from neither the folder nor PATH
    assert f"KUBEBUILDER_ASSETS={tmp_path}" in reason
    etcd_dir = tmp_path / "bin"
    etcd_dir.mkdir()
    _executable(etcd_dir / "etcd")
    monkeypatch.setenv("PATH", str(etcd_dir))  # etcd from PATH, as Debian's etcd-server puts it
    paths = controlplane.asset_paths()
    assert paths == {
        "kube-apiserver": tmp_path / "kube-apiserver",
        "kube-controller-manager": tmp_path / "kube-controller-manager",
        "etcd": etcd_dir / "etcd",
    }
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "needs root and `ip`" in (missing_assets() or "")


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_pki_is_what_the_control_plane_needs(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path)
    apiserver = _load(pki.apiserver.cert)
    sans = apiserver.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {
        "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    }  # fmt: skip
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "203.0.113.1",
    }
    ca = _load(pki.ca.pair.cert)
    front_ca = _load(pki.front_proxy_ca.pair.cert)
    admin = _load(pki.admin.cert)
    assert admin.issuer == ca.subject
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "system:masters"
    )
    kcm = _load(pki.controller_manager.cert)
    assert kcm.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "system:kube-controller-manager"
    )
    proxy = _load(pki.front_proxy_client.cert)
    assert proxy.issuer == front_ca.subject  # the front-proxy CA, not the cluster CA
    assert proxy.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "front-proxy-client"
    )
    usage = proxy.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    for key in (pki.sa_key, pki.admin.key, pki.ca.pair.key):
        assert key.stat().st_mode & 0o077 == 0, key


def test_gpu_scenario_is_a_valid_simulation(tmp_path: Path) -> None:
    pods = [
        ({"metadata": {"namespace": "ns", "name": f"server-{i}",
                       "uid": f"11111111-2222-4333-8444-00000000000{i}"}}, value)
        for i, value in enumerate((80.0, 10.0))
    ]  # fmt: skip
    path = tmp_path / "scenario.yaml"
    import yaml  # noqa: PLC0415

    path.write_text(yaml.safe_dump(gpu_scenario(pods)))
    scenario = load_scenario(path)
    assert [(p.namespace, p.name) for p in scenario.pods] == [
        ("ns", "server-0"),
        ("ns", "server-1"),
    ]
    assert [g.utilization.values if g.utilization else None for g in scenario.gpus] == [
        (80.0,),
        (10.0,),
    ]
    assert set(scenario.refs) == {"11111111-2222-4333-8444-000000000000",
                                  "11111111-2222-4333-8444-000000000001"}  # fmt: skip
    # No pods: still a valid scenario (one idle GPU), so the collector keeps answering.
    path.write_text(yaml.safe_dump(gpu_scenario([])))
    empty = load_scenario(path)
    assert empty.pods == ()
    assert len(empty.gpus) == 1
