"""gpu_utilization from dcgm-exporter: the preset's switch, the explicit entry, the conflict."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.app import catalogue_holder
from adapter.core.catalogue import Aggregation, MetricSpec
from adapter.core.model import DEPLOYMENTS, NODES, PODS, STATEFULSETS, MetricName
from adapter.rulesfile import ConfigError
from adapter.sources.prometheus.catalogue import queries_of as prometheus_queries

GPU = MetricName("gpu_utilization")
DCGM_QUERY = (
    "label_replace(avg by (exported_namespace, exported_pod) (DCGM_FI_DEV_GPU_UTIL"
    '{exported_namespace!="",exported_pod!=""}), "adapter_part", "value", "", "") or '
    "label_replace(min by (exported_namespace, exported_pod) (timestamp(DCGM_FI_DEV_GPU_UTIL"
    '{exported_namespace!="",exported_pod!=""})), "adapter_part", "timestamp", "", "")'
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def gpu(path: Path | None, presets: tuple[str, ...] | None = None) -> MetricSpec:
    spec = catalogue_holder(path, presets)().metrics[GPU]
    assert isinstance(spec, MetricSpec)
    return spec


def errors(path: Path | None, presets: tuple[str, ...] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        catalogue_holder(path, presets)
    return [str(issue) for issue in caught.value.issues]


def test_the_preset_switches_the_builtin_to_dcgm_exporter(tmp_path: Path) -> None:
    catalogue = catalogue_holder(write(tmp_path, "presets: [vllm, dcgm-exporter]\n"))()
    spec = catalogue.metrics[GPU]
    assert spec.source == "prometheus"
    assert spec.resources == (PODS, DEPLOYMENTS, STATEFULSETS)  # no nodes: per GPU and pod
    assert spec.unit == "percent"
    assert spec.aggregate is Aggregation.MEAN
    assert dict(spec.options) == {"families": ["dcgm-exporter"]}
    assert spec.description == (
        "GPU utilization from dcgm-exporter (DCGM_FI_DEV_GPU_UTIL) in Prometheus; "
        "per pod the mean over its GPUs, for workloads the mean over their pods"
    )
    queries = prometheus_queries(catalogue)
    assert queries[GPU] == (("dcgm-exporter", DCGM_QUERY),)
    assert [family for family, _ in queries[MetricName("inference_queue_depth")]] == ["vllm"]


def test_presets_without_dcgm_exporter_leave_gpu_utilization_on_the_collector(
    tmp_path: Path,
) -> None:
    builtin = gpu(None)
    assert builtin.source == "gpu"
    assert builtin.resources == (PODS, DEPLOYMENTS, STATEFULSETS, NODES)
    assert gpu(write(tmp_path, "presets: [vllm, tgi]\n")) == builtin
    assert gpu(None, ("vllm",)) == builtin


def test_the_command_line_preset_alone_serves_only_gpu_utilization() -> None:
    catalogue = catalogue_holder(None, ("dcgm-exporter",))()
    assert [spec.name for spec in catalogue] == ["gpu_utilization"]
    assert gpu(None, ("dcgm-exporter",)).source == "prometheus"


def test_the_preset_keeps_the_users_own_fields_and_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "presets: [dcgm-exporter, vllm]\n"
        "metrics:\n"
        "  - name: gpu_utilization\n"
        "    resources: [pods]\n"
        "    description: mine\n"
        "    prometheus: {namespaceLabel: namespace, podLabel: pod}\n",
    )
    spec = gpu(path)
    assert spec.resources == (PODS,)
    assert spec.description == "mine"
    assert dict(spec.options) == {
        "families": ["dcgm-exporter"],
        "namespaceLabel": "namespace",
        "podLabel": "pod",
    }
    ((family, query),) = prometheus_queries(catalogue_holder(path)())[GPU]
    assert family == "dcgm-exporter"
    assert query == DCGM_QUERY.replace("exported_namespace", "namespace").replace(
        "exported_pod", "pod"
    )


def test_an_explicit_collector_source_and_the_preset_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "presets: [vllm, dcgm-exporter]\nmetrics:\n  - name: gpu_utilization\n    source: gpu\n",
    )
    assert errors(path) == [
        f"{path}:4: metrics[0].source: gpu_utilization is defined twice: source: gpu (our "
        "collector) here, and from dcgm-exporter in Prometheus by the dcgm-exporter preset; "
        "remove one of the two"
    ]
    # The same through --preset, which replaces the file's list.
    plain = write(tmp_path, "metrics:\n  - name: gpu_utilization\n    source: gpu\n")
    assert errors(plain, ("dcgm-exporter",)) == [
        f"{plain}:3: metrics[0].source: gpu_utilization is defined twice: source: gpu (our "
        "collector) here, and from dcgm-exporter in Prometheus by the dcgm-exporter preset; "
        "remove one of the two"
    ]


def test_an_explicit_entry_without_the_preset(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "metrics:\n"
        "  - name: gpu_utilization\n"
        "    source: prometheus\n"
        "    resources: [pods, deployments.apps, statefulsets.apps]\n"
        "    prometheus: {families: [dcgm-exporter], selector: 'job=\"dcgm\"'}\n",
    )
    catalogue = catalogue_holder(path)()
    spec = catalogue.metrics[GPU]
    assert spec.source == "prometheus"
    assert spec.unit == "percent"
    ((_, query),) = prometheus_queries(catalogue)[GPU]
    assert query == DCGM_QUERY.replace('exported_pod!=""', 'exported_pod!="",job="dcgm"')
    # The explicit entry wins over the preset too (already on Prometheus: left as written).
    assert gpu(path, ("vllm", "dcgm-exporter")) == spec


def test_an_explicit_entry_inheriting_nodes_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "metrics:\n"
        "  - name: gpu_utilization\n"
        "    source: prometheus\n"
        "    prometheus: {families: [dcgm-exporter], podLabel: 'exported-pod'}\n",
    )
    assert errors(path) == [
        f"{path}:4: metrics[0].prometheus.podLabel: label name 'exported-pod' is not a valid "
        "Prometheus label name (letters, digits and '_', not starting with a digit)",
        f"{path}:4: metrics[0].prometheus.resources: nodes: dcgm-exporter has one series per "
        "GPU, attributed to pods; a node's value would be the mean over its pods, not over its "
        "GPUs: list pods and workloads only",
    ]


def test_metric_labels_override_the_files_for_one_metric_only(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prometheus: {namespaceLabel: kubernetes_namespace, podLabel: kubernetes_pod_name}\n"
        "includeDefaults: false\n"
        "metrics:\n"
        "  - name: a\n"
        "    source: prometheus\n"
        "    prometheus: {gauge: x, podLabel: exported_pod}\n"
        "  - name: b\n"
        "    source: prometheus\n"
        "    prometheus: {gauge: x}\n",
    )
    queries = prometheus_queries(catalogue_holder(path)())
    ((_, a),) = queries[MetricName("a")]
    ((_, b),) = queries[MetricName("b")]
    assert "avg by (kubernetes_namespace, exported_pod) (x{" in a
    assert "avg by (kubernetes_namespace, kubernetes_pod_name) (x{" in b
    assert a == b.replace("kubernetes_pod_name", "exported_pod")


def test_metric_label_clash_with_the_files_label_names_both(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prometheus: {podLabel: kubernetes_pod_name}\n"
        "includeDefaults: false\n"
        "metrics:\n"
        "  - name: a\n"
        "    source: prometheus\n"
        "    prometheus:\n"
        "      gauge: x\n"
        "      namespaceLabel: kubernetes_pod_name\n",
    )
    assert errors(path) == [
        f"{path}:8: metrics[0].prometheus.namespaceLabel: must differ from podLabel "
        "('kubernetes_pod_name')"
    ]
