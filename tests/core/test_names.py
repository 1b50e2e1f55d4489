"""The Kubernetes name rules (adapter.core.names), as apimachinery's validation states them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.core.errors import BadRequest
from adapter.core.names import (
    is_dns1123_label,
    is_dns1123_subdomain,
    is_metric_name,
    label_value_problems,
    metric_name_is_path_safe,
    qualified_name_problems,
)
from adapter.core.request import parse_metric_path

NAME_CHARSET = (
    "consist of alphanumeric characters, '-', '_' or '.', "
    "and start and end with an alphanumeric character"
)
PREFIX_RULE = (
    "prefix part must be a lowercase RFC 1123 subdomain: lower case alphanumeric characters, "
    "'-' or '.', starting and ending with an alphanumeric character (e.g. 'example.com')"
)


@pytest.mark.parametrize(
    ("text", "label", "subdomain"),
    [
        ("ml", True, True),
        ("a", True, True),
        ("0", True, True),
        ("a-b", True, True),
        ("a.b", False, True),
        ("a" * 63, True, True),
        ("a" * 64, False, True),
        (".".join(["a" * 63] * 4), False, True),  # 255 characters
        ("a" * 253, False, True),
        ("a" * 254, False, False),
        ("", False, False),
        ("-a", False, False),
        ("a-", False, False),
        ("A", False, False),
        ("a_b", False, False),
        ("a..b", False, False),
        ("ml\n", False, False),
        ("\nml", False, False),
    ],
)
def test_dns1123(text: str, label: bool, subdomain: bool) -> None:
    assert is_dns1123_label(text) is label
    # A 255-character subdomain is too long even though each label is fine.
    assert is_dns1123_subdomain(text) is (subdomain and len(text) <= 253)


@pytest.mark.parametrize(
    ("key", "problems"),
    [
        ("app", []),
        ("example.com/app", []),
        ("a" * 63, []),
        ("a" * 64, ["name part must be no more than 63 characters"]),
        ("", ["name part must be non-empty"]),
        ("example.com/", ["name part must be non-empty"]),
        ("/app", ["prefix part must be non-empty"]),
        ("Example.com/app", [PREFIX_RULE]),
        ("a" * 254 + "/app", ["prefix part must be no more than 253 characters"]),
        ("-app", [f"name part must {NAME_CHARSET}"]),
        (
            "a/b/c",
            [
                "a qualified name must be a name with an optional DNS subdomain prefix "
                "and a single '/' (e.g. 'example.com/MyName')"
            ],
        ),
    ],
)
def test_qualified_name(key: str, problems: list[str]) -> None:
    assert qualified_name_problems(key) == problems


@pytest.mark.parametrize(
    ("value", "problems"),
    [
        ("", []),
        ("v1.2_3-x", []),
        ("a" * 63, []),
        ("a" * 64, ["must be no more than 63 characters"]),
        ("-x", [f"a label value must be empty or {NAME_CHARSET}"]),
        (
            "-" * 64,
            [
                "must be no more than 63 characters",
                f"a label value must be empty or {NAME_CHARSET}",
            ],
        ),
    ],
)
def test_label_value(value: str, problems: list[str]) -> None:
    assert label_value_problems(value) == problems


@pytest.mark.parametrize(
    ("name", "path_safe", "metric"),
    [
        ("inference_latency_p95", True, True),
        ("a.b:c-d", True, True),
        ("x" * 253, True, True),
        ("x" * 254, True, False),
        ("", True, False),
        (".", False, False),
        ("..", False, False),
        ("...", True, True),
        ("a/b", False, False),
        ("a%2F", False, False),
        ("a?b", False, False),
        ("a\tb", True, False),
    ],
)
def test_metric_name(name: str, path_safe: bool, metric: bool) -> None:
    assert metric_name_is_path_safe(name) is path_safe
    assert is_metric_name(name) is metric


@given(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True))
def test_every_dns1123_label_is_a_subdomain_and_a_label_value(label: str) -> None:
    assert is_dns1123_label(label)
    assert is_dns1123_subdomain(label)
    assert label_value_problems(label) == []
    assert qualified_name_problems(label) == []


@given(st.text(max_size=80))
def test_a_label_is_exactly_what_the_definition_says(text: str) -> None:
    expected = (
        0 < len(text) <= 63
        and all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in text)
        and text[0] != "-"
        and text[-1] != "-"
    )
    assert is_dns1123_label(text) is expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("namespaces/ml%0A/pods/*/m", "invalid namespace 'ml\\n': must be a DNS-1123 label"),
        (
            "namespaces/ml/pods/web%0A/m",
            "invalid object name 'web\\n': must be a DNS-1123 subdomain",
        ),
        ("namespaces/ml/pods%0A/web/m", "invalid resource 'pods\\n'"),
    ],
)
def test_request_paths_use_whole_text_matches(path: str, message: str) -> None:
    """A percent-encoded trailing newline was accepted by a `$`-anchored regex before."""
    with pytest.raises(BadRequest) as caught:
        parse_metric_path(f"/apis/custom.metrics.k8s.io/v1beta2/{path}")
    assert str(caught.value) == message
