"""RBAC on a real API server: the adapter's own ServiceAccount (from deploy/base) is enough and
no more; a ServiceAccount without RBAC is refused, granted, then allowed; a bad token is 401."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

import pytest

from tests.cluster.conftest import ADAPTER_NS, Cluster, wait_for
from tests.cluster.controlplane import ApiError


def _direct(cluster: Cluster, path: str, token: str) -> int:
    context = ssl.create_default_context(cafile=str(cluster.serving_ca.cert))
    request = urllib.request.Request(
        cluster.adapter_url(path), headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_the_adapter_serves_with_its_own_service_account(cluster: Cluster) -> None:
    """Serving at all needs pods list+watch, the auth ConfigMap, TokenReview and SAR: the
    adapter runs with only the base's RBAC, and reads through the aggregator succeed."""
    plane, token = cluster.plane, cluster.adapter_token
    review = plane.request(
        "POST", "/apis/authentication.k8s.io/v1/tokenreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
    )  # fmt: skip
    assert review["status"]["user"]["username"] == (
        f"system:serviceaccount:{ADAPTER_NS}:inference-metrics-adapter"
    )
    for path in (
        "/api/v1/pods?limit=1",
        "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
    ):
        assert plane.status_of(path, token=token) == 200, path
    result = cluster.kubectl(
        "get", "--raw",
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ADAPTER_NS}/pods/%2A/inference_queue_depth",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_reads_outside_the_adapters_rbac_are_refused(cluster: Cluster) -> None:
    plane, token = cluster.plane, cluster.adapter_token
    for path in (
        "/api/v1/namespaces/kube-system/secrets",
        "/api/v1/secrets",
        "/apis/apps/v1/deployments",
        "/api/v1/nodes",
        "/api/v1/namespaces/kube-system/configmaps",
        "/apis/autoscaling/v2/horizontalpodautoscalers",
    ):
        assert plane.status_of(path, token=token) == 403, path
    with pytest.raises(ApiError) as refused:
        plane.request(
            "POST", f"/api/v1/namespaces/{ADAPTER_NS}/pods",
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
             "spec": {"containers": [{"name": "x", "image": "x"}]}},
            token=token,
        )  # fmt: skip
    assert refused.value.status == 403


def test_a_service_account_is_refused_then_granted_then_allowed(cluster: Cluster) -> None:
    plane = cluster.plane
    namespace = cluster.namespace("rbac-reader")
    plane.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "dashboards"}},
    )  # fmt: skip
    token = plane.token_for(namespace, "dashboards")
    read = (
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/pods/%2A/inference_queue_depth"
    )
    elsewhere = read.replace(f"/namespaces/{namespace}/", "/namespaces/default/")
    # Refused by kube-apiserver's own RBAC (through the aggregator) and by the adapter's SAR.
    assert plane.status_of(read, token=token) == 403
    assert _direct(cluster, read, token) == 403
    plane.request(
        "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "read-custom-metrics"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "inference-metrics-adapter:metrics-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "dashboards", "namespace": namespace}]},
    )  # fmt: skip
    # Allowed once the adapter's cached denial expires (--authorization-webhook-cache-unauthorized-ttl).
    wait_for("granted read allowed", lambda: _direct(cluster, read, token) == 200, 60)
    assert plane.status_of(read, token=token) == 200
    # The RoleBinding is per namespace: other namespaces stay refused.
    assert _direct(cluster, elsewhere, token) == 403
    assert plane.status_of(elsewhere, token=token) == 403


def test_an_invalid_token_is_401(cluster: Cluster) -> None:
    read = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ADAPTER_NS}/pods/%2A/inference_queue_depth"
    bogus = "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl"
    assert cluster.plane.status_of(read, token=bogus) == 401
    assert _direct(cluster, read, bogus) == 401
    assert _direct(cluster, "/metrics", bogus) == 401


def test_prometheus_scrapes_with_the_scraper_token_from_deploy(cluster: Cluster) -> None:
    """The ServiceMonitor's Secret is filled by the token controller and its ServiceAccount may
    GET /metrics, and nothing else."""
    plane = cluster.plane
    path = f"/api/v1/namespaces/{ADAPTER_NS}/secrets/inference-metrics-adapter-scraper-token"

    def token() -> str:
        data = plane.request("GET", path).get("data") or {}
        import base64  # noqa: PLC0415

        return base64.b64decode(data["token"]).decode() if "token" in data else ""

    wait_for("scraper token filled", lambda: token() != "", 60)
    scraper = token()
    assert _direct(cluster, "/metrics", scraper) == 200
    read = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ADAPTER_NS}/pods/%2A/inference_queue_depth"
    assert _direct(cluster, read, scraper) == 403
