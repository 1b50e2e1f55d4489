"""Rules: how each catalogue metric becomes one PromQL query, validated at load.

The rules file has one top-level ``prometheus:`` block naming the labels that
carry the pod's namespace and name (defaults shown)::

    prometheus:
      namespaceLabel: namespace
      podLabel: pod

and, per metric, a ``prometheus:`` block in exactly one of three forms:

**histogram** (a classic Prometheus histogram; the value is a quantile)::

    prometheus:
      histogram: inference_duration_seconds   # base name, without _bucket
      quantile: 0.95                          # optional, default 0.95, 0..1
      window: 2m                              # optional, default 2m: rate() range
      selector: 'model_name="llama"'         # optional, see "Selectors" below

  One query per refresh, ``sum by (namespace, pod, le) (rate(<histogram>_bucket{...}[2m]))``;
  per-pod and fleet quantiles are computed here from those bucket rates with
  Prometheus' own algorithm (``histogram.py``). ``windowSeconds`` = the window.
  Use ``aggregate: histogram`` (the default rules do) for true fleet quantiles.

**gauge** (a value per pod; several series of one pod are combined with the
metric's aggregate: sum, avg for mean, or max)::

    prometheus:
      gauge: inference_queue_depth
      selector: "queue!=batch"                # optional

  The value's timestamp is its sample's own scrape time (``timestamp()``).

**families** (the built-in metrics' default: real servers' own series, see ``families.py``)::

    prometheus:
      families: [vllm, tgi]                   # optional: which, in which order (default: all)
      window: 2m                              # latency only: the rate() range
      quantile: 0.95                          # latency only
      selector: 'model_name="meta-llama/Llama-3.1-8B-Instruct"'

  One query per family per refresh; per pod the first family with data wins.
  Only the built-in metric names that have families (``families.FAMILIES``)
  may use this form.

**query** (a PromQL template for the user's own metrics)::

    prometheus:
      query: sum by (<<groupBy>>) (rate(http_requests_total{<<matchers>>}[<<window>>]))
      window: 2m                              # required when <<window>> is used

  ``<<matchers>>`` (required) expands inside the braces the template writes to
  ``namespace!="",pod!=""`` plus any metricLabelSelector matchers; ``<<groupBy>>``
  (required) to ``namespace, pod``; ``<<window>>`` to the window. The result
  must be one series per pod; ``windowSeconds`` = the window, if set.

**Selectors** on series are PromQL matchers, ``name="v"``, ``!=``, ``=~``, ``!~``,
comma-separated, optionally in braces; values are PromQL string literals (any
characters, escaped as in PromQL), read and re-escaped here, regexes checked.
A selector without any quote is read as a Kubernetes label selector
(``model=llama,tier!=batch``), as before.

**Label names per metric.** Every form also takes ``namespaceLabel`` and
``podLabel``: the labels carrying the pod in this metric's series, overriding
the file's block (and a family's own, e.g. dcgm-exporter's ``exported_pod``),
key by key, checked exactly like the file's (Prometheus label names, not
reserved, namespace and pod different)::

    prometheus:
      gauge: DCGM_FI_DEV_GPU_UTIL
      namespaceLabel: exported_namespace
      podLabel: exported_pod

Validation reports every problem at once as ``RuleError.problems``, pairs of a
key path (``prometheus.window``) and a message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from adapter.core.catalogue import Aggregation, MetricSpec
from adapter.core.durations import parse_duration
from adapter.core.model import NODES, MetricName
from adapter.core.selectors import SelectorError, parse_selector
from adapter.sources.prometheus import families, promql
from adapter.sources.prometheus.families import Family
from adapter.sources.prometheus.promql import LabelMatcher, PromQLError

__all__ = [
    "LATENCY_P95_OPTIONS",
    "QUEUE_DEPTH_OPTIONS",
    "FamilyRule",
    "GaugeRule",
    "HistogramRule",
    "PromLabels",
    "PrometheusRule",
    "RuleError",
    "TemplateRule",
    "parse_prometheus_block",
    "parse_rule",
]

SOURCE_NAME: Final = "prometheus"

# The built-in rules' options (the catalogue registers them with these blocks).
LATENCY_P95_OPTIONS: Final[Mapping[str, Any]] = {
    "histogram": "inference_duration_seconds",
    "quantile": 0.95,
    "window": "2m",
}
QUEUE_DEPTH_OPTIONS: Final[Mapping[str, Any]] = {"gauge": "inference_queue_depth"}

DEFAULT_QUANTILE: Final = 0.95
DEFAULT_WINDOW: Final = "2m"


class RuleError(ValueError):
    """A rules block is invalid. ``problems`` are (key path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class PromLabels:
    """The series labels that carry a pod's namespace and name."""

    namespace: str = "namespace"
    pod: str = "pod"


@dataclass(frozen=True, slots=True)
class HistogramRule:
    metric: MetricName
    series: str
    quantile: float
    window_seconds: int
    aggregate: Aggregation
    labels: PromLabels = PromLabels()
    selector: tuple[LabelMatcher, ...] = ()

    def query(self, extra: Sequence[LabelMatcher] = ()) -> str:
        return promql.render_histogram_query(
            self.series,
            self.labels.namespace,
            self.labels.pod,
            (*self.selector, *extra),
            self.window_seconds,
        )


_COMBINE: Final[Mapping[Aggregation, str]] = {
    Aggregation.SUM: "sum",
    Aggregation.MEAN: "avg",
    Aggregation.MAX: "max",
}


@dataclass(frozen=True, slots=True)
class GaugeRule:
    metric: MetricName
    series: str
    aggregate: Aggregation
    labels: PromLabels = PromLabels()
    selector: tuple[LabelMatcher, ...] = ()
    window_seconds: None = None

    def query(self, extra: Sequence[LabelMatcher] = ()) -> str:
        return promql.render_gauge_query(
            self.series,
            self.labels.namespace,
            self.labels.pod,
            (*self.selector, *extra),
            _COMBINE[self.aggregate],
        )


@dataclass(frozen=True, slots=True)
class TemplateRule:
    metric: MetricName
    template: str
    window_seconds: int | None
    aggregate: Aggregation
    labels: PromLabels = PromLabels()

    def query(self, extra: Sequence[LabelMatcher] = ()) -> str:
        return promql.render_template(
            self.template, self.labels.namespace, self.labels.pod, extra, self.window_seconds
        )


@dataclass(frozen=True, slots=True)
class FamilyRule:
    """A built-in metric read from several server families, one query each.

    ``window_seconds`` is the histogram families' rate window (None for gauge
    metrics); ``quantile`` the latency quantile. ``family_labels`` holds, per
    family in order, the labels its series carry the pod in (the metric's own,
    else the family's, else the file's); empty means ``labels`` for every family.
    """

    metric: MetricName
    families: tuple[Family, ...]
    quantile: float
    window_seconds: int | None
    aggregate: Aggregation
    labels: PromLabels = PromLabels()
    selector: tuple[LabelMatcher, ...] = ()
    family_labels: tuple[PromLabels, ...] = ()

    def labels_for(self, index: int) -> PromLabels:
        """The pod labels of the ``index``-th family's series."""
        return self.family_labels[index] if self.family_labels else self.labels

    def queries(self, extra: Sequence[LabelMatcher] = ()) -> tuple[tuple[str, str], ...]:
        """``(family name, PromQL)`` per family, in the rule's order: exactly what is sent."""
        return tuple(
            (family.name, self.family_query(index, extra))
            for index, family in enumerate(self.families)
        )

    def family_query(self, index: int, extra: Sequence[LabelMatcher] = ()) -> str:
        """The ``index``-th family's query (``extra`` matchers added to its series)."""
        labels = self.labels_for(index)
        return families.render_family_query(
            self.families[index],
            labels.namespace,
            labels.pod,
            (*self.selector, *extra),
            window_seconds=self.window_seconds,
            quantile=self.quantile,
            combine=_COMBINE.get(self.aggregate, "avg"),
        )


PrometheusRule = HistogramRule | GaugeRule | TemplateRule | FamilyRule

_RESERVED_LABELS: Final = frozenset({"le", promql.PART_LABEL, families.SERIES_LABEL})


def parse_prometheus_block(raw: Mapping[str, Any] | None) -> PromLabels:
    """The file's top-level ``prometheus:`` block (``namespaceLabel``, ``podLabel``)."""
    if raw is None:
        return PromLabels()
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, Mapping):
        raise RuleError([("prometheus", "must be a mapping")])
    for key in sorted(set(raw) - {"namespaceLabel", "podLabel"}):
        problems.append((f"prometheus.{key}", "unknown key (known: namespaceLabel, podLabel)"))
    names: dict[str, str] = {}
    for key, default in (("namespaceLabel", "namespace"), ("podLabel", "pod")):
        value = _label_name(raw.get(key, default), f"prometheus.{key}", problems)
        if value is not None:
            names[key] = value
    if len(names) == 2 and names["namespaceLabel"] == names["podLabel"]:
        problems.append(("prometheus.podLabel", "must differ from namespaceLabel"))
    if problems:
        raise RuleError(problems)
    return PromLabels(namespace=names["namespaceLabel"], pod=names["podLabel"])


LABEL_KEYS: Final = ("namespaceLabel", "podLabel")
"""A metric's own pod label names, allowed in every form."""


def _label_name(value: object, path: str, problems: list[tuple[str, str]]) -> str | None:
    """``value`` if it can name the pod's namespace or pod label, else None and a problem.

    The one check for the file's block and every metric's own keys.
    """
    if not isinstance(value, str):
        problems.append((path, "must be a string"))
        return None
    try:
        promql.check_label_name(value)
    except PromQLError as e:
        problems.append((path, str(e)))
        return None
    if value in _RESERVED_LABELS:
        problems.append((path, f"{value!r} is reserved for the adapter's own queries"))
    return value


def _own_labels(raw: Mapping[str, Any], problems: list[tuple[str, str]]) -> dict[str, str]:
    """The metric's own ``namespaceLabel``/``podLabel`` that are valid label names."""
    own: dict[str, str] = {}
    for key in LABEL_KEYS:
        if key in raw:
            value = _label_name(raw[key], f"prometheus.{key}", problems)
            if value is not None:
                own[key] = value
    return own


def _resolved(
    own: Mapping[str, str],
    fallback: PromLabels,
    problems: list[tuple[str, str]],
    whose: str = "",
) -> PromLabels:
    """The metric's own label names over ``fallback``; both must differ.

    A clash is reported at the key the metric set (``whose`` names the fallback
    in the message, e.g. a family's defaults).
    """
    labels = PromLabels(
        namespace=own.get("namespaceLabel", fallback.namespace),
        pod=own.get("podLabel", fallback.pod),
    )
    if own and labels.namespace == labels.pod:
        key, other = (
            ("podLabel", "namespaceLabel") if "podLabel" in own else ("namespaceLabel", "podLabel")
        )
        problems.append(
            (f"prometheus.{key}", f"must differ from {other} ({labels.namespace!r}{whose})")
        )
    return labels


_FORMS: Final[Mapping[str, frozenset[str]]] = {
    "histogram": frozenset({"histogram", "quantile", "window", "selector", *LABEL_KEYS}),
    "gauge": frozenset({"gauge", "selector", *LABEL_KEYS}),
    "query": frozenset({"query", "window", *LABEL_KEYS}),
    "families": frozenset({"families", "quantile", "window", "selector", *LABEL_KEYS}),
}


def parse_rule(spec: MetricSpec, labels: PromLabels) -> PrometheusRule:
    """Validate ``spec.options`` (the metric's ``prometheus:`` block) into a rule.

    ``labels`` are the file's; the block's own ``namespaceLabel``/``podLabel``
    override them for this metric only.
    """
    if spec.source != SOURCE_NAME:
        raise RuleError([("source", f"expected {SOURCE_NAME!r}, got {spec.source!r}")])
    raw = spec.options
    if not isinstance(raw, Mapping):
        raise RuleError([("prometheus", "must be a mapping")])
    forms = [form for form in _FORMS if form in raw]
    if len(forms) != 1:
        found = ", ".join(forms) or "none"
        raise RuleError(
            [
                (
                    "prometheus",
                    f"needs exactly one of histogram, gauge, query or families (found: {found})",
                )
            ]
        )
    form = forms[0]
    problems = [
        (
            f"prometheus.{key}",
            f"unknown key for a {form} rule (known: {', '.join(sorted(_FORMS[form]))})",
        )
        for key in sorted(set(map(str, raw)) - _FORMS[form])
    ]
    own = _own_labels(raw, problems)
    if form == "families":
        rule = _parse_families(spec, raw, labels, problems, own)
    else:
        rule = _PARSERS[form](spec, raw, _resolved(own, labels, problems), problems)
    if problems or rule is None:
        raise RuleError(problems)
    return rule


def _parse_histogram(
    spec: MetricSpec, raw: Mapping[str, Any], labels: PromLabels, problems: list[tuple[str, str]]
) -> PrometheusRule | None:
    series = _series(raw, "histogram", problems)
    if series is not None and series.endswith("_bucket"):
        problems.append(
            ("prometheus.histogram", f"name the histogram without '_bucket' ({series[:-7]!r})")
        )
    quantile = _quantile(raw, problems)
    window = _window(raw.get("window", DEFAULT_WINDOW), problems)
    selector = _selector(raw, problems)
    if spec.aggregate is Aggregation.SUM:
        problems.append(("aggregate", "a sum of quantiles means nothing; use histogram"))
    if series is None or quantile is None or window is None or selector is None or problems:
        return None
    return HistogramRule(spec.name, series, quantile, window, spec.aggregate, labels, selector)


def _parse_gauge(
    spec: MetricSpec, raw: Mapping[str, Any], labels: PromLabels, problems: list[tuple[str, str]]
) -> PrometheusRule | None:
    series = _series(raw, "gauge", problems)
    selector = _selector(raw, problems)
    _not_histogram(spec, "gauge", problems)
    if series is None or selector is None or problems:
        return None
    return GaugeRule(spec.name, series, spec.aggregate, labels, selector)


def _parse_query(
    spec: MetricSpec, raw: Mapping[str, Any], labels: PromLabels, problems: list[tuple[str, str]]
) -> PrometheusRule | None:
    template = raw["query"]
    window = _window(raw["window"], problems) if "window" in raw else None
    _not_histogram(spec, "query", problems)
    if not isinstance(template, str) or not template.strip():
        problems.append(("prometheus.query", "must be a non-empty PromQL template"))
        return None
    for placeholder in ("<<matchers>>", "<<groupBy>>"):
        if placeholder not in template:
            problems.append(("prometheus.query", f"must use {placeholder}"))
    if "<<window>>" in template and "window" not in raw:
        problems.append(("prometheus.window", "required: the query uses <<window>>"))
    if problems:
        return None
    rule = TemplateRule(spec.name, template, window, spec.aggregate, labels)
    try:
        promql.check_syntax(rule.query())
    except PromQLError as e:
        problems.append(("prometheus.query", str(e)))
        return None
    return rule


def _parse_families(
    spec: MetricSpec,
    raw: Mapping[str, Any],
    labels: PromLabels,
    problems: list[tuple[str, str]],
    own: Mapping[str, str] | None = None,
) -> PrometheusRule | None:
    known = families.families_for(spec.name)
    if not known:
        problems.append(
            (
                "prometheus.families",
                f"{spec.name!r} has no built-in families (they exist for "
                f"{', '.join(sorted(families.FAMILIES))}); use histogram, gauge or query",
            )
        )
        return None
    chosen = _chosen_families(spec.name, raw["families"], known, problems)
    latency = any(f.kind is not families.Kind.GAUGE for f in known)
    quantile: float | None = DEFAULT_QUANTILE
    window: int | None = None
    if latency:
        quantile = _quantile(raw, problems)
        window = _window(raw.get("window", DEFAULT_WINDOW), problems)
    else:
        for key in ("quantile", "window"):
            if key in raw:
                problems.append((f"prometheus.{key}", f"{spec.name} is a gauge: no {key}"))
    selector = _selector(raw, problems)
    if latency and spec.aggregate is not Aggregation.HISTOGRAM:
        problems.append(("aggregate", "latency families merge histograms: use histogram"))
    if not latency:
        _not_histogram(spec, "gauge family", problems)
    per_gpu = [f.name for f in chosen if f.per_gpu]
    if per_gpu and NODES in spec.resources:
        problems.append(
            (
                "resources",
                f"nodes: {', '.join(per_gpu)} has one series per GPU, attributed to pods; a "
                "node's value would be the mean over its pods, not over its GPUs: list pods "
                "and workloads only",
            )
        )
    own = own or {}
    clashes: list[tuple[str, str]] = []
    family_labels = _family_labels(chosen, own, labels, clashes)
    # With per-family labels, the rule's own pair only names the families without defaults.
    metric_labels = _resolved(own, labels, [] if family_labels else clashes)
    problems.extend(dict.fromkeys(clashes))  # one family's clash is every family's
    if problems or selector is None or quantile is None or (latency and window is None):
        return None
    return FamilyRule(
        spec.name,
        chosen,
        quantile,
        window,
        spec.aggregate,
        metric_labels,
        selector,
        family_labels,
    )


def _family_labels(
    chosen: Sequence[Family],
    own: Mapping[str, str],
    labels: PromLabels,
    problems: list[tuple[str, str]],
) -> tuple[PromLabels, ...]:
    """Per family: the metric's own label names, else the family's, else the file's.

    Empty (every family uses the rule's ``labels``) when no family has its own,
    so rules without such families are unchanged.
    """
    if not any(f.namespace_label or f.pod_label for f in chosen):
        return ()
    result: list[PromLabels] = []
    for family in chosen:
        fallback = PromLabels(
            namespace=family.namespace_label or labels.namespace,
            pod=family.pod_label or labels.pod,
        )
        whose = f", {family.name}'s default" if family.namespace_label or family.pod_label else ""
        result.append(_resolved(own, fallback, problems, whose))
    return tuple(result)


def _chosen_families(
    metric: str, names: object, known: tuple[Family, ...], problems: list[tuple[str, str]]
) -> tuple[Family, ...]:
    if names == "all":
        return known
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
        problems.append(("prometheus.families", "must be a list of family names or 'all'"))
        return ()
    try:
        chosen = families.families_for(metric, names)
    except ValueError as e:
        problems.append(("prometheus.families", str(e)))
        return ()
    absent = [n for n in names if n not in {f.name for f in chosen}]
    if absent:
        problems.append(
            (
                "prometheus.families",
                f"no series for {metric} in {', '.join(map(repr, absent))} "
                f"(families with one: {', '.join(f.name for f in known)})",
            )
        )
    return chosen


def _quantile(raw: Mapping[str, Any], problems: list[tuple[str, str]]) -> float | None:
    quantile = raw.get("quantile", DEFAULT_QUANTILE)
    if isinstance(quantile, bool) or not isinstance(quantile, int | float):
        problems.append(("prometheus.quantile", "must be a number between 0 and 1"))
        return None
    if not (math.isfinite(quantile) and 0 <= quantile <= 1):
        problems.append(("prometheus.quantile", f"must be between 0 and 1, got {quantile}"))
        return None
    return float(quantile)


_PARSERS: Final = {
    "histogram": _parse_histogram,
    "gauge": _parse_gauge,
    "query": _parse_query,
    "families": _parse_families,
}


def _not_histogram(spec: MetricSpec, form: str, problems: list[tuple[str, str]]) -> None:
    if spec.aggregate is Aggregation.HISTOGRAM:
        problems.append(("aggregate", f"histogram needs a histogram rule, not a {form}"))


def _series(raw: Mapping[str, Any], key: str, problems: list[tuple[str, str]]) -> str | None:
    value = raw[key]
    if not isinstance(value, str):
        problems.append((f"prometheus.{key}", "must be a metric name"))
        return None
    try:
        return promql.check_metric_name(value)
    except PromQLError as e:
        problems.append((f"prometheus.{key}", str(e)))
        return None


def _window(value: object, problems: list[tuple[str, str]]) -> int | None:
    if not isinstance(value, str):
        problems.append(("prometheus.window", "must be a duration with a unit, e.g. 2m"))
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        problems.append(("prometheus.window", str(e)))
        return None
    if seconds < 1 or seconds != int(seconds):
        problems.append(("prometheus.window", "must be a whole number of seconds, at least 1s"))
        return None
    return int(seconds)


def _selector(
    raw: Mapping[str, Any], problems: list[tuple[str, str]]
) -> tuple[LabelMatcher, ...] | None:
    value = raw.get("selector", "")
    if not isinstance(value, str):
        problems.append(("prometheus.selector", "must be a label selector string"))
        return None
    try:
        if not value.strip():
            return ()
        if any(q in value for q in "\"'`"):
            return promql.parse_matchers(value)
        return promql.matchers_from_selector(parse_selector(value))
    except (SelectorError, PromQLError) as e:
        problems.append(("prometheus.selector", str(e)))
        return None
