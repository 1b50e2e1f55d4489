"""Names in deploy/ match the code: series the dashboard and alerts read are exported by the
adapter, the collector or the workloads (or listed as external); the HPA's metrics are in the
catalogue; flags, ports and labels in the manifests are the programs' own."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapter import cli as adapter_cli
from adapter.core.catalogue import resource_kind
from adapter.rulesfile import BUILTIN_METRICS
from adapter.settings import GpuSettings, ServingSettings
from adapter.sources.prometheus.families import FAMILIES
from collectors.gpu import cli as collector_cli
from tests.deploy.support import (
    DEPLOY,
    EXTERNAL_SERIES,
    ROOT,
    expanded_args,
    find,
    label_values,
    load,
    promql_expressions,
    render,
    series_names,
)

_KINDS = {
    "Counter": "counter", "CounterMetricFamily": "counter", "counter": "counter",
    "Gauge": "gauge", "GaugeMetricFamily": "gauge", "gauge": "gauge",
    "Histogram": "histogram", "HistogramMetricFamily": "histogram",
    "Summary": "summary", "SummaryMetricFamily": "summary",
}  # fmt: skip


def _registrations(package: str) -> Iterator[tuple[str, str, Path]]:
    """(kind, name, file) for every metric constructed with a literal name under package/."""
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if fname in _KINDS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield _KINDS[fname], first.value, path


def _exposed(kind: str, name: str) -> set[str]:
    """The series names the Prometheus text format gives a metric."""
    if kind == "counter":
        base = name.removesuffix("_total")
        return {f"{base}_total", f"{base}_created"}
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    if kind == "summary":
        return {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
    return {name}


def exported_series() -> dict[str, str]:
    """series name -> where it comes from, for the adapter, the collector and the demo fleet."""
    found = {}
    for package in ("adapter", "collectors"):
        for kind, name, path in _registrations(package):
            for series in _exposed(kind, name):
                found[series] = str(path.relative_to(ROOT))
    return found


def _workload_series() -> set[str]:
    """Series the default rules read from inference servers (BUILTIN_METRICS' prometheus blocks)."""
    series = set()
    for entry in BUILTIN_METRICS:
        options = entry.get("prometheus", {})
        if "histogram" in options:
            series |= _exposed("histogram", options["histogram"])
        if "gauge" in options:
            series.add(options["gauge"])
        if "families" in options:  # real servers' own series (adapter.sources.prometheus.families)
            for family in FAMILIES[entry["name"]]:
                for one in family.series:
                    series |= _exposed(family.kind.value, one.name)
    return series


def test_code_side_is_found() -> None:
    exported = exported_series()
    for name in (
        "adapter_http_requests_total",
        "adapter_http_request_duration_seconds_bucket",
        "adapter_pods_omitted_total",
        "adapter_values_served_total",
        "adapter_served_value",
        "adapter_prometheus_query_errors_total",
        "adapter_prometheus_snapshot_age_seconds",
        "adapter_gpu_snapshot_age_seconds",
        "gpu_collector_up",
        "gpu_collector_pod_gpu_utilization_percent",
        "gpu_collector_nvml_errors_total",
    ):
        assert name in exported, name
    assert {"inference_duration_seconds_bucket", "inference_queue_depth"} <= _workload_series()


def test_dashboard_and_alert_series_exist() -> None:
    known = set(exported_series()) | _workload_series() | EXTERNAL_SERIES
    expressions = promql_expressions()
    used: set[str] = set()
    for where, expr in expressions:
        names = series_names(expr)
        assert names, f"{where}: no series found in {expr!r}"
        unknown = names - known
        assert not unknown, f"{where}: series {sorted(unknown)} are exported by nothing we know"
        used |= names
    # Both sides read: the dashboard and alerts cover every signal family.
    for prefix in ("adapter_http_", "adapter_served_", "adapter_prometheus_", "adapter_gpu_",
                   "gpu_collector_", "inference_"):  # fmt: skip
        assert any(n.startswith(prefix) for n in used), prefix


def test_label_values_in_queries_are_served_names() -> None:
    metrics = {entry["name"] for entry in BUILTIN_METRICS}
    adapter_source = "\n".join(p.read_text() for p in (ROOT / "adapter").rglob("*.py"))
    for where, expr in promql_expressions():
        for value in label_values(expr, "metric") | label_values(expr, "metric_name"):
            assert value in metrics, f"{where}: metric {value!r} is not in the catalogue"
        for value in label_values(expr, "reason"):
            assert f'"{value}"' in adapter_source, f"{where}: reason {value!r} unknown"
        for value in label_values(expr, "kind"):
            assert resource_kind("pods") is not None
            assert value in {"Pod", "Deployment", "StatefulSet", "ReplicaSet", "Node"}, value


def test_example_hpa_metrics_are_served() -> None:
    catalogue = {entry["name"]: entry for entry in BUILTIN_METRICS}
    hpa = load(DEPLOY / "examples" / "inference-hpa.yaml")
    by_type: dict[str, set[str]] = {}
    for metric in hpa["spec"]["metrics"]:
        kind = metric["type"]
        block = metric[kind.lower()]
        name = block["metric"]["name"]
        assert name in catalogue, name
        resources = catalogue[name]["resources"]
        if kind == "Pods":
            assert "pods" in resources, name
        else:
            described = block["describedObject"]
            group = described["apiVersion"].partition("/")[0]
            assert f"{described['kind'].lower()}s.{group}" in resources, name
        by_type.setdefault(kind, set()).add(name)
    assert by_type["Pods"] == set(catalogue)
    assert by_type["Object"] == {"inference_latency_p95"}
    targets = {
        m["pods"]["metric"]["name"]: m["pods"]["target"]
        for m in hpa["spec"]["metrics"]
        if m["type"] == "Pods"
    }
    assert targets["inference_latency_p95"] == {"type": "AverageValue", "averageValue": "500m"}
    assert targets["inference_queue_depth"] == {"type": "AverageValue", "averageValue": "10"}
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert {"type": "Percent", "value": 10, "periodSeconds": 60} in behavior["scaleDown"][
        "policies"
    ]


def test_rules_configmap_is_a_valid_rules_file(tmp_path: Path) -> None:
    configmap = find(render("base"), "ConfigMap", "inference-metrics-adapter-rules")
    rules = tmp_path / "rules.yaml"
    rules.write_text(configmap["data"]["rules.yaml"])
    assert adapter_cli.main(["check-config", str(rules)]) == 0


def _container(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    container: dict[str, Any]
    (container,) = find(docs, kind, name)["spec"]["template"]["spec"]["containers"]
    return container


def test_adapter_deployment_matches_the_program() -> None:
    docs = render("overlays/example")
    container = _container(docs, "Deployment", "inference-metrics-adapter")
    # every flag exists, once the kubelet has put the settings in
    args = adapter_cli.parser().parse_args(expanded_args(docs, container))
    assert args.command == "serve"
    assert args.prometheus_url == "http://prometheus-operated.monitoring.svc:9090"
    assert args.log_level == "info"
    assert args.secure_port == ServingSettings.secure_port == 6443
    assert str(args.config) == "/etc/adapter/rules.yaml"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/etc/adapter" in mounts
    assert str(args.tls_cert_file).startswith("/etc/adapter/tls/")
    assert {
        container["livenessProbe"]["httpGet"]["path"],
        container["readinessProbe"]["httpGet"]["path"],
    } == {"/livez", "/readyz"}
    service = find(docs, "Service", "inference-metrics-adapter")
    assert service["spec"]["ports"][0]["port"] == 443
    assert container["ports"][0]["containerPort"] == args.secure_port


def test_collector_daemonset_matches_the_program() -> None:
    for name in ("base", "overlays/shared-gpu"):
        docs = render(name)
        daemonset = find(docs, "DaemonSet", "gpu-collector")
        container = _container(docs, "DaemonSet", "gpu-collector")
        assert container["command"] == ["gpu-collector"]
        settings = collector_cli.parse_settings(container["args"])
        assert settings.port == GpuSettings.collector_port == 9400
        key, _, value = GpuSettings.collector_selector.partition("=")
        assert daemonset["spec"]["template"]["metadata"]["labels"][key] == value
        env = {e["name"]: e for e in container["env"]}
        assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
        pod = daemonset["spec"]["template"]["spec"]
        shared = name.endswith("shared-gpu")
        assert pod.get("hostPID", False) is shared
        assert (str(settings.proc_root) == "/host/proc") is shared
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/var/lib/kubelet/pod-resources"]["readOnly"] is True
        assert settings.pod_resources_socket.startswith("/var/lib/kubelet/pod-resources/")


def test_pyproject_entry_points_are_the_image_commands() -> None:
    import tomllib  # noqa: PLC0415

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"inference-metrics-adapter", "gpu-collector"} <= set(scripts)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["inference-metrics-adapter"]' in dockerfile
    # the collector's command is checked in the DaemonSet test
