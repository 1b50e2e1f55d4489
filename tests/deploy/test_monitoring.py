"""Alert rules pass promtool's checks and unit tests; the dashboard's queries parse; the
generated copies (PrometheusRule, dashboard ConfigMap, promtool tests) match their sources."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import alert_cases, sync
from tests.deploy.support import (
    ALERTS,
    DASHBOARD,
    MONITORING,
    alert_rules,
    dashboard_targets,
    find,
    promql_expressions,
    render,
    run,
    tool,
)


def test_promtool_check_rules() -> None:
    result = run([tool("promtool"), "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests() -> None:
    result = run([tool("promtool"), "test", "rules", "alerts.test.yaml"], cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_firing_and_quiet_cases() -> None:
    names = {rule["alert"] for rule in alert_rules() if "alert" in rule}
    firing, quiet = alert_cases.alerts_covered()
    assert names == firing, f"alerts without a firing case: {names - firing}"
    assert names == quiet, f"alerts without a not-firing case: {names - quiet}"


RUNBOOKS = (
    "https://github.com/inference-metrics-adapter/inference-metrics-adapter/blob/main/"
    "deploy/README.md#"
)


def test_every_alert_has_severity_and_a_runbook_url_to_its_section() -> None:
    readme = (MONITORING.parent / "README.md").read_text()
    runbooks = readme[readme.index("\n## Runbooks\n") :]
    headings = re.findall(r"^### (\w+)$", runbooks, re.M)
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, rule["alert"]
        # GitHub's anchor for a heading that is one word is that word in lower case.
        assert annotations["runbook_url"] == RUNBOOKS + rule["alert"].lower()
        assert rule["alert"] in headings
    assert sorted(headings) == sorted(r["alert"] for r in alert_rules())


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses each dashboard query (as a recording rule) after variable substitution."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr}
        for i, (_, expr) in enumerate(promql_expressions())
    ]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([tool("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_uses_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    assert len(list(dashboard_targets())) >= 15


@pytest.mark.parametrize("path", list(sync.rendered()), ids=lambda p: p.name)
def test_generated_file_is_current(path: Path) -> None:
    assert path.read_text() == sync.rendered()[path], (
        f"{path.name} is out of date: run `.venv/bin/python -m tests.deploy.sync`"
    )


def test_dashboard_configmap_holds_the_dashboard_file() -> None:
    configmap = find(render("base"), "ConfigMap", "inference-metrics-adapter-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = configmap["data"].values()
    assert content == DASHBOARD.read_text()
    assert json.loads(content) == json.loads(DASHBOARD.read_text())


def test_prometheusrule_holds_the_rules_file() -> None:
    rule = find(render("base"), "PrometheusRule", "inference-metrics-adapter")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def test_dashboard_has_a_cluster_variable_used_by_every_selector() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    cluster = variables["cluster"]
    assert cluster["includeAll"] is True
    assert cluster["allValue"] == ".*"  # also matches series without a cluster label
    assert 'cluster=~"$cluster"' in variables["namespace"]["query"]["query"]
    for where, expr in dashboard_targets():
        selectors = re.findall(r"[a-z_:]+\{[^}]*\}", expr)
        names = sync._SERIES.findall(re.sub(r'"[^"]*"', '""', expr))
        assert selectors, where
        assert len(selectors) == len(names), f"{where}: a series without a selector: {expr}"
        for selector in selectors:
            assert 'cluster=~"$cluster"' in selector, f"{where}: {selector}"


def test_with_cluster_adds_the_matcher_once_per_series() -> None:
    assert (
        sync.with_cluster("max(adapter_gpu_pods)") == 'max(adapter_gpu_pods{cluster=~"$cluster"})'
    )
    assert (
        sync.with_cluster('rate(inference_duration_seconds_bucket{namespace=~"$namespace"}[2m])')
        == 'rate(inference_duration_seconds_bucket{cluster=~"$cluster",namespace=~"$namespace"}[2m])'
    )
    # Metric names inside label values are not selectors.
    assert sync.with_cluster('x{metric_name="inference_queue_depth"}') == (
        'x{metric_name="inference_queue_depth"}'
    )


def _units(panel: dict[str, Any]) -> dict[str, str]:
    """refId -> the unit Grafana shows that query in."""
    unit = panel["fieldConfig"]["defaults"]["unit"]
    per_ref = {
        o["matcher"]["options"]: o["properties"][0]["value"]
        for o in panel["fieldConfig"]["overrides"]
        if o["matcher"]["id"] == "byFrameRefID" and o["properties"][0]["id"] == "unit"
    }
    return {t["refId"]: per_ref.get(t["refId"], unit) for t in panel["targets"]}


def test_panel_units_match_what_each_query_measures() -> None:
    """A rate() of a counter is per second (ops, reqps), a *_seconds series is seconds (s)."""
    dashboard = json.loads(DASHBOARD.read_text())
    checked = 0
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        units = _units(panel)
        for target in panel["targets"]:
            expr = target["expr"]
            if re.match(r"^sum by \([^)]*\) \(rate\(\w+_total\{", expr):
                assert units[target["refId"]] in {"ops", "reqps"}, (panel["title"], expr)
                checked += 1
            elif re.match(r"^max by \([^)]*\) \(\w+_age_seconds\{", expr):
                assert units[target["refId"]] == "s", (panel["title"], expr)
                checked += 1
    assert checked >= 7
    titled = {p["title"]: _units(p) for p in dashboard["panels"] if p["type"] != "row"}
    assert titled["Values served and age of the samples behind them"] == {"A": "ops", "B": "s"}
    assert titled["Prometheus queries: latency and errors"] == {"A": "s", "B": "ops"}
