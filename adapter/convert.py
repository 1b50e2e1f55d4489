"""``convert-rules``: a prometheus-adapter config -> our rules file, nothing dropped silently.

Reads prometheus-adapter's ``rules`` (``seriesQuery``, ``seriesFilters``,
``resources.overrides`` / ``resources.template``, ``name.matches`` / ``name.as``,
``metricsQuery`` with ``<<.Series>>``, ``<<.LabelMatchers>>``, ``<<.GroupBy>>``)
and writes one ``query`` rule per metric name::

    metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)
    -> query: sum(rate(http_requests_total{<<matchers>>}[2m])) by (<<groupBy>>)

The semantics carry over: prometheus-adapter's ``<<.LabelMatchers>>`` restricts
to the asked-for pods and ``<<.GroupBy>>`` groups by the pod label; ours match
every pod (``ns!="",pod!=""`` plus any metricLabelSelector) and group by
namespace and pod, and the adapter picks the asked-for pods from the snapshot,
so each pod's value is the same. The first converted rule's pod and namespace
labels become the file's ``prometheus.namespaceLabel``/``podLabel``; a rule with
another pair (e.g. dcgm-exporter's ``exported_namespace``/``exported_pod``) gets
its own ``namespaceLabel``/``podLabel`` in its ``prometheus`` block.

Metric names come from the ``seriesQuery``: a literal name (``name{...}`` or
``{__name__="name"}``) is used as is; anything else needs series discovery,
done once at conversion time by ``lister`` (``--prometheus-url``), then
``seriesFilters`` (``is``/``isNot``, unanchored Go regexps) and ``name`` apply
as prometheus-adapter applies them.

Everything that cannot be translated faithfully is an :class:`Untranslatable`
(line, where, reason): ``externalRules``, ``resourceRules``, rules without a
pod label, unknown keys, template constructs other than the three above, name
collisions, resources other than pods. A converted metric serves ``pods`` (and
the workloads made of them); prometheus-adapter's ``namespaces/<metric>`` is
listed, not translated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from adapter.rulesfile import ConfigError, ConfigIssue, parse_yaml_with_lines

__all__ = ["Conversion", "SeriesLister", "Untranslatable", "convert"]

SeriesLister = Callable[[str], Sequence[str]]
"""Metric names of the series a ``seriesQuery`` selects (``/api/v1/series``)."""

_RULE_KEYS: Final = frozenset({"seriesQuery", "seriesFilters", "resources", "name", "metricsQuery"})
_PLACEHOLDER: Final = re.compile(r"<<-?\s*(.*?)\s*-?>>", re.DOTALL)
_OURS: Final[Mapping[str, str]] = {
    ".LabelMatchers": "<<matchers>>",
    ".GroupBy": "<<groupBy>>",
}
_LITERAL_NAME: Final = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{.*\})?\s*$", re.DOTALL)
_NAME_EQ: Final = re.compile(r"""__name__\s*=\s*(["'`])([a-zA-Z_:][a-zA-Z0-9_:]*)\1""")
_NAME_OTHER: Final = re.compile(r"__name__\s*(=~|!=|!~)")
_GO_GROUP: Final = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_NAMESPACE: Final = frozenset({"namespace", "namespaces"})
_POD: Final = frozenset({"pod", "pods"})


@dataclass(frozen=True, slots=True)
class Untranslatable:
    line: int | None
    where: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line if self.line is not None else '?'}: {self.where}: {self.reason}"


@dataclass
class Conversion:
    """The rules file (as data) and everything left out of it."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    labels: tuple[str, str] | None = None
    """(namespace label, pod label) of the file: the first converted rule's; a rule with
    another pair carries its own namespaceLabel/podLabel."""
    untranslatable: list[Untranslatable] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.labels is not None and self.labels != ("namespace", "pod"):
            doc["prometheus"] = {"namespaceLabel": self.labels[0], "podLabel": self.labels[1]}
        doc["metrics"] = self.metrics
        return doc

    def yaml(self, source: str) -> str:
        """The rules file, headed by a comment listing what was not converted."""
        head = [f"# Converted from the prometheus-adapter config {source} by convert-rules."]
        if self.untranslatable:
            head.append("# Not converted (see README, 'Coming from prometheus-adapter'):")
            head.extend(f"#   {item}" for item in self.untranslatable)
        body = yaml.safe_dump(self.document(), sort_keys=False, width=1000, allow_unicode=True)
        return "\n".join(head) + "\n" + body


class _Lines:
    def __init__(self, lines: Mapping[str, int], offset: int) -> None:
        self._lines = lines
        self._offset = offset

    def __call__(self, path: str) -> int | None:
        probe = path
        while probe:
            if probe in self._lines:
                return self._lines[probe] + self._offset
            probe = probe.rpartition(".")[0] if "." in probe else probe.rpartition("[")[0]
        return None


def convert(text: str, file: str, lister: SeriesLister | None = None) -> Conversion:
    """Translate a prometheus-adapter config (or a ConfigMap holding ``config.yaml``).

    Raises ConfigError only when the text is not YAML or not a mapping; every
    rule-level problem is an Untranslatable entry instead.
    """
    located = parse_yaml_with_lines(text, file)
    top, offset = located.value, 0
    lines = located.lines
    if isinstance(top, dict) and top.get("kind") == "ConfigMap":
        data = top.get("data") or {}
        inner = data.get("config.yaml") if isinstance(data, dict) else None
        if not isinstance(inner, str):
            raise ConfigError([ConfigIssue(file, None, "data", "a ConfigMap without config.yaml")])
        offset = lines.get("data.config.yaml", 1)
        located = parse_yaml_with_lines(inner, file)
        top, lines = located.value, located.lines
    if not isinstance(top, dict):
        raise ConfigError([ConfigIssue(file, None, "", "a prometheus-adapter config is a mapping")])
    line = _Lines(lines, offset)
    result = Conversion()
    for key in sorted(set(top) - {"rules"}):
        result.untranslatable.append(Untranslatable(line(str(key)), str(key), _top_reason(key)))
    rules = top.get("rules") or []
    if not isinstance(rules, list):
        result.untranslatable.append(Untranslatable(line("rules"), "rules", "must be a list"))
        rules = []
    seen: set[str] = set()
    for index, raw in enumerate(rules):
        _convert_rule(index, raw, lister=lister, line=line, result=result, seen=seen)
    result.untranslatable.sort(key=lambda item: item.line if item.line is not None else 0)
    return result


def _top_reason(key: object) -> str:
    if key == "externalRules":
        return "external metrics (external.metrics.k8s.io) are not served by this adapter; use KEDA"
    if key == "resourceRules":
        return "resource metrics (metrics.k8s.io: cpu, memory) are not served; keep metrics-server"
    return "unknown key in a prometheus-adapter config"


class _Skip(Exception):
    def __init__(self, reason: str, sub: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.sub = sub


@dataclass(frozen=True, slots=True)
class _Parsed:
    template: str
    names: list[str]
    naming: Callable[[str], str | None]
    labels: tuple[str, str]


def _convert_rule(
    index: int,
    raw: object,
    *,
    lister: SeriesLister | None,
    line: _Lines,
    result: Conversion,
    seen: set[str],
) -> None:
    where = f"rules[{index}]"

    def skip(reason: str, path: str = where) -> None:
        result.untranslatable.append(Untranslatable(line(path), path, reason))

    try:
        parsed = _parse(raw, lister, result, lambda note: skip(note, f"{where}.resources"))
    except _Skip as e:
        skip(e.reason, f"{where}.{e.sub}" if e.sub else where)
        return
    for series in parsed.names:
        metric = parsed.naming(series)
        if metric is None:
            continue
        if metric in seen:
            skip(f"metric {metric!r} (series {series}) is already defined by an earlier rule")
            continue
        seen.add(metric)
        block: dict[str, Any] = {"query": parsed.template.replace("<<series>>", series)}
        if parsed.labels != result.labels:  # not the file's pair: the metric's own
            block["namespaceLabel"], block["podLabel"] = parsed.labels
        result.metrics.append(
            {
                "name": metric,
                "source": "prometheus",
                "resources": ["pods", "deployments.apps", "statefulsets.apps"],
                "prometheus": block,
            }
        )


def _parse(
    raw: object,
    lister: SeriesLister | None,
    result: Conversion,
    note: Callable[[str], None],
) -> _Parsed:
    """One rule's query template, series names and naming; _Skip says why not."""
    if not isinstance(raw, dict):
        raise _Skip("a rule must be a mapping")
    unknown = sorted(set(map(str, raw)) - _RULE_KEYS)
    if unknown:
        raise _Skip(f"unknown key(s) {', '.join(unknown)}: the rule's meaning is unclear")
    labels, extra = _resource_labels(raw.get("resources"))
    if labels is None:
        raise _Skip(extra[0], "resources")
    query = raw.get("metricsQuery")
    if not isinstance(query, str) or not query.strip():
        raise _Skip("no metricsQuery")
    template = _template(query)
    names = _series_names(raw.get("seriesQuery"), lister)
    try:
        names = _filtered(names, raw.get("seriesFilters") or [])
        naming = _naming(raw.get("name") or {})
    except (ValueError, TypeError, re.error) as e:
        raise _Skip(str(e)) from e
    if result.labels is None:
        result.labels = labels  # the first rule's pair is the file's
    for item in extra:
        note(item)
    return _Parsed(template, names, naming, labels)


def _resource_labels(raw: object) -> tuple[tuple[str, str] | None, list[str]]:
    """(namespace label, pod label), and notes on resources that are not converted."""
    if not isinstance(raw, dict):
        return None, ["no resources: the rule names no pod label"]
    notes: list[str] = []
    namespace = pod = None
    for label, target in (raw.get("overrides") or {}).items():
        resource = target.get("resource", "") if isinstance(target, dict) else ""
        group = target.get("group", "") if isinstance(target, dict) else ""
        if not group and resource in _NAMESPACE:
            namespace = str(label)
        elif not group and resource in _POD:
            pod = str(label)
        else:
            notes.append(
                f"resource {resource!r}{f' (group {group})' if group else ''} via label "
                f"{label!r} is not served: only pods and the workloads made of them"
            )
    template = raw.get("template")
    if isinstance(template, str) and (namespace is None or pod is None):
        if _PLACEHOLDER.sub(
            lambda m: "" if m.group(1) in {".Resource", ".Group"} else "?", template
        ).count("?"):
            return None, [f"resources.template {template!r}: only <<.Resource>> and <<.Group>>"]
        namespace = namespace or _expand_resource(template, "namespace")
        pod = pod or _expand_resource(template, "pod")
    if pod is None:
        return None, ["no label maps to pods: the adapter serves pod metrics (and their workloads)"]
    if namespace is None:
        return None, ["no label maps to namespaces: pods are namespaced"]
    notes.append(
        "namespaces/<metric> is not converted: add 'namespaces' to resources with "
        "aggregate: sum to serve a namespace total over its pods"
    )
    return (namespace, pod), notes


def _expand_resource(template: str, resource: str) -> str:
    return _PLACEHOLDER.sub(lambda m: resource if m.group(1) == ".Resource" else "", template)


def _template(query: str) -> str:
    """The metricsQuery in our placeholders (``<<series>>`` for the name); _Skip if not."""
    found = {m.group(1) for m in _PLACEHOLDER.finditer(query)}
    unsupported = sorted(found - {".Series", *_OURS})
    if unsupported:
        raise _Skip(
            f"template construct(s) {', '.join(f'<<{u}>>' for u in unsupported)} not supported "
            "(only <<.Series>>, <<.LabelMatchers>>, <<.GroupBy>>)",
            "metricsQuery",
        )
    for needed in (".LabelMatchers", ".GroupBy"):
        if needed not in found:
            raise _Skip(
                f"metricsQuery without <<{needed}>> cannot be answered per pod", "metricsQuery"
            )

    def ours(match: re.Match[str]) -> str:
        return "<<series>>" if match.group(1) == ".Series" else _OURS[match.group(1)]

    return _PLACEHOLDER.sub(ours, query).strip()


def _series_names(raw: object, lister: SeriesLister | None) -> list[str]:
    if not isinstance(raw, str) or not raw.strip():
        raise _Skip("no seriesQuery")
    literal = _LITERAL_NAME.match(raw)
    if literal:
        return [literal.group(1)]
    named = _NAME_EQ.search(raw)
    if named and not _NAME_OTHER.search(raw):
        return [named.group(2)]
    if lister is None:
        raise _Skip(
            f"metric names come from series discovery ({raw.strip()}): "
            "run convert-rules with --prometheus-url to list them once",
            "seriesQuery",
        )
    return sorted(set(lister(raw)))


def _filtered(names: list[str], filters: object) -> list[str]:
    if not isinstance(filters, list):
        raise TypeError("seriesFilters must be a list")
    kept = names
    for item in filters:
        if not isinstance(item, dict) or set(item) - {"is", "isNot"} or len(item) != 1:
            raise ValueError(f"seriesFilters entry {item!r}: one of is or isNot")
        ((kind, pattern),) = item.items()
        compiled = re.compile(str(pattern))
        kept = [n for n in kept if bool(compiled.search(n)) == (kind == "is")]
    return kept


def _naming(raw: object) -> Callable[[str], str | None]:
    """prometheus-adapter's naming: the series must match ``matches``; ``as`` expands it.

    Default ``matches`` is ``.*``; default ``as`` is ``$1`` with one capture group,
    else ``$0``. Go's ``$name``/``${name}`` become Python groups.
    """
    if not isinstance(raw, dict) or set(raw) - {"matches", "as"}:
        raise ValueError("name must be a mapping of matches and as")
    matches = re.compile(str(raw.get("matches") or ".*"))
    as_ = str(raw.get("as") or ("$1" if matches.groups == 1 else "$0"))
    python = _GO_GROUP.sub(lambda m: f"\\g<{m.group(1) or m.group(2)}>", as_)

    def name(series: str) -> str | None:
        found = matches.search(series)
        return None if found is None else found.expand(python)

    return name
