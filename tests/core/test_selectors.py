"""Label selector grammar and semantics, checked against Go's labels.Parse behaviour."""

# The invalid-input tables compare whole user-facing messages, one per line.

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapter.core.selectors import (
    EVERYTHING,
    Operator,
    Requirement,
    Selector,
    SelectorError,
    parse_selector,
)

EQ, NE, IN, NOT_IN, EXISTS, DNE = (
    Operator.EQUALS,
    Operator.NOT_EQUALS,
    Operator.IN,
    Operator.NOT_IN,
    Operator.EXISTS,
    Operator.DOES_NOT_EXIST,
)

# --- parsing: every operator and whitespace variant -------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=b", (Requirement("a", EQ, ("b",)),)),
        ("a==b", (Requirement("a", EQ, ("b",)),)),
        ("a!=b", (Requirement("a", NE, ("b",)),)),
        ("a in (b)", (Requirement("a", IN, ("b",)),)),
        ("a notin (b)", (Requirement("a", NOT_IN, ("b",)),)),
        ("a", (Requirement("a", EXISTS),)),
        ("!a", (Requirement("a", DNE),)),
        ("a=", (Requirement("a", EQ, ("",)),)),
        ("a==", (Requirement("a", EQ, ("",)),)),
        ("a!=", (Requirement("a", NE, ("",)),)),
        ("a=,b", (Requirement("a", EQ, ("",)), Requirement("b", EXISTS))),
        ("x in (c,a,b,a)", (Requirement("x", IN, ("a", "b", "c")),)),
        ("x in(a)", (Requirement("x", IN, ("a",)),)),
        ("x notin(a,b)", (Requirement("x", NOT_IN, ("a", "b")),)),
        # "in"/"notin" are words only in operator position, as in Go
        ("in in (in,notin)", (Requirement("in", IN, ("in", "notin")),)),
        ("notin=in", (Requirement("notin", EQ, ("in",)),)),
        ("a=notin", (Requirement("a", EQ, ("notin",)),)),
        ("example.com/app=web", (Requirement("example.com/app", EQ, ("web",)),)),
        ("app.kubernetes.io/name", (Requirement("app.kubernetes.io/name", EXISTS),)),
        ("A_b.c-D=V_a.l-1", (Requirement("A_b.c-D", EQ, ("V_a.l-1",)),)),
        ("k=" + "v" * 63, (Requirement("k", EQ, ("v" * 63,)),)),
        ("n" * 63, (Requirement("n" * 63, EXISTS),)),
        # requirements are sorted by key, stably
        ("b=1,a=2", (Requirement("a", EQ, ("2",)), Requirement("b", EQ, ("1",)))),
        ("a=2,a=1", (Requirement("a", EQ, ("2",)), Requirement("a", EQ, ("1",)))),
    ],
)
def test_parse_requirements(text: str, expected: tuple[Requirement, ...]) -> None:
    assert parse_selector(text).requirements == expected


@pytest.mark.parametrize(
    "text",
    [
        "a=b,c!=d,e in (x,y),f notin (z),g,!h",
        " a=b,c!=d,e in (x,y),f notin (z),g,!h ",
        "a = b , c != d , e in ( x , y ) , f notin ( z ) , g , ! h",
        "a==b,c!=d,e in (y,x),f notin (z),g,!h",
        "\ta=b,\nc!=d,\r\ne\tin\t(x,y),f  notin  (z),g,!h\n",
        "!h,g,f notin (z),e in (y,x,y),c!=d,a=b",
        "a=b,c!=d,e in(x,y),f notin(z),g,!h",
    ],
)
def test_whitespace_and_order_variants_are_one_selector(text: str) -> None:
    selector = parse_selector(text)
    assert str(selector) == "a=b,c!=d,e in (x,y),f notin (z),g,!h"
    assert selector == parse_selector("a=b,c!=d,e in (x,y),f notin (z),g,!h")


@pytest.mark.parametrize("text", ["", " ", "\t", "\r\n", "  \t \n  "])
def test_empty_and_blank_are_everything(text: str) -> None:
    selector = parse_selector(text)
    assert selector == EVERYTHING
    assert selector.empty
    assert str(selector) == ""
    assert selector.matches({})
    assert selector.matches({"any": "thing"})


def test_everything_is_the_empty_selector() -> None:
    assert Selector() == EVERYTHING
    assert EVERYTHING.requirements == ()
    assert EVERYTHING.empty
    assert not parse_selector("a").empty


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a==b", "a=b"),
        ("a = b", "a=b"),
        ("a=", "a="),
        ("a !=", "a!="),
        ("x in (b,a,b)", "x in (a,b)"),
        ("x notin (b, a)", "x notin (a,b)"),
        ("! a", "!a"),
        ("z,y,x", "x,y,z"),
        ("example.com/b=1,a=2", "a=2,example.com/b=1"),
    ],
)
def test_canonical_string(text: str, canonical: str) -> None:
    assert str(parse_selector(text)) == canonical


def test_requirement_str_and_normalisation() -> None:
    assert str(Requirement("a", IN, ("c", "b", "c"))) == "a in (b,c)"
    assert Requirement("a", IN, ("c", "b", "c")).values == ("b", "c")
    assert Requirement("a", NOT_IN, ["x"]).values == ("x",)  # type: ignore[arg-type]
    assert str(Requirement("a", EXISTS)) == "a"
    assert str(Requirement("a", DNE)) == "!a"
    assert str(Requirement("a", EQ, ("",))) == "a="
    assert str(Requirement("a", NE, ("v",))) == "a!=v"


def test_selector_sorts_and_hashes() -> None:
    first = Selector((Requirement("b", EXISTS), Requirement("a", EXISTS)))
    second = Selector((Requirement("a", EXISTS), Requirement("b", EXISTS)))
    assert first == second
    assert hash(first) == hash(second)
    assert [r.key for r in first.requirements] == ["a", "b"]


def test_parse_is_cached_and_errors_are_not() -> None:
    assert parse_selector("cache=me") is parse_selector("cache=me")
    for _ in range(2):
        with pytest.raises(SelectorError):
            parse_selector("a in ()")


# --- matching truth tables ----------------------------------------------------------

PRESENT_B = {"a": "b", "other": "x"}
PRESENT_C = {"a": "c"}
PRESENT_EMPTY = {"a": ""}
ABSENT: dict[str, str] = {"other": "b"}


@pytest.mark.parametrize(
    ("text", "with_b", "with_c", "with_empty", "absent"),
    [
        ("a=b", True, False, False, False),
        ("a==b", True, False, False, False),
        ("a!=b", False, True, True, True),
        ("a=", False, False, True, False),
        ("a!=", True, True, False, True),
        ("a in (b)", True, False, False, False),
        ("a in (b,c)", True, True, False, False),
        ("a notin (b)", False, True, True, True),
        ("a notin (b,c)", False, False, True, True),
        ("a", True, True, True, False),
        ("!a", False, False, False, True),
        ("a,a=b", True, False, False, False),
        ("a=b,a=c", False, False, False, False),
        ("a!=b,a!=c", False, False, True, True),
        ("other", True, False, False, True),
        ("other=x,a=b", True, False, False, False),
        ("", True, True, True, True),
    ],
)
def test_matches_truth_table(
    text: str, with_b: bool, with_c: bool, with_empty: bool, absent: bool
) -> None:
    selector = parse_selector(text)
    assert selector.matches(PRESENT_B) is with_b
    assert selector.matches(PRESENT_C) is with_c
    assert selector.matches(PRESENT_EMPTY) is with_empty
    assert selector.matches(ABSENT) is absent


def test_requirement_matches_directly() -> None:
    assert Requirement("a", NOT_IN, ("b",)).matches({})
    assert not Requirement("a", IN, ("b",)).matches({})
    assert Requirement("a", NE, ("b",)).matches({})
    assert not Requirement("a", EQ, ("",)).matches({})


# --- invalid input: exact messages ---------------------------------------------------

_LABEL_CHARSET = (
    "consist of alphanumeric characters, '-', '_' or '.', "
    "and start and end with an alphanumeric character"
)
_PREFIX_MSG = (
    "prefix part must be a lowercase RFC 1123 subdomain: lower case alphanumeric "
    "characters, '-' or '.', starting and ending with an alphanumeric character "
    "(e.g. 'example.com')"
)
_UNSUPPORTED = (
    "is not supported; supported: =, ==, !=, in, notin, 'key' (exists) and '!key' (does not exist)"
)
_OPERATOR_EXPECTED = "expected: one of '=', '==', '!=', 'in', 'notin', ',' or end of string"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # unsupported comparison operators
        ("a>1", f"operator '>' at position 1 {_UNSUPPORTED}"),
        ("a<1", f"operator '<' at position 1 {_UNSUPPORTED}"),
        ("a gt 1", f"operator 'gt' at position 2 {_UNSUPPORTED}"),
        ("a lt 1", f"operator 'lt' at position 2 {_UNSUPPORTED}"),
        # sets
        ("a in ()", "empty value set at position 5: 'in' needs at least one value"),
        ("a notin ( )", "empty value set at position 8: 'notin' needs at least one value"),
        ("a in (x,)", "trailing ',' before ')' at position 8"),
        ("a in (,x)", "empty value at position 6: values in 'in (...)' must be non-empty"),
        ("a in (x,,y)", "empty value at position 8: values in 'in (...)' must be non-empty"),
        ("a in (x", "unbalanced parentheses: '(' at position 5 is never closed"),
        ("a in (x,", "unbalanced parentheses: '(' at position 5 is never closed"),
        ("a in (", "unbalanced parentheses: '(' at position 5 is never closed"),
        ("a in x", "found 'x' at position 5, expected: '(' after 'in' at position 2"),
        ("a in", "found end of string at position 4, expected: '(' after 'in' at position 2"),
        ("a notin", "found end of string at position 7, expected: '(' after 'notin' at position 2"),
        ("a in ((x))", "found '(' at position 6, expected: a value"),
        ("a in (x y)", "found 'y' at position 8, expected: ',' or ')'"),
        ("a in (x=y)", "found '=' at position 7, expected: ',' or ')'"),
        ("a in (x))", "unbalanced ')' at position 8"),
        # structure
        ("a)", "unbalanced ')' at position 1"),
        (")", "found ')' at position 0, expected: '!' or a label key"),
        ("(a)", "found '(' at position 0, expected: '!' or a label key"),
        (",", "found ',' at position 0, expected: '!' or a label key"),
        (",a", "found ',' at position 0, expected: '!' or a label key"),
        ("a,", "trailing ',' at position 1"),
        ("a=b, ", "trailing ',' at position 3"),
        ("a,,b", "found ',' at position 2, expected: '!' or a label key after ',' at position 1"),
        ("a,=b", "found '=' at position 2, expected: '!' or a label key after ',' at position 1"),
        ("a b", f"found 'b' at position 2, {_OPERATOR_EXPECTED}"),
        ("a (b)", f"found '(' at position 2, {_OPERATOR_EXPECTED}"),
        ("a!b", f"found '!' at position 1, {_OPERATOR_EXPECTED}"),
        ("a=b c", "found 'c' at position 4, expected: ',' or end of string"),
        ("a=b=c", "found '=' at position 3, expected: ',' or end of string"),
        ("a===b", "found '=' at position 3, expected: a value after '=='"),
        ("a=!b", "found '!' at position 2, expected: a value after '='"),
        ("a!=(b)", "found '(' at position 3, expected: a value after '!='"),
        ("!", "found end of string at position 1, expected: a label key after '!' at position 0"),
        ("!!a", "found '!' at position 1, expected: a label key after '!' at position 0"),
        ("!a=b", "found '=' at position 2, expected: ',' or end of string ('!a' takes no operator or value)"),
        ("!a in (b)", "found 'in' at position 3, expected: ',' or end of string ('!a' takes no operator or value)"),
        # invalid keys
        ("a/b/c", "invalid label key 'a/b/c' at position 0: a qualified name must be a name with an optional DNS subdomain prefix and a single '/' (e.g. 'example.com/MyName')"),
        ("/a", "invalid label key '/a' at position 0: prefix part must be non-empty"),
        ("a/", "invalid label key 'a/' at position 0: name part must be non-empty"),
        ("Example.com/a", f"invalid label key 'Example.com/a' at position 0: {_PREFIX_MSG}"),
        ("x" * 64, f"invalid label key '{'x' * 64}' at position 0: name part must be no more than 63 characters"),
        (f"{'p' * 254}/a", f"invalid label key '{'p' * 67}...' at position 0: prefix part must be no more than 253 characters"),
        ("-a=b", f"invalid label key '-a' at position 0: name part must {_LABEL_CHARSET}"),
        ("a-=b", f"invalid label key 'a-' at position 0: name part must {_LABEL_CHARSET}"),
        ("b, a:b=c", f"invalid label key 'a:b' at position 3: name part must {_LABEL_CHARSET}"),
        ("é=1", f"invalid label key 'é' at position 0: name part must {_LABEL_CHARSET}"),
        ("a\x00=1", f"invalid label key 'a\\x00' at position 0: name part must {_LABEL_CHARSET}"),
        ("/=1", "invalid label key '/' at position 0: prefix part must be non-empty; name part must be non-empty"),
        # invalid values
        ("a=b/c", f"invalid label value 'b/c' for key 'a' at position 2: a label value must be empty or {_LABEL_CHARSET}"),
        ("a=-b", f"invalid label value '-b' for key 'a' at position 2: a label value must be empty or {_LABEL_CHARSET}"),
        ("a in (ok,b_)", f"invalid label value 'b_' for key 'a' at position 9: a label value must be empty or {_LABEL_CHARSET}"),
        ("a=" + "v" * 64, f"invalid label value '{'v' * 64}' for key 'a' at position 2: must be no more than 63 characters"),
        ("a=it's", f"invalid label value \"it's\" for key 'a' at position 2: a label value must be empty or {_LABEL_CHARSET}"),
    ],
)  # fmt: skip
def test_invalid_selectors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Requirement("a", EQ, ()), "operator '=' requires exactly one value"),
        (lambda: Requirement("a", NE, ("x", "y")), "operator '!=' requires exactly one value"),
        (lambda: Requirement("a", IN, ()), "operator 'in' requires at least one value"),
        (lambda: Requirement("a", NOT_IN, ("",)), "operator 'notin' does not accept an empty value"),
        (lambda: Requirement("a", EXISTS, ("x",)), "operator 'exists' takes no values"),
        (lambda: Requirement("a", DNE, ("x",)), "operator '!' takes no values"),
        (lambda: Requirement("", EXISTS), "invalid label key '': name part must be non-empty"),
        (lambda: Requirement("a", EQ, ("b c",)), f"invalid label value 'b c' for key 'a': a label value must be empty or {_LABEL_CHARSET}"),
    ],
)  # fmt: skip
def test_invalid_requirements(build: Callable[[], object], message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        build()
    assert str(caught.value) == message


# --- properties -------------------------------------------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def _bounded(ends: str, middle: str, max_middle: int) -> st.SearchStrategy[str]:
    """Strings ``[ends]([middle]*[ends])?``: cheaper to draw than st.from_regex."""
    end = st.sampled_from(ends)
    inner = st.tuples(st.text(alphabet=middle, max_size=max_middle), end).map("".join)
    return st.tuples(end, st.one_of(st.just(""), inner)).map("".join)


names = st.one_of(
    _bounded(_ALNUM, _ALNUM + "-_.", 8),
    _bounded(_ALNUM, _ALNUM + "-_.", 61),  # up to the 63-character limit
)
prefixes = st.lists(_bounded(_LOWER_ALNUM, _LOWER_ALNUM + "-", 6), min_size=1, max_size=4).map(
    ".".join
)
keys = st.one_of(
    names,
    st.tuples(prefixes, names).map("/".join),
    st.sampled_from(["in", "notin", "a", "b", "app"]),
)
set_values = st.one_of(names, st.sampled_from(["in", "notin", "x", "y"]))


@st.composite
def requirements(
    draw: st.DrawFn,
    key: st.SearchStrategy[str] = keys,
    value: st.SearchStrategy[str] = set_values,
) -> Requirement:
    k = draw(key)
    op = draw(st.sampled_from(Operator))
    if op in (EQ, NE):
        return Requirement(k, op, (draw(st.one_of(st.just(""), value)),))
    if op in (IN, NOT_IN):
        return Requirement(k, op, tuple(draw(st.lists(value, min_size=1, max_size=4))))
    return Requirement(k, op)


selectors = st.lists(requirements(), max_size=6).map(lambda rs: Selector(tuple(rs)))
blank = st.text(alphabet=" \t\r\n", max_size=2)


@given(selectors)
def test_str_then_parse_round_trips(selector: Selector) -> None:
    assert parse_selector(str(selector)) == selector


@st.composite
def spelled(draw: st.DrawFn, selector: Selector) -> str:
    """Some non-canonical but equivalent spelling of a selector."""
    parts = []
    for r in selector.requirements:
        ws = [draw(blank) for _ in range(6)]
        if r.operator is EXISTS:
            text = r.key
        elif r.operator is DNE:
            text = f"!{ws[0]}{r.key}"
        elif r.operator in (EQ, NE):
            symbol = draw(st.sampled_from(["=", "=="])) if r.operator is EQ else "!="
            text = f"{r.key}{ws[0]}{symbol}{ws[1]}{r.values[0]}"
        else:
            values = draw(st.permutations(r.values))
            duplicated = [*values, *draw(st.lists(st.sampled_from(values), max_size=2))]
            inner = ",".join(f"{ws[3]}{v}{ws[4]}" for v in duplicated)
            text = f"{r.key} {ws[0]}{r.operator.value}{ws[1]}({ws[2]}{inner}{ws[5]})"
        parts.append(f"{draw(blank)}{text}{draw(blank)}")
    return ",".join(parts)


@given(st.data())
def test_any_spelling_parses_to_the_same_selector(data: st.DataObject) -> None:
    selector = data.draw(selectors.filter(lambda s: not s.empty))
    text = data.draw(spelled(selector))
    assert parse_selector(text) == selector


_SELECTORISH = st.text(alphabet="ab/.-_=!(), \tinotgl<>é0", max_size=30)


@settings(max_examples=500)
@given(st.one_of(st.text(), _SELECTORISH))
@example("a in (b),c notin (d),!e,f=g,h!=i,j==")
@example("\x00")
@example("a\u00a0=b")
def test_parse_raises_only_selector_error_and_is_idempotent(text: str) -> None:
    try:
        selector = parse_selector(text)
    except SelectorError as exc:
        message = str(exc)
        assert message
    else:
        canonical = str(selector)
        assert parse_selector(canonical) == selector
        assert str(parse_selector(canonical)) == canonical


def reference_match(requirement: Requirement, labels: Mapping[str, str]) -> bool:
    """The documented semantics, spelled out case by case."""
    has = requirement.key in labels
    value = labels.get(requirement.key)
    op = requirement.operator
    if op is EXISTS:
        return has
    if op is DNE:
        return not has
    if op is EQ:
        return has and value == requirement.values[0]
    if op is NE:
        return not has or value != requirement.values[0]
    if op is IN:
        return has and any(value == v for v in requirement.values)
    return not has or all(value != v for v in requirement.values)


small_keys = st.sampled_from(["a", "b", "example.com/c"])
small_values = st.sampled_from(["x", "y", "in"])
small_selectors = st.lists(requirements(small_keys, small_values), max_size=4).map(
    lambda rs: Selector(tuple(rs))
)


@given(small_selectors, st.dictionaries(small_keys, st.one_of(st.just(""), small_values)))
def test_matches_agrees_with_reference(selector: Selector, labels: dict[str, str]) -> None:
    expected = all(reference_match(r, labels) for r in selector.requirements)
    assert selector.matches(labels) is expected
    assert parse_selector(str(selector)).matches(labels) is expected
