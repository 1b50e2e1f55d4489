"""Kubernetes name rules, in one place (k8s.io/apimachinery/pkg/util/validation).

Every check of a name the adapter accepts from outside uses these: request
paths (namespaces, object names, resources, metric names), label selectors
(qualified keys, label values) and the rules file (metric names). The
predicates match the whole text (a trailing newline is not a name character).

- DNS-1123 label: at most 63 characters, lower-case alphanumerics and ``-``,
  starting and ending with an alphanumeric (namespaces).
- DNS-1123 subdomain: at most 253 characters, DNS-1123 labels joined by ``.``
  (object names, resources, label-key prefixes).
- Qualified name: an optional DNS-1123 subdomain prefix and ``/``, then a name
  of at most 63 characters (label keys; ``IsQualifiedName``).
- Label value: empty, or at most 63 characters of the name charset
  (``IsValidLabelValue``).
- Metric name: a path segment (``IsValidPathSegmentName``: not ``.`` or ``..``,
  no ``/`` or ``%``), and, because it travels in a URL path, no ``?``;
  printable, at most 253 characters.
"""

from __future__ import annotations

import re
from typing import Final

DNS1123_LABEL_MAX: Final = 63
DNS1123_SUBDOMAIN_MAX: Final = 253
QUALIFIED_NAME_MAX: Final = 63
LABEL_VALUE_MAX: Final = 63
METRIC_NAME_MAX: Final = 253

_DNS1123_LABEL: Final = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE: Final = re.compile(_DNS1123_LABEL)
_DNS1123_SUBDOMAIN_RE: Final = re.compile(rf"{_DNS1123_LABEL}(?:\.{_DNS1123_LABEL})*")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_NAME_CHARSET_MSG: Final = (
    "consist of alphanumeric characters, '-', '_' or '.', "
    "and start and end with an alphanumeric character"
)
_METRIC_FORBIDDEN: Final = frozenset("/%?")


def is_dns1123_label(text: str) -> bool:
    """Whether ``text`` is a DNS-1123 label (a namespace name)."""
    return len(text) <= DNS1123_LABEL_MAX and _DNS1123_LABEL_RE.fullmatch(text) is not None


def is_dns1123_subdomain(text: str) -> bool:
    """Whether ``text`` is a DNS-1123 subdomain (most object names)."""
    return len(text) <= DNS1123_SUBDOMAIN_MAX and _DNS1123_SUBDOMAIN_RE.fullmatch(text) is not None


def qualified_name_problems(key: str) -> list[str]:
    """Why ``key`` is not a qualified name (a label key); empty when it is.

    The messages are apimachinery's, so a refused selector reads as the API
    server would word it.
    """
    parts = key.split("/")
    if len(parts) > 2:
        return [
            "a qualified name must be a name with an optional DNS subdomain prefix "
            "and a single '/' (e.g. 'example.com/MyName')"
        ]
    problems: list[str] = []
    if len(parts) == 2:
        problems.extend(_prefix_problems(parts[0]))
    name = parts[-1]
    if not name:
        problems.append("name part must be non-empty")
    else:
        if len(name) > QUALIFIED_NAME_MAX:
            problems.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
        if not _NAME_RE.fullmatch(name):
            problems.append(f"name part must {_NAME_CHARSET_MSG}")
    return problems


def _prefix_problems(prefix: str) -> list[str]:
    if not prefix:
        return ["prefix part must be non-empty"]
    problems: list[str] = []
    if len(prefix) > DNS1123_SUBDOMAIN_MAX:
        problems.append(f"prefix part must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
        problems.append(
            "prefix part must be a lowercase RFC 1123 subdomain: lower case "
            "alphanumeric characters, '-' or '.', starting and ending with an "
            "alphanumeric character (e.g. 'example.com')"
        )
    return problems


def label_value_problems(value: str) -> list[str]:
    """Why ``value`` is not a label value; empty when it is (the empty value is one)."""
    problems: list[str] = []
    if len(value) > LABEL_VALUE_MAX:
        problems.append(f"must be no more than {LABEL_VALUE_MAX} characters")
    if value and not _NAME_RE.fullmatch(value):
        problems.append(f"a label value must be empty or {_NAME_CHARSET_MSG}")
    return problems


def metric_name_is_path_safe(name: str) -> bool:
    """Whether ``name`` can be a URL path segment: not ``.``/``..``, no ``/``, ``%``, ``?``."""
    return name not in {".", ".."} and not _METRIC_FORBIDDEN & set(name)


def is_metric_name(name: str) -> bool:
    """Whether ``name`` can name a custom metric: non-empty, path-safe, printable, bounded."""
    return (
        0 < len(name) <= METRIC_NAME_MAX and metric_name_is_path_safe(name) and name.isprintable()
    )
