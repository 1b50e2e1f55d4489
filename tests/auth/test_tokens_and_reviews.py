"""Bearer tokens (TokenReview) and SubjectAccessReview decisions, with fake time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from adapter.auth.authorizer import request_attributes
from adapter.auth.tokens import TokenAuthenticator
from adapter.core.errors import BadRequest
from tests.auth.conftest import PKI, Server

P = "/apis/custom.metrics.k8s.io/v1beta2"
ML = f"{P}/namespaces/ml/pods/%2A/latency_p95"
HPA: dict[str, Any] = {
    "username": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
    "groups": ["system:serviceaccounts"],
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_valid_token_is_reviewed_then_cached(server: Server, pki: PKI) -> None:
    server.fake.tokens["good"] = HPA
    server.fake.allow(HPA["username"])
    for _ in range(3):
        status, body = await server.get(pki, ML, headers=bearer("good"))
        assert (status, body["user"], body["authn"]) == (200, HPA["username"], "token")
    assert server.fake.calls["tokenreviews"] == 1
    assert body["groups"] == ["system:serviceaccounts", "system:authenticated"]


async def test_invalid_token_is_401(server: Server, pki: PKI) -> None:
    status, body = await server.get(pki, ML, headers=bearer("nope"))
    assert (status, body["message"]) == (401, "Unauthorized")
    status, _ = await server.get(pki, ML, headers={"Authorization": "Bearer "})
    assert status == 401


async def test_expired_token_is_rejected_once_the_cache_expires(server: Server, pki: PKI) -> None:
    server.fake.tokens["t"] = HPA
    server.fake.allow(HPA["username"])
    assert (await server.get(pki, ML, headers=bearer("t")))[0] == 200
    del server.fake.tokens["t"]  # the token expires at the API server
    assert (await server.get(pki, ML, headers=bearer("t")))[0] == 200  # cached (10 s)
    server.clock.advance(10.5)
    assert (await server.get(pki, ML, headers=bearer("t")))[0] == 401
    assert server.fake.calls["tokenreviews"] == 2


async def test_token_audiences_must_intersect(server: Server, pki: PKI) -> None:
    class API:
        async def create_token_review(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
            return {
                "status": {"authenticated": True, "user": {"username": "x"}, "audiences": ["other"]}
            }

    result = await TokenAuthenticator(API(), audiences=["metrics"]).authenticate("t")
    assert result.user is None


async def test_tokenreview_api_failure_is_401_and_not_cached(server: Server, pki: PKI) -> None:
    server.fake.tokens["good"] = HPA
    server.fake.allow(HPA["username"])
    server.fake.fail = 503
    status, body = await server.get(pki, ML, headers=bearer("good"))
    assert (status, body["message"]) == (401, "Unauthorized")
    server.fake.fail = None
    assert (await server.get(pki, ML, headers=bearer("good")))[0] == 200


async def test_sar_failure_is_a_generic_500(server: Server, pki: PKI) -> None:
    cert = pki.client_ca.issue_cert("alice", common_name="alice")
    server.fake.fail = 500
    status, body = await server.get(pki, ML, cert=cert)
    assert status == 500
    assert "fake" not in body["message"]


async def test_sar_allow_and_deny_per_namespace(server: Server, pki: PKI) -> None:
    server.fake.allow("alice", namespace="ml")
    cert = pki.client_ca.issue_cert("alice", common_name="alice")
    assert (await server.get(pki, ML, cert=cert))[0] == 200
    status, body = await server.get(pki, f"{P}/namespaces/prod/pods/web-1/latency_p95", cert=cert)
    assert status == 403
    assert body["message"] == (
        'pods.custom.metrics.k8s.io "web-1" is forbidden: User "alice" cannot get resource '
        '"pods/latency_p95" in API group "custom.metrics.k8s.io" in the namespace "prod"'
    )


async def test_sar_allow_and_deny_per_metric(server: Server, pki: PKI) -> None:
    server.fake.allow("alice", subresource="queue_depth")
    cert = pki.client_ca.issue_cert("alice", common_name="alice")
    assert (await server.get(pki, f"{P}/namespaces/ml/pods/%2A/queue_depth", cert=cert))[0] == 200
    assert (await server.get(pki, ML, cert=cert))[0] == 403
    status, body = await server.get(pki, f"{P}/nodes/n1/gpu_util", cert=cert)
    assert status == 403
    assert body["message"].endswith(
        'cannot get resource "nodes/gpu_util" in API group '
        '"custom.metrics.k8s.io" at the cluster scope'
    )


async def test_namespace_metric_is_authorized_as_kube_parses_it(server: Server, pki: PKI) -> None:
    server.fake.allow("alice")
    cert = pki.client_ca.issue_cert("alice", common_name="alice")
    assert (await server.get(pki, f"{P}/namespaces/ml/metrics/queue_depth", cert=cert))[0] == 200
    assert server.fake.reviews[-1]["resourceAttributes"] == {
        "group": "custom.metrics.k8s.io",
        "version": "v1beta2",
        "resource": "metrics",
        "name": "queue_depth",
        "namespace": "ml",
        "verb": "get",
    }


async def test_discovery_and_metrics_are_non_resource_urls(server: Server, pki: PKI) -> None:
    server.fake.allow("alice", path="/metrics")
    cert = pki.client_ca.issue_cert("alice", common_name="alice")
    assert (await server.get(pki, "/metrics", cert=cert))[0] == 200
    status, body = await server.get(pki, P, cert=cert)
    assert status == 403
    assert body["message"] == f'forbidden: User "alice" cannot get path "{P}"'
    assert server.fake.reviews[-1]["nonResourceAttributes"] == {"path": P, "verb": "get"}


async def test_allow_and_deny_cached_separately_with_fake_time(server: Server, pki: PKI) -> None:
    server.fake.allow("alice", namespace="ml")
    cert = pki.client_ca.issue_cert("alice", common_name="alice")
    denied = f"{P}/namespaces/prod/pods/%2A/latency_p95"
    for _ in range(3):
        assert (await server.get(pki, ML, cert=cert))[0] == 200
        status, body = await server.get(pki, denied, cert=cert)
        assert status == 403
    assert server.fake.calls["subjectaccessreviews"] == 2
    status, body = await server.get(pki, ML, cert=cert)
    assert body["authz"] == "cache"
    server.fake.rules.clear()
    server.fake.allow("alice")  # RBAC changed: now prod too
    server.clock.advance(9.0)
    assert (await server.get(pki, denied, cert=cert))[0] == 403  # deny still cached
    server.clock.advance(1.5)
    assert (await server.get(pki, denied, cert=cert))[0] == 200
    assert server.fake.calls["subjectaccessreviews"] == 3


async def test_malformed_metric_path_is_400_without_review(server: Server, pki: PKI) -> None:
    cert = pki.client_ca.issue_cert("alice", common_name="alice")
    status, body = await server.get(pki, f"{P}/namespaces/ml/pods", cert=cert)
    assert (status, body["reason"]) == (400, "BadRequest")
    assert server.fake.calls["subjectaccessreviews"] == 0


@pytest.mark.parametrize(
    ("path", "resource", "name", "subresource", "namespace"),
    [
        (f"{P}/namespaces/ml/pods/%2A/m", "pods", "*", "m", "ml"),
        (f"{P}/namespaces/ml/deployments.apps/web/m", "deployments.apps", "web", "m", "ml"),
        (f"{P}/nodes/*/m", "nodes", "*", "m", ""),
        (f"{P}/namespaces/ml/metrics/m", "metrics", "m", "", "ml"),
        ("/apis/custom.metrics.k8s.io/v1beta1/namespaces/a/pods/p/m", "pods", "p", "m", "a"),
    ],
)
def test_request_attributes_table(
    path: str, resource: str, name: str, subresource: str, namespace: str
) -> None:
    attrs = request_attributes("GET", path)
    assert attrs.resource is not None
    assert (attrs.resource.resource, attrs.resource.name) == (resource, name)
    assert (attrs.resource.subresource, attrs.resource.namespace) == (subresource, namespace)


@pytest.mark.parametrize("path", ["/", "/apis", "/openapi/v2", "/metrics", P])
def test_non_resource_table(path: str) -> None:
    assert request_attributes("GET", path).resource is None


def test_bad_path_raises_bad_request() -> None:
    with pytest.raises(BadRequest):
        request_attributes("GET", f"{P}/namespaces/ml/pods/x/a%2Fb")
