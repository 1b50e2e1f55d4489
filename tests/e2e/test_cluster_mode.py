"""`serve` in cluster mode against the loopback fake of the Kubernetes API.

Everything the cluster gives a real deployment comes from the fake: pods by
list+watch, the trust ConfigMap, TokenReview and SubjectAccessReview. A
simulated gpu-collector runs as a "pod" the adapter discovers by label.
Clients: kubectl with a client certificate and with tokens, and a raw TLS
client playing the aggregator's front proxy.
"""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from adapter.demo.stack import collector_command, free_port
from tests.e2e.conftest import wait_until
from tests.fakes.kube_api import FakeKubeServer
from tests.fakes.kube_auth_api import KubeAuthState, add_auth_routes, authentication_data
from tests.support.kubectl import kubectl, write_kubeconfig
from tests.support.llm_scene import kube_pods, start_adapter, write_gpu_scenario

pytestmark = [pytest.mark.kubectl, pytest.mark.timeout(180)]
G = "/apis/custom.metrics.k8s.io/v1beta2"
GPU_READ = f"{G}/namespaces/ml/pods/%2A/gpu_utilization?labelSelector=app%3Dllm"
HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"


@dataclass
class Cluster:
    fake: FakeKubeServer
    auth: KubeAuthState
    adapter: subprocess.Popen[bytes]
    port: int
    serving_ca: Path
    jane: Path  # kubeconfig: client certificate CN=jane O=ml-team
    hpa: Path  # kubeconfig: the HPA controller's token
    stranger: Path  # kubeconfig: a token TokenReview does not know
    front_proxy: trustme.LeafCert
    front_ca: trustme.CA
    client_ca: trustme.CA
    log: Path

    def front_proxy_context(self, leaf: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.serving_ca))
        leaf = leaf or self.front_proxy
        with leaf.private_key_and_cert_chain_pem.tempfile() as pem:
            context.load_cert_chain(pem)
        return context


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    client_ca, front_ca = trustme.CA(), trustme.CA()
    front_proxy = front_ca.issue_cert("front-proxy-client", common_name="front-proxy-client")
    jane = client_ca.issue_cert("jane", common_name="jane", organization_name="ml-team")
    jane_pem = tmp_path / "jane.pem"
    jane.private_key_and_cert_chain_pem.write_to_path(jane_pem)

    auth = KubeAuthState()
    auth.set_configmap(
        authentication_data(front_ca.cert_pem.bytes().decode(), client_ca.cert_pem.bytes().decode())
    )
    auth.tokens["hpa-token"] = {"username": HPA_USER, "groups": ["system:serviceaccounts"]}
    auth.allow(HPA_USER)
    auth.allow("jane", namespace="ml", subresource="gpu_utilization")

    fake = FakeKubeServer(extensions=[lambda app: add_auth_routes(app, auth)])
    collector_port = free_port()
    for pod in kube_pods():
        fake.state.add_pod(pod)
    await fake.start()
    scenario = write_gpu_scenario(tmp_path / "gpu.yaml")
    collector = subprocess.Popen(
        collector_command(scenario, collector_port, "gpu-node-1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kubeconfig = fake.write_kubeconfig(tmp_path / "adapter-kubeconfig")
    adapter, port = start_adapter(
        tmp_path,
        kubeconfig,
        "--prometheus-url",
        "http://127.0.0.1:9",
        "--gpu-collector-port",
        str(collector_port),
        "--gpu-pull-interval",
        "500ms",
    )
    log = tmp_path / "adapter.log"
    serving_ca = tmp_path / "certs" / "apiserver.crt"
    server = f"https://127.0.0.1:{port}"
    try:

        async def started() -> bool:
            assert adapter.poll() is None, log.read_text()
            return serving_ca.exists() and b"serving custom.metrics" in log.read_bytes()

        await wait_until(started)
        yield Cluster(
            fake=fake,
            auth=auth,
            adapter=adapter,
            port=port,
            serving_ca=serving_ca,
            jane=write_kubeconfig(
                tmp_path / "jane",
                server,
                ca_file=serving_ca,
                client_cert=jane_pem,
                client_key=jane_pem,
            ),
            hpa=write_kubeconfig(tmp_path / "hpa", server, ca_file=serving_ca, token="hpa-token"),
            stranger=write_kubeconfig(
                tmp_path / "stranger", server, ca_file=serving_ca, token="who-knows"
            ),
            front_proxy=front_proxy,
            front_ca=front_ca,
            client_ca=client_ca,
            log=log,
        )
    finally:
        for proc in (adapter, collector):
            proc.terminate()
            proc.wait(20)
        await fake.close()


async def gpu_items(config: Path) -> list[dict[str, Any]]:
    result = await kubectl(config, "get", "--raw", GPU_READ)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout)["items"])


async def test_pods_from_the_watch_and_gpu_values_from_a_discovered_collector(
    cluster: Cluster,
) -> None:
    async def both() -> list[dict[str, Any]] | None:
        got = await gpu_items(cluster.jane)
        return got if len(got) == 2 else None

    items = await wait_until(both)
    assert [i["describedObject"]["name"] for i in items] == ["llm-0", "llm-1"]
    assert all(i["windowSeconds"] == 10 for i in items)

    cluster.fake.state.delete_pod("ml", "llm-1")  # the watch removes it from every answer

    async def one() -> bool:
        return [i["describedObject"]["name"] for i in await gpu_items(cluster.jane)] == ["llm-0"]

    await wait_until(one)


async def test_subject_access_review_per_metric_and_namespace(cluster: Cluster) -> None:
    denied = await kubectl(
        cluster.jane, "get", "--raw", f"{G}/namespaces/ml/pods/%2A/inference_queue_depth"
    )
    assert denied.returncode == 1
    assert (
        'Error from server (Forbidden): pods.custom.metrics.k8s.io "*" is forbidden: User "jane" cannot get '
        'resource "pods/inference_queue_depth" in API group "custom.metrics.k8s.io" in the namespace "ml"'
    ) in denied.stderr
    other_ns = await kubectl(
        cluster.jane, "get", "--raw", f"{G}/namespaces/prod/pods/%2A/gpu_utilization"
    )
    assert other_ns.returncode == 1
    assert "(Forbidden)" in other_ns.stderr
    reviews = [
        r for r in cluster.auth.reviews if (r.get("resourceAttributes") or {}).get("subresource")
    ]
    assert {
        "group": "custom.metrics.k8s.io",
        "version": "v1beta2",
        "resource": "pods",
        "subresource": "inference_queue_depth",
        "name": "*",
        "namespace": "ml",
        "verb": "get",
    }.items() <= reviews[0]["resourceAttributes"].items()


async def test_tokens_through_token_review(cluster: Cluster) -> None:
    allowed = await kubectl(
        cluster.hpa, "get", "--raw", f"{G}/namespaces/ml/pods/%2A/inference_queue_depth"
    )
    assert allowed.returncode == 0, allowed.stderr
    unknown = await kubectl(cluster.stranger, "get", "--raw", G)
    assert unknown.returncode == 1
    assert "Unauthorized" in unknown.stderr
    assert "hpa-token" not in cluster.log.read_text()


async def test_front_proxy_headers_are_trusted_only_from_the_front_proxy(cluster: Cluster) -> None:
    url = f"https://127.0.0.1:{cluster.port}{G}/namespaces/ml/pods/%2A/inference_queue_depth"
    headers = {"X-Remote-User": HPA_USER, "X-Remote-Group": "system:serviceaccounts"}
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers, ssl=cluster.front_proxy_context()) as response:
            assert response.status == 200, await response.text()
        # The same headers from a certificate that is not the front proxy's are ignored:
        # the caller is jane, who may not read queue depth.
        jane = cluster.client_ca.issue_cert("jane", common_name="jane", organization_name="ml-team")
        async with session.get(
            url, headers=headers, ssl=cluster.front_proxy_context(jane)
        ) as response:
            assert response.status == 403
            assert 'User "jane" cannot get' in (await response.json())["message"]
        # A certificate from the front-proxy CA whose CN is not allowed: headers ignored,
        # and the certificate authenticates nobody (it is not from the client CA).
        intruder = cluster.front_ca.issue_cert("intruder", common_name="intruder")
        async with session.get(
            url, headers=headers, ssl=cluster.front_proxy_context(intruder)
        ) as response:
            assert response.status == 401
