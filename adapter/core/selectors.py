"""Kubernetes label selectors, as ``k8s.io/apimachinery/pkg/labels.Parse`` reads them.

The HPA sends the scale target's pod selector as ``labelSelector``; users send
``metricLabelSelector`` by hand. Both are parsed here into an immutable
:class:`Selector`, with Go's semantics:

- ``key=value`` and ``key==value`` are the same requirement (printed ``key=value``);
  the value may be empty (``key=``).
- ``key!=value`` and ``key notin (a,b)`` also match objects that lack ``key``.
- ``key in (a,b)`` and ``key notin (a,b)`` take a non-empty parenthesised list.
- ``key`` requires the key to exist, ``!key`` requires it to be absent.
- Requirements are separated by ``,`` and ANDed; whitespace (space, tab, CR, LF)
  may surround any token. The empty selector matches everything.
- Keys are qualified names (``[prefix/]name``: a lowercase DNS subdomain of at
  most 253 characters, then a name of at most 63 characters), values are label
  values (at most 63 characters, possibly empty).

Deliberate differences from Go, all stricter:

- ``<``, ``>`` (and the words ``gt``/``lt``) are rejected as unsupported: a
  numeric comparison has no meaning for the pod and series labels served here.
- Empty members of a value set are rejected: ``in ()``, ``in (a,)``,
  ``in (,a)`` and ``in (a,,b)`` are errors (Go reads them as containing ``""``).
  So every valid :class:`Requirement` prints to text that parses back to it.
- Requirements with the same key are sorted stably (Go's sort is not stable).

:class:`SelectorError` messages are shown to the caller in a 400 Status. They
name the offending token and its position, a 0-based character offset into
the selector text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Final

from adapter.core.names import label_value_problems, qualified_name_problems

__all__ = [
    "EVERYTHING",
    "Operator",
    "Requirement",
    "Selector",
    "SelectorError",
    "parse_selector",
]


class SelectorError(ValueError):
    """A selector is malformed. The message is user-facing (a 400 Status)."""


class Operator(Enum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


# --- error messages (the name rules themselves are adapter.core.names) ---

_SHOW_MAX = 70


def _show(text: str) -> str:
    """Quote a user-supplied token for an error message, safely and briefly."""
    if len(text) > _SHOW_MAX:
        text = text[: _SHOW_MAX - 3] + "..."
    if text.isprintable() and "'" not in text:
        return f"'{text}'"
    return repr(text)


def _invalid_key(key: str, problems: list[str], where: str = "") -> SelectorError:
    return SelectorError(f"invalid label key {_show(key)}{where}: {'; '.join(problems)}")


def _invalid_value(key: str, value: str, problems: list[str], where: str = "") -> SelectorError:
    return SelectorError(
        f"invalid label value {_show(value)} for key {_show(key)}{where}: {'; '.join(problems)}"
    )


# --- the value types ---

_EXACT = frozenset({Operator.EQUALS, Operator.NOT_EQUALS})
_SET = frozenset({Operator.IN, Operator.NOT_IN})
_UNARY = frozenset({Operator.EXISTS, Operator.DOES_NOT_EXIST})


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ANDed term of a selector.

    ``values`` is normalised on construction: sorted and deduplicated for
    ``in``/``notin`` (at least one value, none empty), exactly one value (which
    may be ``""``) for ``=``/``!=``, and ``()`` for exists/does-not-exist.
    Construction validates the key and values and raises :class:`SelectorError`.
    """

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = qualified_name_problems(self.key)
        if problems:
            raise _invalid_key(self.key, problems)
        values = tuple(self.values)
        op = self.operator
        if op in _EXACT:
            if len(values) != 1:
                raise SelectorError(f"operator '{op.value}' requires exactly one value")
        elif op in _SET:
            if not values:
                raise SelectorError(f"operator '{op.value}' requires at least one value")
            if "" in values:
                raise SelectorError(f"operator '{op.value}' does not accept an empty value")
            values = tuple(sorted(set(values)))
        elif values:
            raise SelectorError(f"operator '{op.value}' takes no values")
        for value in values:
            problems = label_value_problems(value)
            if problems:
                raise _invalid_value(self.key, value, problems)
        object.__setattr__(self, "values", values)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this requirement (Go's ``Requirement.Matches``)."""
        op = self.operator
        if op is Operator.EXISTS:
            return self.key in labels
        if op is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        present = self.key in labels and labels[self.key] in self.values
        if op is Operator.EQUALS or op is Operator.IN:
            return present
        return not present  # != and notin: also true when the key is absent

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if op in _EXACT:
            return f"{self.key}{op.value}{self.values[0]}"
        return f"{self.key} {op.value} ({','.join(self.values)})"


def _by_key(requirement: Requirement) -> str:
    return requirement.key


@dataclass(frozen=True, slots=True)
class Selector:
    """An AND of requirements, kept sorted by key (stable) like Go's ``internalSelector``.

    Equal selectors compare and hash equal, so a Selector can key a cache.
    """

    requirements: tuple[Requirement, ...] = ()
    # (key, operator, values as a frozenset): matches() runs once per pod per request,
    # so it reads this flat plan instead of calling Requirement.matches.
    _plan: tuple[tuple[str, Operator, frozenset[str]], ...] = field(
        default=(), init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.requirements, key=_by_key))
        object.__setattr__(self, "requirements", ordered)
        plan = tuple((r.key, r.operator, frozenset(r.values)) for r in ordered)
        object.__setattr__(self, "_plan", plan)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when every requirement matches; the empty selector matches everything.

        Same semantics as ``all(r.matches(labels) for r in self.requirements)``.
        """
        for key, op, values in self._plan:
            if op is Operator.EXISTS:
                if key not in labels:
                    return False
            elif op is Operator.DOES_NOT_EXIST:
                if key in labels:
                    return False
            else:
                value = labels.get(key)
                present = value is not None and value in values
                if present != (op is Operator.EQUALS or op is Operator.IN):
                    return False
        return True

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything."""
        return not self.requirements

    def __str__(self) -> str:
        """The canonical text (Go's ``Selector.String()``, with ``=`` for ``==``)."""
        return ",".join(str(requirement) for requirement in self.requirements)


EVERYTHING: Final = Selector()


# --- lexer ---

_WHITESPACE = frozenset(" \t\r\n")
_SPECIAL = frozenset("=!(),<>")
_TWO_CHAR = frozenset({"!=", "=="})
_IDENT = "identifier"
_EOS = "end of string"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # _IDENT, _EOS, or the operator/punctuation literal itself
    text: str
    pos: int

    def shown(self) -> str:
        return _EOS if self.kind == _EOS else _show(self.text)


def _lex(text: str) -> list[_Token]:
    """Split like Go's lexer: runs of special symbols, else runs up to a special or blank."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            tokens.append(_Token(_EOS, "", n))
            return tokens
        if text[i] in _SPECIAL:
            width = 2 if text[i : i + 2] in _TWO_CHAR else 1
            literal = text[i : i + width]
            tokens.append(_Token(literal, literal, i))
            i += width
            continue
        j = i + 1
        while j < n and text[j] not in _SPECIAL and text[j] not in _WHITESPACE:
            j += 1
        tokens.append(_Token(_IDENT, text[i:j], i))
        i = j


# --- parser ---

_OPERATORS: Final[Mapping[str, Operator]] = {
    "=": Operator.EQUALS,
    "==": Operator.EQUALS,
    "!=": Operator.NOT_EQUALS,
    "in": Operator.IN,
    "notin": Operator.NOT_IN,
}
_UNSUPPORTED_OPERATORS = frozenset({"<", ">", "gt", "lt"})
_SUPPORTED = "=, ==, !=, in, notin, 'key' (exists) and '!key' (does not exist)"


def _unexpected(token: _Token, expected: str) -> SelectorError:
    return SelectorError(f"found {token.shown()} at position {token.pos}, expected: {expected}")


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = _lex(text)
        self._index = 0

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _next(self) -> _Token:
        token = self._tokens[self._index]
        if token.kind != _EOS:
            self._index += 1
        return token

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        if self._peek().kind == _EOS:
            return requirements
        context = ""
        while True:
            requirements.append(self._requirement(context))
            token = self._next()
            if token.kind == _EOS:
                return requirements
            if token.kind == ")":
                raise SelectorError(f"unbalanced ')' at position {token.pos}")
            if token.kind != ",":
                raise _unexpected(token, "',' or end of string")
            if self._peek().kind == _EOS:
                raise SelectorError(f"trailing ',' at position {token.pos}")
            context = f" after ',' at position {token.pos}"

    def _key(self, token: _Token) -> str:
        problems = qualified_name_problems(token.text)
        if problems:
            raise _invalid_key(token.text, problems, f" at position {token.pos}")
        return token.text

    def _requirement(self, context: str) -> Requirement:
        token = self._next()
        if token.kind == "!":
            bang = token
            token = self._next()
            if token.kind != _IDENT:
                raise _unexpected(token, f"a label key after '!' at position {bang.pos}")
            key = self._key(token)
            after = self._peek()
            if after.kind not in (",", _EOS, ")"):
                raise _unexpected(
                    after, f"',' or end of string ('!{key}' takes no operator or value)"
                )
            return Requirement(key, Operator.DOES_NOT_EXIST)
        if token.kind != _IDENT:
            raise _unexpected(token, f"'!' or a label key{context}")
        key = self._key(token)
        if self._peek().kind in (",", _EOS, ")"):
            return Requirement(key, Operator.EXISTS)
        op_token = self._next()
        operator = self._operator(op_token)
        if operator in _SET:
            return Requirement(key, operator, self._value_set(key, op_token))
        return Requirement(key, operator, (self._exact_value(key, op_token),))

    def _operator(self, token: _Token) -> Operator:
        if token.text in _OPERATORS:  # "in"/"notin" are words; the rest are symbols
            return _OPERATORS[token.text]
        if token.text in _UNSUPPORTED_OPERATORS:
            raise SelectorError(
                f"operator {token.shown()} at position {token.pos} is not supported; "
                f"supported: {_SUPPORTED}"
            )
        raise _unexpected(token, "one of '=', '==', '!=', 'in', 'notin', ',' or end of string")

    def _value(self, key: str, token: _Token) -> str:
        problems = label_value_problems(token.text)
        if problems:
            raise _invalid_value(key, token.text, problems, f" at position {token.pos}")
        return token.text

    def _exact_value(self, key: str, op_token: _Token) -> str:
        if self._peek().kind in (",", _EOS, ")"):
            return ""  # "key=" selects the empty value, as in Go
        token = self._next()
        if token.kind != _IDENT:
            raise _unexpected(token, f"a value after {_show(op_token.text)}")
        return self._value(key, token)

    def _value_set(self, key: str, op_token: _Token) -> tuple[str, ...]:
        opening = self._next()
        if opening.kind != "(":
            raise _unexpected(opening, f"'(' after '{op_token.text}' at position {op_token.pos}")
        token = self._next()
        if token.kind == ")":
            raise SelectorError(
                f"empty value set at position {opening.pos}: "
                f"'{op_token.text}' needs at least one value"
            )
        values: list[str] = []
        while True:
            if token.kind == _EOS:
                raise SelectorError(
                    f"unbalanced parentheses: '(' at position {opening.pos} is never closed"
                )
            if token.kind == ")":  # only reachable right after a comma
                raise SelectorError(f"trailing ',' before ')' at position {token.pos}")
            if token.kind == ",":
                raise SelectorError(
                    f"empty value at position {token.pos}: "
                    f"values in '{op_token.text} (...)' must be non-empty"
                )
            if token.kind != _IDENT:
                raise _unexpected(token, "a value")
            values.append(self._value(key, token))
            separator = self._next()
            if separator.kind == ")":
                return tuple(values)
            if separator.kind == _EOS:
                raise SelectorError(
                    f"unbalanced parentheses: '(' at position {opening.pos} is never closed"
                )
            if separator.kind != ",":
                raise _unexpected(separator, "',' or ')'")
            token = self._next()


def _from(requirements: Iterable[Requirement]) -> Selector:
    selector = Selector(tuple(requirements))
    return EVERYTHING if selector.empty else selector


@lru_cache(maxsize=512)
def _parse_cached(text: str) -> Selector:
    return _from(_Parser(text).parse())


def parse_selector(text: str) -> Selector:
    """Parse a label selector; ``""`` or blanks only give :data:`EVERYTHING`.

    Raises :class:`SelectorError` (a ``ValueError``) with a message naming the
    offending token and its 0-based position. Results are cached (errors are
    not): the HPA sends the same few selectors every sync period.
    """
    return _parse_cached(text)
