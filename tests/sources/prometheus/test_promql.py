"""PromQL building: matchers, escaping, queries (tables), and a pure property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.core.selectors import Operator, SelectorError, parse_selector
from adapter.sources.prometheus import promql
from adapter.sources.prometheus.promql import MatchOp, PromQLError


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", ""),
        ("model=llama", 'model="llama"'),
        ("model==llama", 'model="llama"'),
        ("model!=llama", 'model!="llama"'),
        ("model in (a)", 'model="a"'),
        ("model in (b,a.b)", 'model=~"^(?:a\\\\.b|b)$"'),
        ("model notin (a,b)", 'model!~"^(?:a|b)$"'),
        ("model notin (a)", 'model!="a"'),
        ("model", 'model!=""'),
        ("!model", 'model=""'),
        ("a=1,b!=2,c", 'a="1",b!="2",c!=""'),
    ],
)
def test_selector_to_matchers(selector: str, expected: str) -> None:
    matchers = promql.matchers_from_selector(parse_selector(selector))
    assert promql.render_matchers(matchers) == expected


@pytest.mark.parametrize(
    "selector",
    ["app.kubernetes.io/name=x", "my-label=x", "example.com/k", "A.b=c"],
)
def test_kubernetes_keys_that_are_not_prometheus_labels_are_rejected(selector: str) -> None:
    with pytest.raises(PromQLError, match="label name"):
        promql.matchers_from_selector(parse_selector(selector))


@pytest.mark.parametrize(
    "selector",
    ['a=b"}or{c="', "a=b\\", "a=x\ny", 'a in (x,"y")', "a=b}", "a=é"],
)
def test_injection_through_the_selector_grammar_is_refused(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(selector)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("", '""'),
        ("plain", '"plain"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("x\ny\rz\tw", '"x\\ny\\rz\\tw"'),
        ("\x00\x7f", '"\\u0000\\u007f"'),
        ("\u2028", '"\\u2028"'),
        ("é日本🙂", '"é日本🙂"'),
        ("} or vector(1) or {", '"} or vector(1) or {"'),
    ],
)
def test_quote(value: str, literal: str) -> None:
    assert promql.quote(value) == literal


def test_quote_refuses_lone_surrogates() -> None:
    with pytest.raises(PromQLError):
        promql.quote("\ud800")


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("a.b", "a\\.b"),
        ("a|b", "a\\|b"),
        ("(x)*+?", "\\(x\\)\\*\\+\\?"),
        ("^$[]{}\\", "\\^\\$\\[\\]\\{\\}\\\\"),
    ],
)
def test_regex_escape_like_go_quotemeta(value: str, escaped: str) -> None:
    assert promql.regex_escape(value) == escaped


@pytest.mark.parametrize(
    ("op", "values", "rendered"),
    [
        (Operator.EQUALS, ["x"], 'k="x"'),
        (Operator.IN, ["a", "b"], 'k=~"^(?:a|b)$"'),
        (Operator.NOT_IN, ['"', "\\"], 'k!~"^(?:\\"|\\\\\\\\)$"'),
        (Operator.EXISTS, [], 'k!=""'),
    ],
)
def test_matcher_from_raw_values(op: Operator, values: list[str], rendered: str) -> None:
    assert str(promql.matcher("k", op, values)) == rendered


@pytest.mark.parametrize("key", ["__name__", "__meta_x", "", "1a", "a b", 'a"', "a}", "é"])
def test_reserved_and_invalid_label_names(key: str) -> None:
    with pytest.raises(PromQLError, match="label name"):
        promql.matcher(key, Operator.EQUALS, ["x"])


def test_matcher_needs_values() -> None:
    with pytest.raises(PromQLError):
        promql.matcher("k", Operator.IN, [])
    with pytest.raises(PromQLError):
        promql.matcher("k", Operator.EQUALS, ["a", "b"])


def test_histogram_query() -> None:
    extra = [promql.LabelMatcher("model", MatchOp.EQ, "llama")]
    assert promql.render_histogram_query("lat_seconds", "ns", "pod", extra, 120) == (
        'sum by (ns, pod, le) (rate(lat_seconds_bucket{ns!="",pod!="",model="llama"}[2m]))'
    )


def test_gauge_query() -> None:
    assert promql.render_gauge_query("q", "namespace", "pod", [], "sum") == (
        'label_replace(sum by (namespace, pod) (q{namespace!="",pod!=""}), '
        '"adapter_part", "value", "", "") or '
        'label_replace(min by (namespace, pod) (timestamp(q{namespace!="",pod!=""})), '
        '"adapter_part", "timestamp", "", "")'
    )


def test_template_expansion() -> None:
    template = "sum by (<<groupBy>>) (rate(http_requests_total{<<matchers>>}[<<window>>]))"
    extra = [promql.LabelMatcher("code", MatchOp.NE, "500")]
    assert promql.render_template(template, "ns", "p", extra, 90) == (
        'sum by (ns, p) (rate(http_requests_total{ns!="",p!="",code!="500"}[90s]))'
    )


def test_template_errors() -> None:
    with pytest.raises(PromQLError, match="unknown placeholder"):
        promql.render_template("x{<<matchers>>} <<.GroupBy>>", "n", "p", [], None)
    with pytest.raises(PromQLError, match="no window"):
        promql.render_template("rate(x{<<matchers>>}[<<window>>])", "n", "p", [], None)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sum(rate(x[2m])", "never closed"),
        ("sum(x))", "unbalanced"),
        ('x{a="b}', "never closed"),
        ("x{a='b\"}", "never closed"),
        ("x{a=`b}", "never closed"),
        ("(]", "unbalanced"),
        ("   ", "empty"),
    ],
)
def test_check_syntax_rejects(query: str, message: str) -> None:
    with pytest.raises(PromQLError, match=message):
        promql.check_syntax(query)


@pytest.mark.parametrize(
    "query",
    ['sum by (a) (x{b="(}\\""})', "x{a='['}", "x # a comment with (\ny", "x{a=`\\`}"],
)
def test_check_syntax_accepts(query: str) -> None:
    promql.check_syntax(query)


@given(st.text())
@settings(max_examples=200)
def test_quoted_values_never_leave_their_string(value: str) -> None:
    """Whatever the value, the literal is one closed string: structure cannot change."""
    try:
        literal = promql.quote(value)
    except PromQLError:
        return
    promql.check_syntax(f"x{{a={literal}}}")
    assert "\n" not in literal
    assert literal.isprintable() or not value.isprintable()
