"""The authentication matrix over real TLS (protocol.md section 7)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.auth.conftest import PKI, Server

METRIC = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/%2A/latency_p95"
# The SubjectAccessReview's resourceAttributes for a read of METRIC.
METRIC_REVIEWED = {
    "group": "custom.metrics.k8s.io",
    "version": "v1beta2",
    "resource": "pods",
    "subresource": "latency_p95",
    "name": "*",
    "namespace": "ml",
    "verb": "get",
}


async def test_no_certificate_no_token_is_401(server: Server, pki: PKI) -> None:
    status, body = await server.get(pki, METRIC)
    assert (status, body["reason"], body["message"]) == (401, "Unauthorized", "Unauthorized")


async def test_unknown_ca_certificate_fails_the_handshake(server: Server, pki: PKI) -> None:
    cert = pki.unknown_ca.issue_cert("mallory@example.com", common_name="mallory")
    with pytest.raises(aiohttp.ClientError):
        await server.get(pki, METRIC, cert=cert)


async def test_front_proxy_ca_with_a_cn_not_allowed_is_401(server: Server, pki: PKI) -> None:
    cert = pki.proxy_ca.issue_cert("other-proxy", common_name="other-proxy")
    status, _ = await server.get(pki, METRIC, cert=cert, headers={"X-Remote-User": "admin"})
    assert status == 401
    assert server.fake.calls["subjectaccessreviews"] == 0


async def test_allowed_front_proxy_asserts_user_groups_extra_uid(server: Server, pki: PKI) -> None:
    server.fake.allow("jane")
    cert = pki.proxy_ca.issue_cert("front-proxy-client", common_name="front-proxy-client")
    headers = {
        "X-Remote-User": "jane",
        "X-Remote-Group": "devs",
        "X-Remote-Uid": "u-1",
        "X-Remote-Extra-Scopes%2Fx": "read",
    }
    status, body = await server.get(pki, METRIC, cert=cert, headers=headers)
    assert status == 200
    assert body["user"] == "jane"
    assert body["groups"] == ["devs", "system:authenticated"]
    assert body["extra"] == {"scopes/x": ["read"]}
    assert (body["uid"], body["authn"], body["authz"]) == ("u-1", "front-proxy", "review")
    spec = server.fake.reviews[-1]
    assert (spec["user"], spec["uid"]) == ("jane", "u-1")
    assert spec["resourceAttributes"] == METRIC_REVIEWED


async def test_repeated_group_headers_are_all_kept(server: Server, pki: PKI) -> None:
    server.fake.allow("jane")
    cert = pki.proxy_ca.issue_cert("front-proxy-client", common_name="front-proxy-client")
    async with server.session(pki, cert) as s:
        headers = [("X-Remote-User", "jane"), ("X-Remote-Group", "a"), ("X-Remote-Group", "b")]
        async with s.get(server.url + METRIC, headers=headers) as r:
            assert r.status == 200
            assert (await r.json())["groups"] == ["a", "b", "system:authenticated"]


async def test_forged_remote_headers_without_front_proxy_cert_are_ignored(
    server: Server, pki: PKI
) -> None:
    headers = {"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}
    status, _ = await server.get(pki, METRIC, headers=headers)
    assert status == 401


async def test_forged_headers_with_a_client_ca_cert_are_ignored(server: Server, pki: PKI) -> None:
    server.fake.allow("alice")
    cert = pki.client_ca.issue_cert("alice", common_name="alice")
    headers = {"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}
    status, body = await server.get(pki, METRIC, cert=cert, headers=headers)
    assert status == 200
    assert (body["user"], body["authn"], body["authz"]) == ("alice", "x509", "review")
    assert "system:masters" not in body["groups"]


async def test_client_ca_certificate_user_is_cn_groups_are_o(server: Server, pki: PKI) -> None:
    server.fake.allow(group="ops")
    cert = pki.client_ca.issue_cert("bob", common_name="bob", organization_name="ops")
    status, body = await server.get(pki, METRIC, cert=cert)
    assert status == 200
    assert body["user"] == "bob"
    assert body["groups"] == ["ops", "system:authenticated"]


async def test_system_masters_short_circuits_authorization(server: Server, pki: PKI) -> None:
    cert = pki.client_ca.issue_cert("root", common_name="root", organization_name="system:masters")
    status, body = await server.get(pki, METRIC, cert=cert)
    assert (status, body["authz"]) == (200, "masters")
    assert server.fake.calls["subjectaccessreviews"] == 0


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
async def test_health_paths_need_no_credentials(server: Server, pki: PKI, path: str) -> None:
    status, body = await server.get(pki, path)
    assert (status, body["authz"], body["user"]) == (200, "always", None)


async def test_health_prefix_tricks_are_not_always_allowed(server: Server, pki: PKI) -> None:
    for path in ["/healthz/../apis", "/healthz%2F..%2Fapis", "/readyz?x", "/livez/x"]:
        status, _ = await server.get(pki, path)
        if path == "/readyz?x":
            assert status == 200  # the query is not part of the path
        else:
            assert status == 401, path


async def test_explain_needs_credentials(server: Server, pki: PKI) -> None:
    status, body = await server.get(pki, METRIC + "?labelSelector=app%3Dweb&explain=true")
    assert (status, body["reason"]) == (401, "Unauthorized")
    assert server.fake.calls["subjectaccessreviews"] == 0


async def test_explain_is_reviewed_exactly_as_the_read_it_explains(
    server: Server, pki: PKI
) -> None:
    cert = pki.proxy_ca.issue_cert("front-proxy-client", common_name="front-proxy-client")
    status, _ = await server.get(
        pki, METRIC + "?explain=true", cert=cert, headers={"X-Remote-User": "bob"}
    )
    assert status == 403  # bob may not read the metric, so he may not explain it
    server.fake.allow("jane")
    jane = {"X-Remote-User": "jane"}
    status, _ = await server.get(pki, METRIC + "?explain=true", cert=cert, headers=jane)
    assert status == 200
    assert server.fake.reviews[-1]["resourceAttributes"] == METRIC_REVIEWED
    # The read itself is then allowed from the same cache entry: the very same decision.
    status, body = await server.get(pki, METRIC, cert=cert, headers=jane)
    assert (status, body["authz"]) == (200, "cache")
