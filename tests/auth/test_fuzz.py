"""Property: random headers and paths never produce a 500 and never bypass authn/authz."""

from __future__ import annotations

import aiohttp
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from yarl import URL

from adapter.auth.authorizer import request_attributes
from adapter.core.errors import BadRequest
from tests.auth.conftest import PKI, Server

SEGMENTS = [
    "apis",
    "custom.metrics.k8s.io",
    "v1beta2",
    "v1beta1",
    "namespaces",
    "ml",
    "prod",
    "pods",
    "%2A",
    "*",
    "metrics",
    "m",
    "%2F",
    "..",
    ".",
    "healthz",
    "livez",
    "",
    "%00",
    "%ZZ",
    "a%2Fb",
    "nodes",
    "deployments.apps",
    "%C3%A9",
    "%FF",
    "openapi",
    "v2",
]
HEADER_NAMES = [
    "X-Remote-User",
    "x-remote-user",
    "X-Remote-Group",
    "X-Remote-Extra-Scopes",
    "X-Remote-Uid",
    "Authorization",
    "Impersonate-User",
    "Impersonate-Group",
    "X-Forwarded-User",
]
VALUES = st.one_of(
    st.sampled_from(["admin", "alice", "system:masters", "Bearer alice", "Bearer ", "Bearer x y"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
paths = st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=9).map(lambda s: "/" + "/".join(s))
headers = st.lists(st.tuples(st.sampled_from(HEADER_NAMES), VALUES), max_size=6)
identities = st.sampled_from(["none", "alice", "bob", "proxy-not-allowed"])


@pytest.fixture
async def sessions(server: Server, pki: PKI) -> dict[str, aiohttp.ClientSession]:
    server.fake.allow("alice", namespace="ml")
    return {
        "none": server.session(pki),
        "alice": server.session(pki, pki.client_ca.issue_cert("alice", common_name="alice")),
        "bob": server.session(pki, pki.client_ca.issue_cert("bob", common_name="bob")),
        "proxy-not-allowed": server.session(
            pki, pki.proxy_ca.issue_cert("evil", common_name="evil-proxy")
        ),
    }


def alice_may_read(path: str) -> bool:
    try:
        attributes = request_attributes("GET", path)
    except BadRequest:
        return False
    return attributes.resource is not None and attributes.resource.namespace == "ml"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(path=paths, headers=headers, who=identities)
@example(
    path="/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/%2A/m",
    headers=[("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")],
    who="alice",
)
@example(
    path="/apis/custom.metrics.k8s.io/v1beta2/namespaces/prod/pods/%2A/m", headers=[], who="alice"
)
@example(
    path="/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/%2A/m",
    headers=[("X-Remote-User", "alice")],
    who="proxy-not-allowed",
)
async def test_no_500_no_bypass(
    server: Server,
    sessions: dict[str, aiohttp.ClientSession],
    path: str,
    headers: list[tuple[str, str]],
    who: str,
) -> None:
    url = URL(server.url + path.replace("?", "%3F").replace("#", "%23"), encoded=True)
    async with sessions[who].get(url, headers=headers) as response:
        status = response.status
        body = await response.json(content_type=None) if status == 200 else None
    assert status < 500
    if status != 200:
        return
    assert body is not None
    if body["authz"] == "always":
        assert url.raw_path in {"/healthz", "/livez", "/readyz"}
        return
    assert body["user"] == who == "alice"
    assert "system:masters" not in body["groups"]
    assert alice_may_read(url.raw_path), url.raw_path
