"""kubectl, unmodified, against the real app over TLS: discovery, a pods/* read, an error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from adapter.api.tls import ServingTLS
from adapter.app import build_app
from tests.api.conftest import RULES, app_parts
from tests.fakes.source import FakeSource
from tests.support.kubectl import kubectl, write_kubeconfig

pytestmark = pytest.mark.kubectl


@pytest.fixture
async def kubeconfig(tmp_path: Path, source: FakeSource) -> AsyncIterator[Path]:
    tls = ServingTLS(cert_dir=tmp_path / "certs", hosts=("127.0.0.1", "localhost"))
    runner = web.AppRunner(build_app(app_parts(source, RULES)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context)
    await site.start()
    port = runner.addresses[0][1]
    yield write_kubeconfig(
        tmp_path / "kubeconfig", f"https://127.0.0.1:{port}", ca_file=tls.cert_file, token="t0ken"
    )
    await runner.cleanup()


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
async def test_kubectl_discovery_and_pods_read(kubeconfig: Path, version: str) -> None:
    result = await kubectl(kubeconfig, "get", "--raw", f"/apis/custom.metrics.k8s.io/{version}")
    assert result.returncode == 0, result.stderr
    discovery = json.loads(result.stdout)
    assert discovery["groupVersion"] == f"custom.metrics.k8s.io/{version}"
    assert {
        "name": "pods/inference_latency_p95",
        "singularName": "",
        "namespaced": True,
        "kind": "MetricValueList",
        "verbs": ["get"],
    } in discovery["resources"]

    result = await kubectl(
        kubeconfig,
        "get",
        "--raw",
        f"/apis/custom.metrics.k8s.io/{version}/namespaces/ml/pods/%2A/inference_latency_p95?labelSelector=app%3Dweb",
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["kind"] == "MetricValueList"
    assert body["apiVersion"] == f"custom.metrics.k8s.io/{version}"
    assert [(i["describedObject"]["name"], i["value"]) for i in body["items"]] == [
        ("web-7c9d5f6b8-aaaaa", "235m"),
        ("web-7c9d5f6b8-bbbbb", "500m"),
    ]


async def test_kubectl_shows_a_status_error(kubeconfig: Path) -> None:
    result = await kubectl(
        kubeconfig,
        "get",
        "--raw",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/*/no_such_metric",
    )
    assert result.returncode == 1
    assert (
        "Error from server (NotFound): the server could not find the metric no_such_metric for pods"
        in result.stderr
    )


async def test_kubectl_api_versions_lists_both_versions(kubeconfig: Path) -> None:
    result = await kubectl(kubeconfig, "api-versions")
    assert result.returncode == 0, result.stderr
    assert "custom.metrics.k8s.io/v1beta1" in result.stdout.split()
    assert "custom.metrics.k8s.io/v1beta2" in result.stdout.split()
