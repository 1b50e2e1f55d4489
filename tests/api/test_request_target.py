"""One request target for authentication, authorization, the access log and routing.

The finding this pins down: for an absolute-form request line the authorizer and
the access log saw one path (``rel_url``) and the handler another (the raw
target), and the client got an ``APIResourceList`` with a garbled
``groupVersion``. Now the target is normalized once, or refused with 400.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from adapter.api.middleware import (
    access_log_middleware,
    auth_middleware,
    chain,
    inflight_limit_middleware,
)
from adapter.api.target import RequestTarget, parse_target
from adapter.auth.authenticator import Authenticated, Authenticator, AuthRequest
from adapter.auth.authorizer import Decision, RequestAttributes
from adapter.auth.trust import TrustState
from adapter.auth.user import UserInfo
from adapter.core.errors import BadRequest
from tests.api.conftest import app_parts, exchange, serve
from tests.fakes.source import FakeSource

METRIC = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/%2A/inference_latency_p95"


class AlwaysAlice(Authenticator):
    def __init__(self) -> None:
        super().__init__(TrustState())

    async def authenticate(self, request: AuthRequest) -> Authenticated | None:
        if ("Authorization", "Bearer alice") in request.headers:
            return Authenticated(UserInfo("alice", ("system:authenticated",)), "token")
        return None


class RecordingAuthorizer:
    def __init__(self) -> None:
        self.seen: list[RequestAttributes] = []

    async def authorize(self, user: UserInfo, attributes: RequestAttributes) -> Decision:
        del user
        self.seen.append(attributes)
        return Decision(True, "review")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.fields.append(record.__dict__["fields"])


@pytest.fixture
async def served(
    aiohttp_client: Any, source: FakeSource
) -> AsyncIterator[tuple[TestClient[Any, Any], RecordingAuthorizer, Records]]:
    authorizer = RecordingAuthorizer()
    records = Records()
    logger = logging.getLogger("tests.access")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(records)
    parts = app_parts(
        source,
        {},
        middlewares=chain(
            access_log=access_log_middleware(logger),
            budget=inflight_limit_middleware(10),
            auth=auth_middleware(AlwaysAlice(), authorizer),
        ),
    )
    client = await serve(aiohttp_client, parts)
    yield client, authorizer, records
    logger.removeHandler(records)


async def raw(client: TestClient[Any, Any], head: bytes) -> tuple[int, bytes]:
    assert client.port is not None  # set once the test server has started
    data = await exchange(client.port, head)
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split(b" ")[1]), rest.partition(b"\r\n\r\n")[2]


def request(target: str, headers: str = "Host: adapter\r\n") -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\n{headers}Authorization: Bearer alice\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


async def test_absolute_form_is_served_authorized_and_logged_as_its_path(
    served: tuple[TestClient[Any, Any], RecordingAuthorizer, Records],
) -> None:
    client, authorizer, records = served
    status, body = await raw(
        client, request(f"https://evil.example{METRIC}?labelSelector=app%3Dweb")
    )
    assert status == 200
    answer = orjson.loads(body)
    assert answer["kind"] == "MetricValueList"
    assert [item["describedObject"]["name"] for item in answer["items"]] == [
        "web-7c9d5f6b8-aaaaa",
        "web-7c9d5f6b8-bbbbb",
    ]
    [attributes] = authorizer.seen
    assert attributes.path == METRIC
    assert attributes.resource is not None
    assert (attributes.resource.resource, attributes.resource.subresource) == (
        "pods",
        "inference_latency_p95",
    )
    assert records.fields[-1]["path"] == METRIC
    assert records.fields[-1]["status"] == 200


async def test_absolute_form_discovery_has_the_right_group_version(
    served: tuple[TestClient[Any, Any], RecordingAuthorizer, Records],
) -> None:
    client, authorizer, _ = served
    status, body = await raw(
        client, request("http://other.example/apis/custom.metrics.k8s.io/v1beta2")
    )
    assert status == 200
    answer = orjson.loads(body)
    assert (answer["kind"], answer["groupVersion"]) == (
        "APIResourceList",
        "custom.metrics.k8s.io/v1beta2",
    )
    assert [a.path for a in authorizer.seen] == ["/apis/custom.metrics.k8s.io/v1beta2"]


@pytest.mark.parametrize(
    ("target", "headers", "message"),
    [
        (
            f"{METRIC}#x",
            "Host: a\r\n",
            "request target contains a fragment or characters not allowed in a URI",
        ),
        ("/healthz/../apis", "Host: a\r\n", "request path must not contain . or .. segments"),
        (
            "/apis/./custom.metrics.k8s.io",
            "Host: a\r\n",
            "request path must not contain . or .. segments",
        ),
        ("//apis/custom.metrics.k8s.io", "Host: a\r\n", "request path must not start with //"),
        (
            "ftp://h/apis",
            "Host: a\r\n",
            "only origin-form and absolute-form request targets are served",
        ),
        ("https://u:p@h/apis", "Host: a\r\n", "invalid absolute-form request target"),
    ],
)
async def test_odd_targets_are_400_before_authentication(
    served: tuple[TestClient[Any, Any], RecordingAuthorizer, Records],
    target: str,
    headers: str,
    message: str,
) -> None:
    client, authorizer, _ = served
    status, body = await raw(client, request(target, headers))
    assert (status, orjson.loads(body)) == (
        400,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "BadRequest",
            "code": 400,
        },
    )
    assert authorizer.seen == []


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("https:///apis", "Host: a\r\n"),  # no authority
        ("/apis", ""),  # HTTP/1.1 without Host
        ("/apis", "Host: a\r\nHost: b\r\n"),  # two Host headers
        ("*", "Host: a\r\n"),  # asterisk-form
        ("adapter:6443", "Host: a\r\n"),  # authority-form
    ],
)
async def test_what_the_http_parser_refuses_is_400_before_authentication(
    served: tuple[TestClient[Any, Any], RecordingAuthorizer, Records],
    target: str,
    headers: str,
) -> None:
    client, authorizer, _ = served
    assert (await raw(client, request(target, headers)))[0] == 400
    assert authorizer.seen == []


async def test_a_percent_encoded_probe_path_is_not_a_probe(
    served: tuple[TestClient[Any, Any], RecordingAuthorizer, Records],
) -> None:
    """Routing and the always-allow list read the same encoded path: ``/%68ealthz``
    is neither served as ``/healthz`` nor let in without credentials."""
    client, authorizer, _ = served
    anonymous = b"GET /%68ealthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    assert (await raw(client, anonymous))[0] == 401
    assert (await raw(client, request("/%68ealthz")))[0] == 404
    assert [a.path for a in authorizer.seen] == ["/%68ealthz"]


async def test_unknown_method_is_405_and_unknown_path_404(
    served: tuple[TestClient[Any, Any], RecordingAuthorizer, Records],
) -> None:
    client, _, _ = served
    post = request("/apis").replace(b"GET ", b"POST ", 1)
    status, body = await raw(client, post)
    assert (status, orjson.loads(body)["message"]) == (
        405,
        "the server does not allow this method on the requested resource (POST)",
    )
    status, body = await raw(client, request("/nothing"))
    assert (status, orjson.loads(body)["message"]) == (
        404,
        "the server could not find the requested resource",
    )


async def test_a_401_closes_the_connection(
    served: tuple[TestClient[Any, Any], RecordingAuthorizer, Records],
) -> None:
    client, _, _ = served
    assert client.port is not None  # set once the test server has started
    # keep-alive, no credentials; returns only once the server closes
    data = await exchange(client.port, b"GET /apis HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 401 Unauthorized\r\n")


_SEGMENT = st.text(alphabet="abc%2A.-_~:@!$&'()*+,;=", max_size=6)


@given(st.lists(_SEGMENT, max_size=6), st.text(alphabet="ab=&%2C", max_size=10))
def test_origin_form_is_kept_verbatim_or_refused(segments: list[str], query: str) -> None:
    raw_target = "/" + "/".join(segments) + (f"?{query}" if query else "")
    try:
        target = parse_target(raw_target)
    except BadRequest:
        assert any(s in {".", ".."} for s in segments) or raw_target.startswith("//")
        return
    assert target == RequestTarget("/" + "/".join(segments), query, absolute_form=False)


@given(st.lists(_SEGMENT, max_size=6), st.text(alphabet="ab=&%2C", max_size=10))
def test_absolute_form_normalizes_to_the_same_target_as_origin_form(
    segments: list[str], query: str
) -> None:
    origin = "/" + "/".join(segments) + (f"?{query}" if query else "")
    try:
        expected = parse_target(origin)
    except BadRequest:
        with pytest.raises(BadRequest):
            parse_target("https://adapter.example:6443" + origin)
        return
    got = parse_target("https://adapter.example:6443" + origin)
    assert (got.path, got.query, got.absolute_form) == (expected.path, expected.query, True)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", False),
        ("metricLabelSelector=", False),
        ("metricLabelSelector=a%3Db", True),
        ("labelSelector=metricLabelSelector", False),
        ("metricLabelSelector=&metricLabelSelector=a", False),  # first wins, as in the handler
        ("labelSelector=a&metricLabelSelector=b", True),
    ],
)
def test_metric_selector_classification(query: str, expected: bool) -> None:
    assert RequestTarget("/apis", query).metric_selector is expected
