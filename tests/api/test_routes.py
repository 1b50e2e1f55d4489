"""Every URL shape x both versions x status codes, with exact bodies."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from adapter.kube.podsfile import PodsFileIndex
from tests.api.conftest import ClientFactory
from tests.fakes.kube_api import status_body as status
from tests.fakes.source import FakeSource

G = "/apis/custom.metrics.k8s.io"
TS = "2027-01-15T07:59:50Z"
TS_NS = "2027-01-15T07:59:59Z"  # the namespace metric's sample
GPU: dict[str, Any] = {"metric": "gpu_utilization", "ts": "2027-01-15T07:59:58Z", "window": 10}
WEB_A = "web-7c9d5f6b8-aaaaa"
WEB_B = "web-7c9d5f6b8-bbbbb"

Client = TestClient[Any, Any]


def item(
    version: str,
    kind: str,
    name: str,
    value: str,
    *,
    metric: str = "inference_latency_p95",
    namespace: str = "ml",
    api_version: str = "v1",
    ts: str = TS,
    window: int | None = 120,
    selector: dict[str, Any] | None = None,
) -> dict[str, Any]:
    # omitempty as Go encodes it: no namespace for cluster-scoped objects, no window without one
    obj = {"kind": kind, "namespace": namespace, "name": name, "apiVersion": api_version}
    if not namespace:
        del obj["namespace"]
    window_field = {} if window is None else {"windowSeconds": window}
    if version == "v1beta2":
        return {
            "describedObject": obj,
            "metric": {"name": metric, "selector": selector},
            "timestamp": ts,
            **window_field,
            "value": value,
        }
    return {
        "describedObject": obj,
        "metricName": metric,
        "timestamp": ts,
        **({"window": window} if window is not None else {}),
        "value": value,
        "selector": selector,
    }


async def assert_serves(client: Client, version: str, path: str, *items: dict[str, Any]) -> None:
    """GET ``path`` answers 200 with exactly ``items``, a MetricValueList of ``version``."""
    code, body, _ = await get(client, path)
    assert (code, body) == (200, value_list(version, list(items)))


def value_list(version: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "MetricValueList",
        "apiVersion": f"custom.metrics.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }


async def get(client: Client, path: str, **headers: str) -> tuple[int, Any, str]:
    """GET ``path`` exactly as written: no client-side normalisation of ``..`` or escapes."""
    url = URL(str(client.make_url("/")).rstrip("/") + path, encoded=True)
    response = await client.session.get(url, headers=headers)
    text = await response.text()
    body = await response.json() if response.content_type == "application/json" else text
    return response.status, body, response.content_type


# -- discovery --------------------------------------------------------------------------

GROUP = {
    "name": "custom.metrics.k8s.io",
    "versions": [
        {"groupVersion": "custom.metrics.k8s.io/v1beta2", "version": "v1beta2"},
        {"groupVersion": "custom.metrics.k8s.io/v1beta1", "version": "v1beta1"},
    ],
    "preferredVersion": {"groupVersion": "custom.metrics.k8s.io/v1beta2", "version": "v1beta2"},
}


async def test_apis_lists_the_group(client: Client) -> None:
    assert await get(client, "/apis") == (
        200,
        {"kind": "APIGroupList", "apiVersion": "v1", "groups": [GROUP]},
        "application/json",
    )


async def test_group(client: Client) -> None:
    assert await get(client, G) == (
        200,
        {"kind": "APIGroup", "apiVersion": "v1", **GROUP},
        "application/json",
    )


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
async def test_version_discovery_comes_from_the_catalogue(client: Client, version: str) -> None:
    code, body, _ = await get(client, f"{G}/{version}")
    assert code == 200
    names = [(r["name"], r["namespaced"]) for r in body["resources"]]
    assert names == [
        ("deployments.apps/gpu_utilization", True),
        ("deployments.apps/inference_kv_cache_utilization", True),
        ("deployments.apps/inference_latency_p95", True),
        ("deployments.apps/inference_queue_depth", True),
        ("deployments.apps/inference_requests_running", True),
        ("namespaces/ns_requests", False),
        ("nodes/gpu_utilization", False),
        ("pods/gpu_utilization", True),
        ("pods/inference_kv_cache_utilization", True),
        ("pods/inference_latency_p95", True),
        ("pods/inference_queue_depth", True),
        ("pods/inference_requests_running", True),
        ("statefulsets.apps/gpu_utilization", True),
        ("statefulsets.apps/inference_kv_cache_utilization", True),
        ("statefulsets.apps/inference_latency_p95", True),
        ("statefulsets.apps/inference_queue_depth", True),
        ("statefulsets.apps/inference_requests_running", True),
    ]
    assert body["kind"] == "APIResourceList"
    assert body["apiVersion"] == "v1"
    assert body["groupVersion"] == f"custom.metrics.k8s.io/{version}"
    assert body["resources"][9] == {
        "name": "pods/inference_latency_p95",
        "singularName": "",
        "namespaced": True,
        "kind": "MetricValueList",
        "verbs": ["get"],
    }


async def test_discovery_answers_while_the_source_is_down(
    client: Client, source: FakeSource
) -> None:
    source.fail = True
    assert (await get(client, f"{G}/v1beta2"))[0] == 200
    assert source.calls == []


@pytest.mark.parametrize(
    ("accept", "code"),
    [
        ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", 406),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
            200,
        ),
        ("application/vnd.kubernetes.protobuf, */*", 200),
        ("application/vnd.kubernetes.protobuf", 406),
        ("application/json", 200),
    ],
)
async def test_content_negotiation(client: Client, accept: str, code: int) -> None:
    got, body, content_type = await get(client, "/apis", Accept=accept)
    assert got == code
    assert content_type == "application/json"
    if code == 406:
        assert body == status(
            406, "NotAcceptable", "only the following media types are accepted: application/json"
        )


# -- metric reads ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
@pytest.mark.parametrize("wildcard", ["*", "%2A"])
async def test_pods_wildcard_serves_live_ready_matching_pods(
    client: Client, version: str, wildcard: str
) -> None:
    path = (
        f"{G}/{version}/namespaces/ml/pods/{wildcard}/inference_latency_p95?labelSelector=app%3Dweb"
    )
    a, b = item(version, "Pod", WEB_A, "235m"), item(version, "Pod", WEB_B, "500m")
    await assert_serves(client, version, path, a, b)


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
async def test_named_pod(client: Client, version: str) -> None:
    path = f"{G}/{version}/namespaces/ml/pods/{WEB_A}/gpu_utilization"
    await assert_serves(client, version, path, item(version, "Pod", WEB_A, "73250m", **GPU))


async def raw_get(client: Client, path: str) -> tuple[int, bytes, Any]:
    url = URL(str(client.make_url("/")).rstrip("/") + path, encoded=True)
    response = await client.session.get(url)
    return response.status, await response.read(), response.headers


# Exact bytes where Go's encoding decides presence: omitempty window and namespace, a
# trailing newline (json.Encoder), Cache-Control as kube-apiserver sends it.
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            f"{G}/v1beta2/namespaces/ml/pods/{WEB_A}/gpu_utilization",
            b'{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta2","metadata":{},'
            b'"items":[{"describedObject":{"kind":"Pod","namespace":"ml","name":"web-7c9d5f6b8-aaaaa",'
            b'"apiVersion":"v1"},"metric":{"name":"gpu_utilization","selector":null},'
            b'"timestamp":"2027-01-15T07:59:58Z","windowSeconds":10,"value":"73250m"}]}\n',
        ),
        (
            f"{G}/v1beta1/nodes/gpu-node-2/gpu_utilization",
            b'{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta1","metadata":{},'
            b'"items":[{"describedObject":{"kind":"Node","name":"gpu-node-2","apiVersion":"v1"},'
            b'"metricName":"gpu_utilization","timestamp":"2027-01-15T07:59:58Z","window":10,'
            b'"value":"50","selector":null}]}\n',
        ),
        (
            f"{G}/v1beta2/namespaces/ml/metrics/ns_requests",
            b'{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta2","metadata":{},'
            b'"items":[{"describedObject":{"kind":"Namespace","name":"ml","apiVersion":"v1"},'
            b'"metric":{"name":"ns_requests","selector":null},"timestamp":"2027-01-15T07:59:59Z",'
            b'"value":"3"}]}\n',
        ),
        (
            f"{G}/v1beta1/namespaces/ml/metrics/ns_requests",
            b'{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta1","metadata":{},'
            b'"items":[{"describedObject":{"kind":"Namespace","name":"ml","apiVersion":"v1"},'
            b'"metricName":"ns_requests","timestamp":"2027-01-15T07:59:59Z","value":"3",'
            b'"selector":null}]}\n',
        ),
        (
            f"{G}/v1beta2/namespaces/ml/pods/*/no_such_metric",
            b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
            b'"message":"the server could not find the metric no_such_metric for pods",'
            b'"reason":"NotFound","code":404}\n',
        ),
    ],
)
async def test_exact_bytes_and_headers(client: Client, path: str, expected: bytes) -> None:
    code, body, headers = await raw_get(client, path)
    assert body == expected
    assert code == (404 if b'"kind":"Status"' in expected else 200)
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-cache, private"
    assert "Retry-After" not in headers


async def test_discovery_bodies_end_in_a_newline_and_are_uncacheable(client: Client) -> None:
    for path in ("/apis", G, f"{G}/v1beta1", f"{G}/v1beta2"):
        code, body, headers = await raw_get(client, path)
        assert code == 200
        assert body.endswith(b"}\n")
        assert body.count(b"\n") == 1
        assert headers["Cache-Control"] == "no-cache, private"


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
async def test_deployment_object_metric_aggregates_eligible_pods_only(
    client: Client, version: str
) -> None:
    path = f"{G}/{version}/namespaces/ml/deployments.apps/web/inference_latency_p95"
    web = item(version, "Deployment", "web", "367m", api_version="apps/v1")
    await assert_serves(client, version, path, web)


async def test_statefulset_and_wildcard_workloads(client: Client) -> None:
    path = f"{G}/v1beta2/namespaces/ml/statefulsets.apps/*/inference_latency_p95"
    db = item("v1beta2", "StatefulSet", "db", "2", api_version="apps/v1")
    await assert_serves(client, "v1beta2", path, db)


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
async def test_nodes_are_root_scoped(client: Client, version: str) -> None:
    code, body, _ = await get(client, f"{G}/{version}/nodes/*/gpu_utilization")
    node: dict[str, Any] = {**GPU, "namespace": ""}
    assert (code, body) == (
        200,
        value_list(
            version,
            [
                item(version, "Node", "gpu-node-1", "73250m", **node),
                item(version, "Node", "gpu-node-2", "50", **node),
            ],
        ),
    )
    path = f"{G}/{version}/nodes/gpu-node-2/gpu_utilization"
    await assert_serves(client, version, path, item(version, "Node", "gpu-node-2", "50", **node))


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
async def test_namespace_metric(client: Client, version: str) -> None:
    path = f"{G}/{version}/namespaces/ml/metrics/ns_requests"
    ns = item(
        version, "Namespace", "ml", "3", metric="ns_requests", namespace="", ts=TS_NS, window=None
    )
    await assert_serves(client, version, path, ns)


async def test_root_scoped_pods_span_namespaces(client: Client) -> None:
    code, body, _ = await get(
        client, f"{G}/v1beta2/pods/*/inference_latency_p95?labelSelector=app=web"
    )
    assert code == 200
    assert [
        (i["describedObject"]["namespace"], i["describedObject"]["name"]) for i in body["items"]
    ] == [("ml", WEB_A), ("ml", WEB_B), ("prod", "other-1")]


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
async def test_metric_label_selector_reaches_the_source_and_the_body(
    client: Client, source: FakeSource, version: str
) -> None:
    code, body, _ = await get(
        client,
        f"{G}/{version}/namespaces/ml/pods/{WEB_A}/inference_latency_p95"
        "?metricLabelSelector=model%20in%20(llama,mistral),route!=health,gpu",
    )
    assert code == 200
    assert source.calls[-1][2] == "gpu,model in (llama,mistral),route!=health"
    selector = {
        "matchExpressions": [
            {"key": "gpu", "operator": "Exists"},
            {"key": "model", "operator": "In", "values": ["llama", "mistral"]},
            {"key": "route", "operator": "NotIn", "values": ["health"]},
        ]
    }
    assert body == value_list(version, [item(version, "Pod", WEB_A, "235m", selector=selector)])


async def test_empty_wildcard_is_200_with_no_items(client: Client) -> None:
    code, body, _ = await get(client, f"{G}/v1beta2/namespaces/empty/pods/*/inference_latency_p95")
    assert (code, body) == (200, value_list("v1beta2", []))


# -- errors -----------------------------------------------------------------------------

NOT_FOUND = "the server could not find the requested resource"


@pytest.mark.parametrize(
    ("path", "code", "reason", "message"),
    [
        (
            "/namespaces/ml/pods/*/nope",
            404,
            "NotFound",
            "the server could not find the metric nope for pods",
        ),
        (
            f"/namespaces/ml/pods/{WEB_A}/nope",
            404,
            "NotFound",
            f"the server could not find the metric nope for pods {WEB_A}",
        ),
        (
            "/namespaces/ml/services/*/inference_latency_p95",
            404,
            "NotFound",
            "the server could not find the metric inference_latency_p95 for services",
        ),
        (
            "/nodes/*/inference_latency_p95",
            404,
            "NotFound",
            "the server could not find the metric inference_latency_p95 for nodes",
        ),
        (
            "/namespaces/ml/pods/web-7c9d5f6b8-ccccc/inference_latency_p95",
            404,
            "NotFound",
            "the server could not find the metric inference_latency_p95 for pods web-7c9d5f6b8-ccccc",
        ),
        (
            "/namespaces/ml/pods/web-7c9d5f6b8-ddddd/inference_latency_p95",
            404,
            "NotFound",
            "the server could not find the metric inference_latency_p95 for pods web-7c9d5f6b8-ddddd",
        ),
        (
            "/namespaces/ml/pods/web-7c9d5f6b8-eeeee/inference_latency_p95",
            404,
            "NotFound",
            "the server could not find the metric inference_latency_p95 for pods web-7c9d5f6b8-eeeee",
        ),
        (
            "/namespaces/ml/pods/ghost/inference_latency_p95",
            404,
            "NotFound",
            "the server could not find the metric inference_latency_p95 for pods ghost",
        ),
        (
            "/namespaces/ml/pods/db-1/inference_latency_p95",
            404,
            "NotFound",
            "the server could not find the metric inference_latency_p95 for pods db-1",
        ),
        (
            "/namespaces/ml/deployments.apps/nope/inference_latency_p95",
            404,
            "NotFound",
            "the server could not find the metric inference_latency_p95 for deployments.apps nope",
        ),
        (
            "/namespaces/ml/pods/*",
            400,
            "BadRequest",
            "a namespaced metric request is namespaces/{namespace}/{resource}/{name|*}/{metric}",
        ),
        (
            "/namespaces/ml",
            400,
            "BadRequest",
            "a namespaced metric request is namespaces/{namespace}/{resource}/{name|*}/{metric}",
        ),
        (
            "/pods/*",
            400,
            "BadRequest",
            "a cluster-scoped metric request is {resource}/{name|*}/{metric}",
        ),
        (
            "/namespaces/ml/pods/*/a/b",
            400,
            "BadRequest",
            "a namespaced metric request is namespaces/{namespace}/{resource}/{name|*}/{metric}",
        ),
        (
            "/namespaces/ML/pods/*/m",
            400,
            "BadRequest",
            "invalid namespace 'ML': must be a DNS-1123 label",
        ),
        (
            "/namespaces/ml/pods/Bad_Name/m",
            400,
            "BadRequest",
            "invalid object name 'Bad_Name': must be a DNS-1123 subdomain",
        ),
        (
            "/namespaces/ml/pods/*/%2E%2E",
            400,
            "BadRequest",
            "invalid metric name '..': may not be '.' or '..' or contain '/', '%' or '?'",
        ),
        (
            "/namespaces/ml/pods/*/a%2Fb",
            400,
            "BadRequest",
            "invalid metric name 'a/b': may not be '.' or '..' or contain '/', '%' or '?'",
        ),
        ("/namespaces/ml/pods/*/%FF", 400, "BadRequest", "request path is not valid UTF-8"),
        ("/namespaces/ml/pods//m", 400, "BadRequest", "empty path segment"),
    ],
)
@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
async def test_errors_are_status_bodies(
    client: Client, version: str, path: str, code: int, reason: str, message: str
) -> None:
    assert await get(client, f"{G}/{version}{path}") == (
        code,
        status(code, reason, message),
        "application/json",
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("labelSelector=app%3D%3D%3Dweb", "invalid labelSelector: "),
        ("labelSelector=app%20in%20()", "invalid labelSelector: "),
        ("metricLabelSelector=a%3E1", "invalid metricLabelSelector: "),
        ("labelSelector=%FF", "query string is not valid UTF-8"),
        ("labelSelector=" + "a" * 5000, "query string too long (5014 > 4096 bytes)"),
    ],
)
async def test_bad_query_strings_are_400(client: Client, query: str, message: str) -> None:
    code, body, _ = await get(
        client, f"{G}/v1beta2/namespaces/ml/pods/*/inference_latency_p95?{query}"
    )
    assert code == 400
    assert body["reason"] == "BadRequest"
    assert body["message"].startswith(message)


@pytest.mark.parametrize(
    "path",
    [
        "/apis/custom.metrics.k8s.io/v1",
        "/apis/custom.metrics.k8s.io/v2/pods/*/m",
        "/apis/other.k8s.io/v1",
        "/nope",
        "/api/v1/pods",
    ],
)
async def test_unknown_paths_are_404_status(client: Client, path: str) -> None:
    assert await get(client, path) == (404, status(404, "NotFound", NOT_FOUND), "application/json")


async def test_overlong_path_is_400(client: Client) -> None:
    code, body, _ = await get(client, f"{G}/v1beta2/namespaces/ml/pods/*/" + "m" * 3000)
    assert code == 400
    assert body["message"].startswith("request path too long")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_unsupported_methods_are_405(client: Client, method: str) -> None:
    response = await client.request(
        method, f"{G}/v1beta2/namespaces/ml/pods/*/inference_latency_p95"
    )
    assert response.status == 405
    assert await response.json() == status(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource ({method})",
    )


async def test_source_failure_is_a_generic_500(client: Client, source: FakeSource) -> None:
    source.fail = True
    code, body, _ = await get(client, f"{G}/v1beta2/namespaces/ml/pods/*/inference_latency_p95")
    assert (code, body) == (
        500,
        status(500, "InternalError", "an internal error occurred while serving the request"),
        "application/json",
    )[:2]
    assert "prometheus.internal" not in str(body)


async def test_openapi_is_404_never_500(client: Client) -> None:
    for path in ("/openapi/v2", "/openapi/v3", "/openapi/v3/apis/custom.metrics.k8s.io/v1beta2"):
        assert await get(client, path) == (
            404,
            status(404, "NotFound", "the server does not publish an OpenAPI document"),
            "application/json",
        )


# -- health and self metrics ------------------------------------------------------------------


async def test_probes(client: Client) -> None:
    for probe in ("/healthz", "/livez", "/readyz"):
        assert await get(client, probe) == (200, "ok", "text/plain")
    code, text, _ = await get(client, "/readyz?verbose")
    assert (code, text) == (200, "[+]pod-index ok\nreadyz check passed\n")


class UnsyncedPods(PodsFileIndex):
    @property
    def synced(self) -> bool:
        return False


async def test_readyz_waits_for_the_pod_index_but_not_for_sources(
    make_client: ClientFactory, source: FakeSource
) -> None:
    client = await make_client(pods=UnsyncedPods())
    assert await get(client, "/readyz") == (
        503,
        "[-]pod-index failed\nreadyz check failed\n",
        "text/plain",
    )
    ready = await make_client()
    source.fail = True
    assert (await get(ready, "/readyz"))[0] == 200


async def test_metrics_exports_request_counts_and_served_values(client: Client) -> None:
    await get(client, f"{G}/v1beta2/namespaces/ml/pods/*/inference_latency_p95")
    await get(client, f"{G}/v1beta2/namespaces/ml/pods/*/nope")
    code, text, _ = await get(client, "/metrics")
    assert code == 200
    lines = set(text.splitlines())
    assert (
        'adapter_http_requests_total{code="200",method="GET",route="namespaced_wildcard"} 1.0'
        in lines
    )
    assert (
        'adapter_http_requests_total{code="404",method="GET",route="namespaced_wildcard"} 1.0'
        in lines
    )
    assert (
        'adapter_served_value{family="",kind="Pod",metric="inference_latency_p95",'
        'name="web-7c9d5f6b8-aaaaa",namespace="ml"} 0.2345'
    ) in lines
    assert (
        'adapter_pods_omitted_total{metric="inference_latency_p95",reason="not_ready"} 1.0' in lines
    )
    assert (
        'adapter_pods_omitted_total{metric="inference_latency_p95",reason="warming_up"} 1.0'
        in lines
    )
    assert (
        'adapter_pods_omitted_total{metric="inference_latency_p95",reason="no_value"} 1.0' in lines
    )
    assert 'adapter_values_served_total{metric="inference_latency_p95"} 3.0' in lines


async def test_a_named_read_counts_no_omissions_for_pods_it_did_not_ask_about(
    client: Client,
) -> None:
    await get(client, f"{G}/v1beta2/namespaces/ml/pods/{WEB_A}/inference_latency_p95")
    await get(client, f"{G}/v1beta2/namespaces/ml/statefulsets.apps/db/inference_latency_p95")
    _, text, _ = await get(client, "/metrics")
    omitted = [line for line in text.splitlines() if line.startswith("adapter_pods_omitted_total")]
    # web-ccccc (not ready) and web-ddddd (warming up) are in the namespace but were not asked for.
    assert omitted == []
