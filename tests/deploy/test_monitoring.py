"""Alert rules pass promtool's checks and unit tests; the dashboard's queries parse; the
generated copies (PrometheusRule, dashboard ConfigMap, promtool tests) match their sources."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_every_alert_has_severity_and_runbook() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


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
