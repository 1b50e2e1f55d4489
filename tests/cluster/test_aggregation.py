"""The real aggregator and the adapter: both APIServices Available over verified TLS, and the
front-proxy identity authenticated from the extension-apiserver-authentication ConfigMap."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

from tests.cluster.conftest import (
    ADAPTER,
    ADAPTER_NS,
    APISERVICES,
    Cluster,
    apiservice_available,
    point_apiservices,
    wait_for,
)
from tests.cluster.controlplane import Authority, b64

HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
HPA_GROUPS = (
    "system:serviceaccounts",
    "system:serviceaccounts:kube-system",
    "system:authenticated",
)


def test_both_apiservices_are_available_with_a_verified_ca_bundle(cluster: Cluster) -> None:
    ca = b64(cluster.serving_ca.pem())
    for name in APISERVICES:
        apiservice = cluster.plane.request(
            "GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}"
        )
        spec = apiservice["spec"]
        assert spec["caBundle"] == ca
        assert "insecureSkipTLSVerify" not in spec
        assert spec["service"]["name"] == ADAPTER
        assert spec["service"]["namespace"] == ADAPTER_NS
        assert apiservice_available(cluster.plane, name)[0] == "True"
    # Discovery through the aggregator lists our metrics.
    result = cluster.kubectl("get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2")
    assert result.returncode == 0, result.stderr
    names = {r["name"] for r in json.loads(result.stdout)["resources"]}
    assert {"pods/inference_queue_depth", "pods/inference_latency_p95", "pods/gpu_utilization",
            "deployments.apps/inference_latency_p95"} <= names  # fmt: skip


def test_a_wrong_ca_bundle_makes_the_apiservice_unavailable(cluster: Cluster) -> None:
    """The aggregator really verifies: another CA's bundle fails the TLS handshake."""
    other = Authority(cluster.workdir, "unrelated-ca")
    name = APISERVICES[0]
    point_apiservices(cluster.plane, cluster.adapter_port, other.pair.pem())
    try:
        wait_for(
            f"{name} unavailable", lambda: apiservice_available(cluster.plane, name)[0] == "False"
        )
        _, message = apiservice_available(cluster.plane, name)
        assert "x509" in message or "certificate" in message, message
    finally:
        point_apiservices(cluster.plane, cluster.adapter_port, cluster.serving_ca.pem())
    for each in APISERVICES:
        wait_for(
            f"{each} available again",
            lambda each=each: apiservice_available(cluster.plane, each)[0] == "True",
        )


def _direct(cluster: Cluster, path: str, cert: tuple[str, str], headers: dict[str, str]) -> int:
    """A request straight to the adapter, as the aggregator's front proxy makes it."""
    context = ssl.create_default_context(cafile=str(cluster.serving_ca.cert))
    context.load_cert_chain(*cert)
    request = urllib.request.Request(cluster.adapter_url(path), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _front_proxy_headers() -> dict[str, str]:
    # urllib sends one header per name: the adapter must accept the groups one per header; a
    # single header is enough to carry the HPA's first group here.
    return {"X-Remote-User": HPA_USER, "X-Remote-Group": HPA_GROUPS[0]}


def test_front_proxy_identity_comes_from_the_cluster_configmap(cluster: Cluster) -> None:
    """The adapter was given no --requestheader-* flags: it trusts the front-proxy CA and the
    allowed name published in kube-system/extension-apiserver-authentication."""
    configmap = cluster.plane.request(
        "GET", "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
    )["data"]
    assert json.loads(configmap["requestheader-allowed-names"]) == ["front-proxy-client"]
    pki = cluster.plane.pki
    assert (
        configmap["requestheader-client-ca-file"].strip()
        == pki.front_proxy_ca.pair.pem().decode().strip()
    )
    path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ADAPTER_NS}/pods/%2A/inference_queue_depth"
    real = (str(pki.front_proxy_client.cert), str(pki.front_proxy_client.key))
    assert _direct(cluster, path, real, _front_proxy_headers()) == 200
    # The same name from a CA that is not the published front-proxy CA is nobody.
    impostor_ca = Authority(cluster.workdir, "impostor-front-proxy-ca")
    impostor = impostor_ca.issue("impostor", "front-proxy-client", client=True)
    try:
        status = _direct(
            cluster, path, (str(impostor.cert), str(impostor.key)), _front_proxy_headers()
        )
    except (ssl.SSLError, urllib.error.URLError):
        status = 0  # refused in the handshake: the CA is not trusted at all
    assert status in {0, 401}
    # A client certificate of the cluster CA (kubectl's admin) is a user, not a front proxy:
    # the X-Remote-User header is ignored and the request is made as cluster-admin.
    admin = (str(pki.admin.cert), str(pki.admin.key))
    assert _direct(cluster, path, admin, {"X-Remote-User": "system:anonymous"}) == 200
