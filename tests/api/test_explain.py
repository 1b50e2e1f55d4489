"""``?explain=true`` on a metric read: every matched pod with its value or its reason."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from adapter.api.explain import wants_explanation
from tests.api.conftest import RULES, ClientFactory, app_parts, serve
from tests.fakes.source import FakeSource

Client = TestClient[Any, Any]
G = "/apis/custom.metrics.k8s.io/v1beta2"
READ = f"{G}/namespaces/ml/pods/%2A/inference_latency_p95?labelSelector=app%3Dweb"
TS = "2027-01-15T07:59:50Z"


def row(
    name: str, value: str | None, milli: int | None, reason: str | None, **pod: Any
) -> dict[str, Any]:
    base = {
        "name": name,
        "object": name,
        "phase": "Running",
        "ready": True,
        "readySince": "2027-01-15T07:00:00Z",
        "deleting": False,
        "value": value,
        "milliValue": milli,
        "timestamp": TS if value is not None else None,
        "reason": reason,
    }
    base.update(pod)
    return base


async def test_every_matched_pod_with_its_value_or_reason(client: Client) -> None:
    response = await client.get(READ + "&explain=true")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert await response.json() == {
        "kind": "MetricExplanation",
        "apiVersion": "inference-metrics-adapter/v1alpha1",
        "metric": "inference_latency_p95",
        "resource": "pods",
        "namespace": "ml",
        "name": "*",
        "labelSelector": "app=web",
        "metricLabelSelector": "",
        "source": "prometheus",
        "rule": {},
        "servingPolicy": {"omitUnready": True, "warmupSeconds": 30.0},
        "pods": [
            row("web-7c9d5f6b8-aaaaa", "235m", 235, None),
            row("web-7c9d5f6b8-bbbbb", "500m", 500, None),
            row("web-7c9d5f6b8-ccccc", None, None, "not_ready", ready=False, readySince=None),
            row("web-7c9d5f6b8-ddddd", None, None, "warming_up", readySince="2027-01-15T07:59:55Z"),
            row("web-7c9d5f6b8-eeeee", None, None, "deleted", phase="Succeeded"),
            row("web-7c9d5f6b8-fffff", None, None, "deleted", deleting=True),
        ],
        "items": [
            {"name": "web-7c9d5f6b8-aaaaa", "value": "235m", "milliValue": 235, "timestamp": TS},
            {"name": "web-7c9d5f6b8-bbbbb", "value": "500m", "milliValue": 500, "timestamp": TS},
        ],
    }


async def test_items_are_exactly_what_the_read_serves(client: Client) -> None:
    read = await (await client.get(READ)).json()
    explained = await (await client.get(READ + "&explain=1")).json()
    assert [(i["describedObject"]["name"], i["value"]) for i in read["items"]] == [
        (i["name"], i["value"]) for i in explained["items"]
    ]


async def test_a_pod_without_a_sample_is_no_value(
    make_client: ClientFactory, source: FakeSource
) -> None:
    del source.pod_values[("inference_latency_p95", "ml", "web-7c9d5f6b8-bbbbb")]
    client = await make_client()
    body = await (await client.get(READ + "&explain=true")).json()
    assert [(p["name"], p["reason"]) for p in body["pods"][:2]] == [
        ("web-7c9d5f6b8-aaaaa", None),
        ("web-7c9d5f6b8-bbbbb", "no_value"),
    ]


async def test_a_selector_matching_nothing_explains_nothing(client: Client) -> None:
    url = f"{G}/namespaces/ml/pods/%2A/inference_latency_p95?labelSelector=app%3Dnone&explain=true"
    body = await (await client.get(url)).json()
    assert (body["pods"], body["items"]) == ([], [])


async def test_explaining_is_not_serving(client: Client) -> None:
    await client.get(READ + "&explain=true")
    metrics = await (await client.get("/metrics")).text()
    assert "adapter_served_value{" not in metrics
    assert 'adapter_http_requests_total{code="200",method="GET",route="explain"} 1.0' in metrics


@pytest.mark.parametrize("flag", ["explain=false", "explain=0", "explainx=true"])
async def test_only_a_true_flag_explains(client: Client, flag: str) -> None:
    body = await (await client.get(f"{READ}&{flag}")).json()
    assert body["kind"] == "MetricValueList"


async def test_an_unknown_metric_is_the_reads_404(client: Client) -> None:
    response = await client.get(f"{G}/namespaces/ml/pods/%2A/nope?explain=true")
    assert response.status == 404
    assert (await response.json())[
        "message"
    ] == "the server could not find the metric nope for pods"


async def test_a_named_pod_without_value_is_explained_not_404(client: Client) -> None:
    url = f"{G}/namespaces/ml/pods/web-7c9d5f6b8-ccccc/inference_latency_p95?explain=true"
    body = await (await client.get(url)).json()
    assert [(p["name"], p["reason"]) for p in body["pods"]] == [
        ("web-7c9d5f6b8-ccccc", "not_ready")
    ]


@given(query=st.text(max_size=60))
def test_the_explain_flag_parser_never_raises(query: str) -> None:
    assert wants_explanation(query) in (True, False)


pairs = st.lists(
    st.tuples(
        st.sampled_from(["explain", "labelSelector", "Explain", "x"]),
        st.sampled_from(["", "1", "true", "TRUE", "yes", "0", "false", "no", "app=web"]),
    ),
    max_size=5,
)


@given(params=pairs)
def test_the_first_explain_parameter_decides(params: list[tuple[str, str]]) -> None:
    first = next((value for key, value in params if key == "explain"), None)
    expected = first is not None and first.lower() in {"", "1", "true", "yes"}
    assert wants_explanation(urlencode(params)) is expected


class FamilyDiagnoser:
    """A source that recognises the inference server of each pod (as sources may)."""

    def describe(self, metric: str, now: float, metric_selector: Any) -> dict[str, Any]:
        return {"query": f"sum by (namespace, pod) ({metric})", "preset": "vllm"}

    def diagnose(self, metric: str, pods: Any, now: float) -> dict[tuple[str, str], str]:
        return {p.key: "stale" for p in pods}

    def pod_facts(self, metric: str, pods: Any, now: float) -> dict[tuple[str, str], Any]:
        return {p.key: {"family": "vllm"} for p in pods if p.name.endswith("aaaaa")}


async def test_source_facts_and_reasons_come_from_its_diagnoser(
    aiohttp_client: Any, source: FakeSource
) -> None:
    del source.pod_values[("inference_latency_p95", "ml", "web-7c9d5f6b8-bbbbb")]
    parts = app_parts(source, RULES, diagnosers={"prometheus": FamilyDiagnoser()})
    client = await serve(aiohttp_client, parts)
    body = await (await client.get(READ + "&explain=true")).json()
    assert body["rule"] == {
        "query": "sum by (namespace, pod) (inference_latency_p95)",
        "preset": "vllm",
    }
    first, second = body["pods"][:2]
    assert (first["name"], first["reason"], first["family"]) == (
        "web-7c9d5f6b8-aaaaa",
        None,
        "vllm",
    )
    assert (second["name"], second["reason"], "family" in second) == (
        "web-7c9d5f6b8-bbbbb",
        "stale",
        False,
    )


async def test_a_cluster_wide_read_keeps_namespaces_apart(client: Client) -> None:
    # other-1 in prod and the web pods in ml: each row carries its own pod's value.
    url = f"{G}/pods/%2A/inference_latency_p95?labelSelector=app%3Dweb&explain=true"
    body = await (await client.get(url)).json()
    values = {(p["name"], p["value"]) for p in body["pods"] if p["reason"] is None}
    assert values == {
        ("other-1", "1"),
        ("web-7c9d5f6b8-aaaaa", "235m"),
        ("web-7c9d5f6b8-bbbbb", "500m"),
    }
