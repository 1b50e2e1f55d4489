"""convert-rules: golden outputs, every untranslatable form with its line, output passes check-config."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from adapter.app import catalogue_holder
from adapter.cli import main
from adapter.convert import Untranslatable, convert
from adapter.rulesfile import ConfigError
from adapter.sources.prometheus.catalogue import queries_of as prometheus_queries

HERE = Path(__file__).parent

# What a Prometheus holding cAdvisor and some application series lists for the
# default config's discovery queries (the adapter asks /api/v1/series once).
DISCOVERED = {
    '{__name__=~"^container_.*",container!="POD",namespace!="",pod!=""}': [
        "container_cpu_usage_seconds_total",
        "container_fs_reads_total",
        "container_memory_working_set_bytes",
        "container_network_receive_bytes_total",
    ],
    '{namespace!="",__name__!~"^container_.*"}': [
        "http_requests_total",
        "process_cpu_seconds_total",
        "vllm:num_requests_waiting",
    ],
}


def lister(query: str) -> Sequence[str]:
    return DISCOVERED[query]


@pytest.mark.parametrize(
    ("fixture", "discovery"),
    [("walkthrough", False), ("forms", False), ("default-config", True), ("default-config", False)],
)
def test_golden_outputs(fixture: str, discovery: bool) -> None:
    path = HERE / f"{fixture}.yaml"
    result = convert(path.read_text(), f"{fixture}.yaml", lister if discovery else None)
    golden = HERE / f"{fixture}{'.discovered' if discovery else ''}.golden.yaml"
    assert result.yaml(f"{fixture}.yaml") == golden.read_text()


def test_every_untranslatable_form_is_listed_with_its_line_and_reason() -> None:
    result = convert((HERE / "forms.yaml").read_text(), "forms.yaml")
    namespaces = (
        "namespaces/<metric> is not converted: add 'namespaces' to resources with "
        "aggregate: sum to serve a namespace total over its pods"
    )
    no_pod = "no label maps to pods: the adapter serves pod metrics (and their workloads)"
    assert result.untranslatable == [
        Untranslatable(4, "rules[0]", "unknown key(s) metricQuery: the rule's meaning is unclear"),
        Untranslatable(13, "rules[1].resources", no_pod),
        Untranslatable(17, "rules[2].resources", no_pod),
        Untranslatable(
            21,
            "rules[3].metricsQuery",
            "template construct(s) <<$g>>, <<end>>, <<range $i, $g := .GroupBySlice>> not "
            "supported (only <<.Series>>, <<.LabelMatchers>>, <<.GroupBy>>)",
        ),
        Untranslatable(
            24,
            "rules[4].metricsQuery",
            "metricsQuery without <<.GroupBy>> cannot be answered per pod",
        ),
        Untranslatable(
            25,
            "rules[5].seriesQuery",
            'metric names come from series discovery ({__name__=~"^http_.*",namespace!="",'
            'pod!=""}): run convert-rules with --prometheus-url to list them once',
        ),
        Untranslatable(
            30,
            "rules[6].resources",
            "resource 'node' via label 'node' is not served: only pods and the workloads "
            "made of them",
        ),
        Untranslatable(30, "rules[6].resources", namespaces),
        Untranslatable(
            35,
            "rules[7]",
            "metric 'queue_depth' (series queue_depth) is already defined by an earlier rule",
        ),
        Untranslatable(36, "rules[7].resources", namespaces),
        # Another label pair than the first rule's: converted with the metric's own labels.
        Untranslatable(39, "rules[8].resources", namespaces),
        Untranslatable(
            42,
            "externalRules",
            "external metrics (external.metrics.k8s.io) are not served by this adapter; use KEDA",
        ),
    ]


@pytest.mark.parametrize("fixture", ["walkthrough", "forms", "default-config.discovered"])
def test_the_output_passes_check_config(fixture: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = HERE / f"{fixture}.golden.yaml"
    catalogue = catalogue_holder(path)()
    queries = prometheus_queries(catalogue)
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    for metric in catalogue.metrics:
        assert f"\n{metric}  source=" in f"\n{out}"
    if fixture == "forms":
        ((_, tokens),) = queries["tokens_total"]
        assert tokens == (
            'sum(rate(tokens_total{k8s_namespace!="",k8s_pod!=""}[1m])) by (k8s_namespace, k8s_pod)'
        )
    if fixture == "walkthrough":
        assert queries["http_requests_per_second"] == (
            (
                "template",
                'sum(rate(http_requests_total{kubernetes_namespace!="",kubernetes_pod_name!=""}'
                "[2m])) by (kubernetes_namespace, kubernetes_pod_name)",
            ),
        )


def test_a_configmap_is_read_and_lines_point_into_it() -> None:
    inner = (HERE / "walkthrough.yaml").read_text().replace("\n", "\n    ")
    text = f"apiVersion: v1\nkind: ConfigMap\ndata:\n  config.yaml: |\n    {inner}\n"
    result = convert(text, "cm.yaml")
    assert [m["name"] for m in result.metrics] == ["http_requests_per_second"]
    assert [(u.line, u.where) for u in result.untranslatable] == [(10, "rules[0].resources")]
    assert text.splitlines()[9].strip().startswith("overrides:")


def test_not_a_config() -> None:
    with pytest.raises(ConfigError, match="a prometheus-adapter config is a mapping"):
        convert("- a\n", "x.yaml")


def test_cli_writes_the_file_and_lists_what_it_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rules.yaml"
    assert main(["convert-rules", str(HERE / "walkthrough.yaml"), "-o", str(out)]) == 3
    assert out.read_text() == (HERE / "walkthrough.golden.yaml").read_text().replace(
        "config walkthrough.yaml", f"config {HERE / 'walkthrough.yaml'}"
    )
    assert capsys.readouterr().err == (
        f"{HERE / 'walkthrough.yaml'}: line 6: rules[0].resources: namespaces/<metric> is not "
        "converted: add 'namespaces' to resources with aggregate: sum to serve a namespace "
        "total over its pods\n"
    )
    assert main(["convert-rules", str(tmp_path / "missing.yaml")]) == 1


def test_cli_reports_an_unreachable_prometheus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = HERE / "default-config.yaml"
    url = "http://127.0.0.1:1"  # nothing listens on port 1
    assert (
        main(["convert-rules", str(config), "--prometheus-url", url, "--prometheus-timeout", "2s"])
        == 1
    )
    assert capsys.readouterr().err.startswith("convert-rules: <urlopen error")
