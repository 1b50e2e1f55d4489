"""The rules file: strict YAML -> Catalogue, every problem reported at once.

Shape (all keys optional; unknown keys are errors)::

    serving:
      omitUnready: true        # leave out pods that are not Ready ...
      warmup: 30s              # ... or Ready for less than this
    includeDefaults: true      # keep the built-in mission metrics
    presets: [vllm, tgi]       # restrict/order the server families of the built-ins
    prometheus:                # source-wide settings, validated by the Prometheus source
      namespaceLabel: namespace
      podLabel: pod
    metrics:
      - name: inference_latency_p95          # a built-in name: fields given here override it
        prometheus: {histogram: my_duration_seconds}
      - name: tokens_per_second
        source: prometheus
        resources: [pods, deployments.apps]
        unit: tokens/s
        aggregate: sum
        prometheus:
          query: sum by (<<groupBy>>) (rate(tokens_total{<<matchers>>}[<<window>>]))
          window: 1m

A metric entry whose name is a built-in inherits every field it does not set
(the ``prometheus``/``gpu`` block is merged key by key), so users change a series
name or a quantile without restating the rule.

The Prometheus built-ins read real servers' own series, one query per server
family (``adapter.sources.prometheus.families``), first family with data per pod
wins. ``presets`` (or ``--preset``, repeatable, which replaces the file's list)
keeps only the named families, in the given order, for every built-in that has
not been given an explicit ``prometheus:`` form (``histogram``, ``gauge``,
``query`` or ``families``): an explicit block always wins. A built-in none of
whose families is in the presets is not served.

``gpu_utilization`` comes from our collector (``source: gpu``) unless the
presets name ``dcgm-exporter``: then the built-in reads dcgm-exporter's
``DCGM_FI_DEV_GPU_UTIL`` in Prometheus instead (``families: [dcgm-exporter]``,
pods and workloads). Presets without ``dcgm-exporter`` leave it on the
collector. A file that says ``source: gpu`` for it explicitly while the presets
name ``dcgm-exporter`` is refused: one metric, one source.

Errors carry the file and line of the offending node: ``rules.yaml:12: metrics[1].aggregate:
must be one of mean, sum, max, histogram``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapter.core.catalogue import Aggregation, Catalogue, MetricSpec, ServingPolicy, resource_kind
from adapter.core.durations import parse_duration
from adapter.core.errors import StartupError
from adapter.core.model import MetricName, ResourceKind
from adapter.core.names import is_metric_name
from adapter.sources.gpu import catalogue as gpu_catalogue
from adapter.sources.prometheus import catalogue as prometheus_catalogue
from adapter.sources.prometheus.families import DCGM_EXPORTER, PRESETS, families_for

log = logging.getLogger(__name__)

Problems = list[tuple[str, str]]
# A source's reading of its top-level block (e.g. ``prometheus:``): the parsed block handed
# to its MetricReader, and (key path, message) problems, empty when valid.
BlockReader = Callable[[Mapping[str, Any]], tuple[Any, Problems]]
# A source's reading of one metric's block under the parsed top-level block: the rule kept
# on the MetricSpec (None when invalid, or for a source that keeps none), and problems.
MetricReader = Callable[[MetricSpec, Any], tuple[object | None, Problems]]

# Each source's readers: every block is read once per load, by the source that owns it.
READERS: Mapping[str, tuple[BlockReader, MetricReader]] = {
    "prometheus": (prometheus_catalogue.read_block, prometheus_catalogue.read_metric),
    "gpu": (gpu_catalogue.read_block, gpu_catalogue.read_metric),
}
SOURCES = tuple(READERS)
_TOP_KEYS = frozenset({"serving", "includeDefaults", "presets", "metrics", *SOURCES})
# The keys that choose a rule's form: a user block naming one replaces a built-in's block.
_FORM_KEYS = frozenset({"histogram", "gauge", "query", "families"})
_SERVING_KEYS = frozenset({"omitUnready", "warmup"})
_METRIC_KEYS = frozenset(
    {"name", "source", "resources", "unit", "description", "aggregate", *SOURCES}
)
_WORKLOADS = ("pods", "deployments.apps", "statefulsets.apps")

BUILTIN_METRICS: tuple[dict[str, Any], ...] = (
    {
        "name": "inference_latency_p95",
        "source": "prometheus",
        "resources": list(_WORKLOADS),
        "unit": "seconds",
        "description": "p95 of inference request latency; "
        "for workloads, the quantile of their pods' merged histograms",
        "aggregate": "histogram",
        "prometheus": {"families": "all", "quantile": 0.95, "window": "2m"},
    },
    {
        "name": "inference_queue_depth",
        "source": "prometheus",
        "resources": list(_WORKLOADS),
        "unit": "requests waiting",
        "description": "requests waiting in the server's queue; for workloads, the sum over pods",
        "aggregate": "sum",
        "prometheus": {"families": "all"},
    },
    {
        "name": "inference_kv_cache_utilization",
        "source": "prometheus",
        "resources": list(_WORKLOADS),
        "unit": "percent",
        "description": "KV-cache blocks in use, 0-100; for workloads, the mean over pods",
        "aggregate": "mean",
        "prometheus": {"families": "all"},
    },
    {
        "name": "inference_requests_running",
        "source": "prometheus",
        "resources": list(_WORKLOADS),
        "unit": "requests",
        "description": "requests in the running batch; for workloads, the sum over pods",
        "aggregate": "sum",
        "prometheus": {"families": "all"},
    },
    {
        "name": "gpu_utilization",
        "source": "gpu",
        "resources": [*_WORKLOADS, "nodes"],
        "unit": "percent",
        "description": "GPU busy time over the collector's window, measured through NVML; "
        "for workloads the mean over their pods, for nodes over their GPUs",
        "aggregate": "mean",
        "gpu": {},
    },
)

_GPU_UTILIZATION = "gpu_utilization"
# The built-in gpu_utilization when the presets name dcgm-exporter (fields the user
# did not set change to these).
_DCGM_GPU_UTILIZATION: dict[str, Any] = {
    "resources": list(_WORKLOADS),
    "description": "GPU utilization from dcgm-exporter (DCGM_FI_DEV_GPU_UTIL) in Prometheus; "
    "per pod the mean over its GPUs, for workloads the mean over their pods",
}


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(StartupError):
    """The rules file is invalid. ``issues`` holds every problem found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        super().__init__("\n".join(str(issue) for issue in issues))
        self.issues = issues


@dataclass
class _Located:
    """A plain value tree plus the line of every path in it."""

    value: Any
    lines: dict[str, int] = field(default_factory=dict)


def _to_python(node: yaml.Node, path: str, lines: dict[str, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _to_python(key_node, f"{path}.<key>", lines)
            child = f"{path}.{key}" if path else str(key)
            if key in result:
                lines[child] = key_node.start_mark.line + 1
                raise _DuplicateKey(child, key_node.start_mark.line + 1)
            result[key] = _to_python(value_node, child, lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, f"{path}[{i}]", lines) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


class _DuplicateKey(Exception):
    def __init__(self, path: str, line: int) -> None:
        super().__init__(path)
        self.path = path
        self.line = line


def _parse_yaml(text: str, file: str) -> _Located:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise ConfigError([ConfigIssue(file, line, "", f"invalid YAML: {e.problem}")]) from e
    except yaml.YAMLError as e:
        raise ConfigError([ConfigIssue(file, None, "", f"invalid YAML: {e}")]) from e
    lines: dict[str, int] = {}
    if node is None:
        return _Located({}, lines)
    try:
        value = _to_python(node, "", lines)
    except _DuplicateKey as e:
        raise ConfigError([ConfigIssue(file, e.line, e.path, "duplicate key")]) from e
    return _Located(value, lines)


def parse_yaml_with_lines(text: str, file: str) -> _Located:
    """Strict YAML (duplicate keys are errors) plus the line of every key path.

    Paths look like ``rules[2].metricsQuery``. Raises ConfigError.
    """
    return _parse_yaml(text, file)


class _Collector:
    def __init__(self, file: str, lines: Mapping[str, int]) -> None:
        self.file = file
        self.lines = lines
        self.issues: list[ConfigIssue] = []

    def add(self, path: str, message: str) -> None:
        line = None
        probe = path
        while probe:
            if probe in self.lines:
                line = self.lines[probe]
                break
            probe = probe.rpartition(".")[0] if "." in probe else probe.rpartition("[")[0]
        self.issues.append(ConfigIssue(self.file, line, path, message))

    def mapping(self, value: Any, path: str, allowed: frozenset[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                self.add(
                    f"{path}.{key}" if path else str(key),
                    f"unknown key (allowed: {', '.join(sorted(allowed))})",
                )
        return value


def load_catalogue(path: Path | None, *, presets: tuple[str, ...] | None = None) -> Catalogue:
    """Read and validate a rules file (None: the built-in defaults only).

    Raises ConfigError listing every problem with file and line. Source blocks
    are read by their source's ``READERS``, once: each metric keeps its parsed
    rule (``MetricSpec.rule``). ``presets`` (from ``--preset``) replaces the
    file's ``presets`` when given.
    """
    if path is None:
        return build_catalogue({}, "<built-in>", {}, presets=presets)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([ConfigIssue(str(path), None, "", f"cannot read: {e}")]) from e
    located = _parse_yaml(text, str(path))
    return build_catalogue(located.value, str(path), located.lines, presets=presets)


def build_catalogue(
    raw: Any,
    file: str,
    lines: Mapping[str, int],
    *,
    presets: tuple[str, ...] | None = None,
) -> Catalogue:
    issues = _Collector(file, lines)
    top = issues.mapping(raw if raw is not None else {}, "", _TOP_KEYS)
    policy = _serving(top.get("serving", {}), issues)
    include_defaults = top.get("includeDefaults", True)
    if not isinstance(include_defaults, bool):
        issues.add("includeDefaults", "must be true or false")
        include_defaults = True
    source_settings: dict[str, Any] = {}
    parsed_blocks: dict[str, Any] = {}
    for source, (read_block, _) in READERS.items():
        block = top.get(source, {})
        if not isinstance(block, dict):
            issues.add(source, "must be a mapping")
            block = {}
        else:
            source_settings[source] = block
        parsed_blocks[source], problems = read_block(block)
        for sub, message in problems:
            issues.add(f"{source}.{sub}" if sub else source, message)
    entries = top.get("metrics", [])
    if not isinstance(entries, list):
        issues.add("metrics", "must be a list of metric rules")
        entries = []
    chosen = _presets(top.get("presets"), issues) if presets is None else presets
    if presets is not None:
        for name in presets:
            if name not in PRESETS:
                issues.add("", f"--preset {name!r}: unknown (known: {', '.join(PRESETS)})")
    metrics = _metrics(
        entries,
        bool(include_defaults),
        issues,
        parsed_blocks,
        presets=chosen,
    )
    if issues.issues:
        raise ConfigError(issues.issues)
    return Catalogue(
        metrics=metrics,
        policy=policy,
        source_settings=source_settings,
        presets=chosen or (),
    )


def _presets(raw: Any, issues: _Collector) -> tuple[str, ...] | None:
    """The file's ``presets``: a non-empty list of known family names, or None."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        issues.add("presets", f"must be a non-empty list of: {', '.join(PRESETS)}")
        return None
    for index, name in enumerate(raw):
        if name not in PRESETS:
            issues.add(
                f"presets[{index}]", f"unknown preset {name!r} (known: {', '.join(PRESETS)})"
            )
    return tuple(str(name) for name in raw)


def _serving(raw: Any, issues: _Collector) -> ServingPolicy:
    block = issues.mapping(raw, "serving", _SERVING_KEYS)
    omit = block.get("omitUnready", True)
    if not isinstance(omit, bool):
        issues.add("serving.omitUnready", "must be true or false")
        omit = True
    warmup = 30.0
    if "warmup" in block:
        try:
            warmup = parse_duration(str(block["warmup"]))
        except ValueError as e:
            issues.add("serving.warmup", str(e))
    return ServingPolicy(omit_unready=omit, warmup_seconds=warmup)


def _metrics(
    entries: list[Any],
    include_defaults: bool,
    issues: _Collector,
    parsed_blocks: Mapping[str, Any],
    *,
    presets: tuple[str, ...] | None = None,
) -> dict[MetricName, MetricSpec]:
    builtins = {str(entry["name"]): entry for entry in BUILTIN_METRICS}
    merged: dict[str, tuple[str, dict[str, Any]]] = {}
    if include_defaults:
        merged.update({name: ("", dict(entry)) for name, entry in builtins.items()})
    seen: set[str] = set()
    explicit_source: set[str] = set()
    for index, entry in enumerate(entries):
        path = f"metrics[{index}]"
        block = issues.mapping(entry, path, _METRIC_KEYS)
        name = block.get("name")
        if not isinstance(name, str) or not is_metric_name(name):
            issues.add(
                f"{path}.name", "required: a metric name (no '/', '%', '?'; not '.' or '..')"
            )
            continue
        if name in seen:
            issues.add(f"{path}.name", f"metric {name!r} is defined twice")
            continue
        seen.add(name)
        if "source" in block:
            explicit_source.add(name)
        base = builtins.get(name, {}) if include_defaults else {}
        merged[name] = (path, _merge(base, block))
    if presets is not None:
        _apply_presets(merged, presets)
        _gpu_from_dcgm(merged, presets, explicit_source, builtins, issues)
    result: dict[MetricName, MetricSpec] = {}
    for name, (path, entry) in merged.items():
        spec = _spec(name, entry, path, issues)
        if spec is None:
            continue
        _, read_metric = READERS[spec.source]
        rule, problems = read_metric(spec, parsed_blocks[spec.source])
        for sub, message in problems:
            where = f"{path or name}.{spec.source}"
            issues.add(f"{where}.{sub}" if sub else where, message)
        result[spec.name] = dataclasses.replace(spec, rule=rule)
    return result


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A built-in with a user's fields on top; source blocks merge key by key, except
    that a user block choosing a different form replaces the built-in's block."""
    merged = dict(base)
    for key, value in override.items():
        if key in SOURCES and isinstance(value, dict) and isinstance(base.get(key), dict):
            own_form = _FORM_KEYS & set(value)
            if own_form and own_form != _FORM_KEYS & set(base[key]):
                merged[key] = dict(value)
            else:
                merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


def _apply_presets(merged: dict[str, tuple[str, dict[str, Any]]], presets: tuple[str, ...]) -> None:
    """Restrict the built-ins still on their default families to ``presets``, in order.

    A metric that names its own form or families is left alone; one that no
    preset serves is removed (not served, not discovered).
    """
    known = [name for name in presets if name in PRESETS]
    for name, (path, entry) in list(merged.items()):
        block = entry.get("prometheus")
        if not isinstance(block, dict) or block.get("families") != "all":
            continue
        if not families_for(name):
            continue
        chosen = [family.name for family in families_for(name, known)]
        if not chosen:
            del merged[name]
            continue
        merged[name] = (path, {**entry, "prometheus": {**block, "families": chosen}})


def _gpu_from_dcgm(
    merged: dict[str, tuple[str, dict[str, Any]]],
    presets: tuple[str, ...],
    explicit_source: set[str],
    builtins: Mapping[str, Mapping[str, Any]],
    issues: _Collector,
) -> None:
    """With ``dcgm-exporter`` in the presets, gpu_utilization reads dcgm-exporter's series.

    Only a gpu_utilization still on the collector is switched; one the file
    gives ``source: gpu`` explicitly is a conflict (reported), one already on
    Prometheus is left as written. Fields still at the built-in's values get the
    dcgm-exporter ones (no nodes: its series are per GPU and pod).
    """
    found = merged.get(_GPU_UTILIZATION)
    if DCGM_EXPORTER not in presets or found is None:
        return
    path, entry = found
    if entry.get("source") != "gpu":
        return
    if _GPU_UTILIZATION in explicit_source:
        issues.add(
            f"{path}.source",
            "gpu_utilization is defined twice: source: gpu (our collector) here, and from "
            "dcgm-exporter in Prometheus by the dcgm-exporter preset; remove one of the two",
        )
        return
    builtin = builtins.get(_GPU_UTILIZATION, {})
    switched = {key: value for key, value in entry.items() if key != "gpu"}
    for key, value in _DCGM_GPU_UTILIZATION.items():
        if entry.get(key) == builtin.get(key):
            switched[key] = value
    own = entry.get("prometheus", {})
    switched["source"] = "prometheus"
    switched["prometheus"] = {"families": [DCGM_EXPORTER], **(own if isinstance(own, dict) else {})}
    merged[_GPU_UTILIZATION] = (path, switched)


def _spec(name: str, entry: Mapping[str, Any], path: str, issues: _Collector) -> MetricSpec | None:
    where = path or name
    source = entry.get("source")
    if source not in SOURCES:
        issues.add(f"{where}.source", f"required: one of {', '.join(SOURCES)}")
        return None
    resources = _resources(entry.get("resources", ["pods"]), f"{where}.resources", issues)
    options_raw = entry.get(source, {})
    # A histogram rule's natural aggregate is the merged histogram: a true fleet
    # quantile. A mean of per-pod quantiles has to be asked for explicitly.
    histogram = isinstance(options_raw, dict) and "histogram" in options_raw
    aggregate_raw = entry.get("aggregate", "histogram" if histogram else "mean")
    try:
        aggregate = Aggregation(aggregate_raw)
    except ValueError:
        issues.add(
            f"{where}.aggregate", f"must be one of {', '.join(a.value for a in Aggregation)}"
        )
        aggregate = Aggregation.MEAN
    for key in ("unit", "description"):
        if not isinstance(entry.get(key, ""), str):
            issues.add(f"{where}.{key}", "must be a string")
    options = entry.get(source, {})
    if not isinstance(options, dict):
        issues.add(f"{where}.{source}", "must be a mapping")
        options = {}
    return MetricSpec(
        name=MetricName(name),
        source=source,
        resources=resources,
        unit=str(entry.get("unit", "")),
        description=str(entry.get("description", "")),
        aggregate=aggregate,
        options=options,
    )


def _resources(raw: Any, path: str, issues: _Collector) -> tuple[ResourceKind, ...]:
    if not isinstance(raw, list) or not raw:
        issues.add(path, "must be a non-empty list such as [pods, deployments.apps]")
        return ()
    kinds: list[ResourceKind] = []
    for index, item in enumerate(raw):
        kind = resource_kind(str(item))
        if kind is None:
            issues.add(
                f"{path}[{index}]",
                f"unsupported resource {item!r} (supported: pods, deployments.apps, "
                "statefulsets.apps, replicasets.apps, nodes, namespaces)",
            )
        elif kind not in kinds:
            kinds.append(kind)
    return tuple(kinds)


class CatalogueHolder:
    """The live catalogue, reloaded when the rules file changes or on SIGHUP.

    A reload builds a complete new Catalogue and swaps it in with one assignment,
    so requests in flight finish on the old one and the next request sees the new
    one: nothing is dropped. An invalid new file is rejected with every problem
    logged, and the old catalogue keeps serving. ``listeners`` (e.g. the
    Prometheus source's ``update_rules``) are called with each accepted catalogue.
    """

    def __init__(self, path: Path | None, presets: tuple[str, ...] | None = None) -> None:
        self._path = path
        self._presets = presets
        self._fingerprint = self._read_fingerprint()
        self._current = load_catalogue(path, presets=presets)
        self.listeners: list[Callable[[Catalogue], None]] = []
        self.reloads = 0
        self.failures = 0

    def __call__(self) -> Catalogue:
        return self._current

    def _read_fingerprint(self) -> bytes | None:
        if self._path is None:
            return None
        try:
            return self._path.read_bytes()
        except OSError:
            return None

    def reload_once(self, force: bool = False) -> bool:
        """Reload if the file changed (or ``force``). True when a new catalogue is live."""
        fingerprint = self._read_fingerprint()
        if self._path is None or (fingerprint == self._fingerprint and not force):
            return False
        self._fingerprint = fingerprint
        try:
            catalogue = load_catalogue(self._path, presets=self._presets)
        except ConfigError as e:
            self.failures += 1
            log.error(
                "rules file %s rejected, still serving the previous rules:\n%s", self._path, e
            )
            return False
        for listener in self.listeners:
            listener(catalogue)
        self._current = catalogue
        self.reloads += 1
        log.info("rules file %s reloaded: %d metrics", self._path, len(catalogue.metrics))
        return True
