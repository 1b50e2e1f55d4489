"""PromQL text building: pure functions, string in, string out.

Everything a user controls (a ``metricLabelSelector``, series and label names
from the rules file) reaches Prometheus only through this module, so its one
promise is: **no input changes the structure of a query**. Label names must be
Prometheus label names (``[a-zA-Z_][a-zA-Z0-9_]*``, not ``__``-reserved) or
are rejected with :class:`PromQLError` (the API answers 400); values only ever
appear inside double-quoted PromQL strings, escaped (backslash, quote and every
non-printable character), and regex values are also escaped for RE2.

Selector requirements map to matchers as follows:

==================  ==========================================
``k=v``             ``k="v"``
``k!=v``            ``k!="v"``
``k in (a,b)``      ``k=~"^(?:a|b)$"`` (``k="a"`` for one value)
``k notin (a,b)``   ``k!~"^(?:a|b)$"`` (``k!="a"`` for one value)
``k`` (exists)      ``k!=""``
``!k``              ``k=""``
==================  ==========================================

In PromQL a label that is absent equals the empty string, so these keep the
Kubernetes meaning, e.g. ``k!=v`` also matches series without ``k``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

from adapter.core.durations import format_duration
from adapter.core.selectors import Operator, Requirement, Selector

__all__ = [
    "LabelMatcher",
    "MatchOp",
    "PromQLError",
    "check_label_name",
    "check_metric_name",
    "check_syntax",
    "matcher",
    "matcher_for",
    "matchers_from_selector",
    "parse_matchers",
    "quote",
    "regex_escape",
    "render_gauge_query",
    "render_histogram_query",
    "render_matchers",
    "render_template",
]

LABEL_NAME_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
METRIC_NAME_RE: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

# The label the gauge query uses to tell its two halves apart (see render_gauge_query).
PART_LABEL: Final = "adapter_part"
PART_VALUE: Final = "value"
PART_TIMESTAMP: Final = "timestamp"


class PromQLError(ValueError):
    """An input cannot be turned into a safe query. The message is user-facing."""


class MatchOp(Enum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    """One label matcher; ``value`` is the literal string (a regex for ``=~``/``!~``).

    Construction validates the label name and the value, so a LabelMatcher
    always renders to exactly one well-formed matcher.
    """

    name: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        check_label_name(self.name)
        _check_value(self.value)

    def __str__(self) -> str:
        return f"{self.name}{self.op.value}{quote(self.value)}"


def check_label_name(name: str) -> str:
    """``name`` if it is a usable Prometheus label name, else PromQLError."""
    if not LABEL_NAME_RE.fullmatch(name):
        raise PromQLError(
            f"label name {_show(name)} is not a valid Prometheus label name "
            "(letters, digits and '_', not starting with a digit)"
        )
    if name.startswith("__"):
        raise PromQLError(f"label name {_show(name)} is reserved (names starting with '__')")
    return name


def check_metric_name(name: str) -> str:
    """``name`` if it is a valid Prometheus metric name, else PromQLError."""
    if not METRIC_NAME_RE.fullmatch(name):
        raise PromQLError(
            f"{_show(name)} is not a valid Prometheus metric name "
            "(letters, digits, '_' and ':', not starting with a digit)"
        )
    return name


_SIMPLE_ESCAPES: Final[Mapping[str, str]] = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def quote(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal that reads back as ``value``.

    Backslash, double quote and control characters get their short escapes;
    every other non-printable code point becomes ``\\uXXXX``/``\\UXXXXXXXX``.
    Printable non-ASCII text is kept as UTF-8, which PromQL reads as is.
    """
    _check_value(value)
    out: list[str] = []
    for char in value:
        escaped = _SIMPLE_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char.isprintable():
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


_RE2_META: Final = frozenset("\\.+*?()|[]{}^$")


def regex_escape(value: str) -> str:
    """``value`` as an RE2 pattern matching exactly itself (Go's ``regexp.QuoteMeta``)."""
    return "".join("\\" + c if c in _RE2_META else c for c in value)


def _any_of(values: Iterable[str]) -> str:
    """An explicitly anchored alternation of literal values (PromQL anchors too)."""
    return "^(?:" + "|".join(regex_escape(v) for v in values) + ")$"


def matcher_for(requirement: Requirement) -> LabelMatcher:
    """The PromQL matcher equivalent to one selector requirement."""
    return matcher(requirement.key, requirement.operator, requirement.values)


def matcher(key: str, op: Operator, values: Sequence[str]) -> LabelMatcher:
    """The PromQL matcher for ``key <op> values``, from any strings (validated here)."""
    if op is Operator.EXISTS or op is Operator.DOES_NOT_EXIST:
        return LabelMatcher(key, _EXACT_OPS[op is Operator.EXISTS], "")
    if not values:
        raise PromQLError(f"requirement on {_show(key)} has no value")
    negated = op is Operator.NOT_EQUALS or op is Operator.NOT_IN
    if len(values) == 1 or op is Operator.EQUALS or op is Operator.NOT_EQUALS:
        if len(values) != 1:
            raise PromQLError(f"'{op.value}' takes exactly one value")
        return LabelMatcher(key, _EXACT_OPS[negated], values[0])
    return LabelMatcher(key, MatchOp.NRE if negated else MatchOp.RE, _any_of(values))


_EXACT_OPS: Final[Mapping[bool, MatchOp]] = {False: MatchOp.EQ, True: MatchOp.NE}


def matchers_from_selector(selector: Selector) -> tuple[LabelMatcher, ...]:
    """The matchers for a ``metricLabelSelector``; PromQLError names the first bad key."""
    return tuple(matcher_for(r) for r in selector.requirements)


# --- PromQL matcher lists, as a rule's series selector ---

_MATCHER_RE: Final = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*")
_GO_ESCAPES: Final[Mapping[str, str]] = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", "'": "'", '"': '"',
}  # fmt: skip
_HEX_ESCAPES: Final[Mapping[str, int]] = {"x": 2, "u": 4, "U": 8}
_LOOKAROUNDS: Final = ("?=", "?!", "?<=", "?<!", "?P=")


def _not_re2(pattern: str) -> bool:
    """Whether ``pattern`` uses lookaround or a backreference (Python has them, RE2 not).

    Scans escapes as the regex parser does, so an escaped backslash followed by a
    digit (``\\\\1``: a literal backslash, then 1) or an escaped parenthesis is not
    taken for one.
    """
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if pattern[i + 1 : i + 2] in tuple("123456789"):
                return True
            i += 2
            continue
        if c == "(" and pattern.startswith(_LOOKAROUNDS, i + 1):
            return True
        i += 1
    return False


def parse_matchers(text: str) -> tuple[LabelMatcher, ...]:
    """``name="v", other=~"a|b"`` (optionally in braces) as validated matchers.

    Values are PromQL string literals (double, single or back quotes, Go
    escapes); they are decoded here, so rendering re-escapes them and no value
    can change the query's structure. Regexes must compile and use no feature
    RE2 lacks (lookaround, backreferences). PromQLError says what is wrong where.
    """
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    result: list[LabelMatcher] = []
    i = 0
    while i < len(body):
        if not body[i:].strip():
            break
        found = _MATCHER_RE.match(body, i)
        if found is None:
            raise PromQLError(f'expected a matcher such as name="value" at position {i}')
        name, op = found.group(1), MatchOp(found.group(2))
        value, i = _read_string(body, found.end())
        if op in (MatchOp.RE, MatchOp.NRE):
            _check_regex(value)
        result.append(LabelMatcher(check_label_name(name), op, value))
        rest = body[i:].lstrip()
        if rest and not rest.startswith(","):
            raise PromQLError(f"expected ',' between matchers at position {len(body) - len(rest)}")
        i = len(body) - len(rest) + 1 if rest else len(body)
    if not result:
        raise PromQLError("an empty matcher list")
    return tuple(result)


def _read_string(text: str, start: int) -> tuple[str, int]:
    """The PromQL string literal at ``start``, decoded, and the index after it."""
    if start >= len(text) or text[start] not in "\"'`":
        raise PromQLError(f"expected a quoted value at position {start}")
    quote_char = text[start]
    end = _skip_string(text, start)
    inner = text[start + 1 : end - 1]
    if quote_char == "`":
        return inner, end
    out: list[str] = []
    i = 0
    while i < len(inner):
        c = inner[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        kind = inner[i + 1] if i + 1 < len(inner) else ""
        if kind in _GO_ESCAPES:
            out.append(_GO_ESCAPES[kind])
            i += 2
        elif kind in _HEX_ESCAPES or kind in "01234567":
            width, base, skip = (_HEX_ESCAPES[kind], 16, 2) if kind in _HEX_ESCAPES else (3, 8, 1)
            digits = inner[i + skip : i + skip + width]
            try:
                code = int(digits, base) if len(digits) == width else -1
            except ValueError:
                code = -1
            if not 0 <= code <= 0x10FFFF:
                raise PromQLError(f"bad escape '\\{kind}' in {_show(inner)}")
            out.append(chr(code))
            i += skip + width
        else:
            raise PromQLError(f"unknown escape '\\{kind}' in {_show(inner)}")
    return "".join(out), end


def _check_regex(pattern: str) -> None:
    if _not_re2(pattern):
        raise PromQLError(f"{_show(pattern)}: lookaround and backreferences are not RE2")
    try:
        re.compile(pattern)
    except re.error as e:
        raise PromQLError(f"{_show(pattern)} is not a valid regex: {e}") from e


def render_matchers(matchers: Iterable[LabelMatcher]) -> str:
    """Matchers joined by commas, without braces (what ``<<matchers>>`` expands to)."""
    return ",".join(str(m) for m in matchers)


def pod_matchers(namespace_label: str, pod_label: str) -> tuple[LabelMatcher, ...]:
    """Only series that name a pod: the rest cannot be attributed to one."""
    return (
        LabelMatcher(namespace_label, MatchOp.NE, ""),
        LabelMatcher(pod_label, MatchOp.NE, ""),
    )


# --- queries ---

AGGREGATORS: Final = frozenset({"sum", "avg", "max", "min"})


def render_histogram_query(
    series: str,
    namespace_label: str,
    pod_label: str,
    matchers: Iterable[LabelMatcher],
    window_seconds: int,
) -> str:
    """Per-pod bucket rates: ``sum by (ns, pod, le) (rate(<series>_bucket{...}[w]))``."""
    check_metric_name(series)
    selector = _vector_selector(f"{series}_bucket", namespace_label, pod_label, matchers)
    return (
        f"sum by ({namespace_label}, {pod_label}, le) "
        f"(rate({selector}[{format_duration(window_seconds)}]))"
    )


def render_gauge_query(
    series: str,
    namespace_label: str,
    pod_label: str,
    matchers: Iterable[LabelMatcher],
    combine: str,
) -> str:
    """Per-pod gauge values and their sample timestamps, in one query.

    Two halves joined by ``or``, told apart by ``adapter_part``: the value
    (several series of one pod combined with ``combine``) and, via
    ``timestamp()``, the time of the oldest sample it is made of. One query
    keeps both halves from the same evaluation and halves the round trips.
    """
    check_metric_name(series)
    if combine not in AGGREGATORS:
        raise PromQLError(f"unknown aggregation {_show(combine)}")
    selector = _vector_selector(series, namespace_label, pod_label, matchers)
    by = f"by ({namespace_label}, {pod_label})"
    value = f"{combine} {by} ({selector})"
    stamp = f"min {by} (timestamp({selector}))"
    return f"{_tagged(value, PART_VALUE)} or {_tagged(stamp, PART_TIMESTAMP)}"


def _tagged(expr: str, part: str) -> str:
    return f'label_replace({expr}, "{PART_LABEL}", "{part}", "", "")'


PLACEHOLDERS: Final = ("<<matchers>>", "<<groupBy>>", "<<window>>")
_PLACEHOLDER_RE: Final = re.compile(r"<<[^<>]*>>")


def render_template(
    template: str,
    namespace_label: str,
    pod_label: str,
    matchers: Iterable[LabelMatcher],
    window_seconds: int | None,
) -> str:
    """Expand ``<<matchers>>``, ``<<groupBy>>`` and ``<<window>>`` in a user template.

    ``<<matchers>>`` always includes ``ns!="",pod!=""``, so ``metric{<<matchers>>}``
    is never an empty selector; it goes inside braces the template writes.
    """
    unknown = sorted(set(_PLACEHOLDER_RE.findall(template)) - set(PLACEHOLDERS))
    if unknown:
        raise PromQLError(f"unknown placeholder(s) {', '.join(unknown)}")
    all_matchers = (*pod_matchers(namespace_label, pod_label), *matchers)
    text = template.replace("<<matchers>>", render_matchers(all_matchers))
    text = text.replace("<<groupBy>>", f"{namespace_label}, {pod_label}")
    if "<<window>>" in text:
        if window_seconds is None:
            raise PromQLError("the template uses <<window>> but no window is set")
        text = text.replace("<<window>>", format_duration(window_seconds))
    return text


def _vector_selector(
    metric: str, namespace_label: str, pod_label: str, matchers: Iterable[LabelMatcher]
) -> str:
    all_matchers = (*pod_matchers(namespace_label, pod_label), *matchers)
    return f"{metric}{{{render_matchers(all_matchers)}}}"


# --- a syntax sanity check for templates (we do not embed a PromQL parser) ---

_CLOSERS: Final[Mapping[str, str]] = {")": "(", "]": "[", "}": "{"}


def check_syntax(query: str) -> None:
    """Balanced brackets and closed string literals, or PromQLError saying where.

    Strings are ``"..."`` and ``'...'`` (with backslash escapes) and raw
    `` `...` ``; ``#`` starts a comment to the end of the line.
    """
    stack: list[tuple[str, int]] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c in "\"'`":
            i = _skip_string(query, i)
            continue
        if c == "#":
            newline = query.find("\n", i)
            i = n if newline < 0 else newline + 1
            continue
        if c in "([{":
            stack.append((c, i))
        elif c in _CLOSERS:
            if not stack or stack[-1][0] != _CLOSERS[c]:
                raise PromQLError(f"unbalanced {c!r} at position {i}")
            stack.pop()
        i += 1
    if stack:
        opener, pos = stack[-1]
        raise PromQLError(f"{opener!r} at position {pos} is never closed")
    if not query.strip():
        raise PromQLError("the query is empty")


def _skip_string(query: str, start: int) -> int:
    """The index after the string literal opening at ``start``."""
    quote_char = query[start]
    i = start + 1
    while i < len(query):
        c = query[i]
        if c == "\\" and quote_char != "`":
            i += 2
            continue
        if c == quote_char:
            return i + 1
        if c == "\n" and quote_char != "`":
            break
        i += 1
    raise PromQLError(f"string starting at position {start} is never closed")


def _check_value(value: str) -> None:
    # A lone surrogate cannot be sent as UTF-8; refuse it here rather than fail later.
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise PromQLError("label values must be valid Unicode text")


def _show(text: str) -> str:
    if len(text) > 70:
        text = text[:67] + "..."
    return repr(text)
