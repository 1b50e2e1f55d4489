"""The request-path and query parsers: tables for the shapes, properties for everything else."""

from __future__ import annotations

import contextlib
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.api.negotiation import accepts_json, selectors_from_query
from adapter.core.errors import AdapterError, BadRequest, NotFound
from adapter.core.model import MetricName, Namespace
from adapter.core.request import MetricPath, parse_metric_path

P = "/apis/custom.metrics.k8s.io"
M, ML = MetricName("m"), Namespace("ml")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"{P}/v1beta2", None),
        (f"{P}/v1beta1/", None),
        (f"{P}/v1beta2/namespaces/ml/pods/*/m", MetricPath("v1beta2", "pods", "*", M, ML)),
        (f"{P}/v1beta2/namespaces/ml/pods/%2A/m", MetricPath("v1beta2", "pods", "*", M, ML)),
        (
            f"{P}/v1beta1/namespaces/ml/deployments.apps/web/m",
            MetricPath("v1beta1", "deployments.apps", "web", M, ML),
        ),
        (f"{P}/v1beta2/nodes/gpu-1/m", MetricPath("v1beta2", "nodes", "gpu-1", M)),
        (
            f"{P}/v1beta2/namespaces/ml/metrics/m",
            MetricPath("v1beta2", "namespaces", "ml", M, ML, namespace_metric=True),
        ),
        (
            f"{P}/v1beta2/namespaces/ml/pods/*/vllm:num_requests_waiting",
            MetricPath("v1beta2", "pods", "*", MetricName("vllm:num_requests_waiting"), ML),
        ),
    ],
)
def test_shapes(path: str, expected: MetricPath | None) -> None:
    assert parse_metric_path(path) == expected


names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
metrics = st.text(
    st.characters(blacklist_characters="/%?", blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=40,
).filter(lambda m: m not in {".", ".."} and m.isprintable())


@given(
    ns=names,
    name=names | st.just("*"),
    metric=metrics,
    version=st.sampled_from(["v1beta1", "v1beta2"]),
)
def test_valid_components_round_trip_through_percent_encoding(
    ns: str, name: str, metric: str, version: str
) -> None:
    path = f"{P}/{version}/namespaces/{ns}/pods/{quote(name, safe='')}/{quote(metric, safe='')}"
    assert parse_metric_path(path) == MetricPath(
        version, "pods", name, MetricName(metric), Namespace(ns)
    )


@settings(max_examples=500)
@given(tail=st.text(max_size=300))
def test_any_path_parses_or_is_a_400_or_404(tail: str) -> None:
    with contextlib.suppress(BadRequest, NotFound):
        parse_metric_path(f"{P}/{tail}")


@settings(max_examples=500)
@given(query=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: quote(b, safe="=&")))
def test_any_query_string_parses_or_is_a_400(query: str) -> None:
    try:
        selectors_from_query(query)
    except BadRequest:
        pass
    except AdapterError as e:  # pragma: no cover - would be a bug
        pytest.fail(f"unexpected {e!r}")


@given(accept=st.text(max_size=200))
def test_accept_header_parsing_never_raises(accept: str) -> None:
    assert accepts_json(accept) in (True, False)
