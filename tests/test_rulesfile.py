"""The rules file: merging over built-ins, strict validation with lines, live reload semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.app import catalogue_holder
from adapter.core.catalogue import Aggregation, Catalogue
from adapter.core.errors import NotFound
from adapter.rulesfile import ConfigError, load_catalogue


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_builtins_without_a_file() -> None:
    catalogue = load_catalogue(None)
    assert [(s.name, s.source, s.aggregate) for s in catalogue] == [
        ("inference_latency_p95", "prometheus", Aggregation.HISTOGRAM),
        ("inference_queue_depth", "prometheus", Aggregation.SUM),
        ("inference_kv_cache_utilization", "prometheus", Aggregation.MEAN),
        ("inference_requests_running", "prometheus", Aggregation.SUM),
        ("gpu_utilization", "gpu", Aggregation.MEAN),
    ]
    assert catalogue.presets == ()
    assert catalogue.policy.omit_unready is True
    assert catalogue.policy.warmup_seconds == 30.0


def test_overriding_a_builtin_merges_its_source_block(tmp_path: Path) -> None:
    path = write(
        tmp_path, "metrics:\n  - name: inference_latency_p95\n    prometheus: {quantile: 0.99}\n"
    )
    spec = catalogue_holder(path)().metrics["inference_latency_p95"]  # type: ignore[index]
    assert dict(spec.options) == {"families": "all", "quantile": 0.99, "window": "2m"}
    assert spec.aggregate is Aggregation.HISTOGRAM


def test_an_explicit_form_replaces_the_builtin_families(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "presets: [tgi]\nmetrics:\n  - name: inference_queue_depth\n"
        "    prometheus: {gauge: my_queue, selector: 'model_name=\"m/x\"'}\n",
    )
    catalogue = catalogue_holder(path)()
    assert dict(catalogue.metrics["inference_queue_depth"].options) == {  # type: ignore[index]
        "gauge": "my_queue",
        "selector": 'model_name="m/x"',
    }
    # The presets still apply to the built-ins left on their families.
    latency = catalogue.metrics["inference_latency_p95"]  # type: ignore[index]
    assert latency.options["families"] == ["tgi"]


def test_presets_order_and_restrict_the_families(tmp_path: Path) -> None:
    path = write(tmp_path, "presets: [tgi, vllm]\n")
    catalogue = catalogue_holder(path)()
    assert catalogue.presets == ("tgi", "vllm")
    options = {str(s.name): s.options.get("families") for s in catalogue}
    assert options == {
        "inference_latency_p95": ["tgi", "vllm"],
        "inference_queue_depth": ["tgi", "vllm"],
        "inference_kv_cache_utilization": ["vllm"],  # TGI exports no KV-cache series
        "inference_requests_running": ["tgi", "vllm"],
        "gpu_utilization": None,
    }


def test_a_builtin_no_preset_serves_is_not_served(tmp_path: Path) -> None:
    path = write(tmp_path, "presets: [tgi]\n")
    assert "inference_kv_cache_utilization" not in catalogue_holder(path)().metrics


def test_command_line_presets_replace_the_files(tmp_path: Path) -> None:
    path = write(tmp_path, "presets: [tgi]\n")
    catalogue = catalogue_holder(path, ("triton",))()
    assert catalogue.presets == ("triton",)
    assert catalogue.metrics["inference_latency_p95"].options["families"] == ["triton"]  # type: ignore[index]
    assert "inference_requests_running" not in catalogue.metrics


def test_unknown_presets_are_reported_with_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, "serving: {}\npresets: [vllm, ollama]\n")
    with pytest.raises(ConfigError) as caught:
        catalogue_holder(path)
    assert [str(issue) for issue in caught.value.issues] == [
        f"{path}:2: presets[1]: unknown preset 'ollama' (known: vllm, sglang, trtllm-serve, "
        "triton-trtllm, triton, tgi, nim, knative, generic, dcgm-exporter)"
    ]
    with pytest.raises(ConfigError) as caught:
        catalogue_holder(None, ("nope",))
    assert [issue.message for issue in caught.value.issues] == [
        "--preset 'nope': unknown (known: vllm, sglang, trtllm-serve, triton-trtllm, triton, "
        "tgi, nim, knative, generic, dcgm-exporter)"
    ]


def test_a_histogram_rule_defaults_to_the_merged_histogram(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "metrics:\n  - name: ttft_p90\n    source: prometheus\n"
        "    prometheus: {histogram: ttft_seconds, quantile: 0.9}\n",
    )
    assert catalogue_holder(path)().metrics["ttft_p90"].aggregate is Aggregation.HISTOGRAM  # type: ignore[index]


def test_include_defaults_false_drops_builtins(tmp_path: Path) -> None:
    path = write(tmp_path, "includeDefaults: false\n")
    assert list(load_catalogue(path).metrics) == []


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("metrics: {}\n", ["rules.yaml:1: metrics: must be a list of metric rules"]),
        (
            "a: 1\nb: [\n",
            ["rules.yaml:3: invalid YAML: expected the node content, but found '<stream end>'"],
        ),
        (
            "serving: {omitUnready: maybe}\n",
            ["rules.yaml:1: serving.omitUnready: must be true or false"],
        ),
        (
            "metrics:\n  - name: a/b\n    source: gpu\n",
            [
                "rules.yaml:2: metrics[0].name: required: a metric name (no '/', '%', '?'; not '.' or '..')"
            ],
        ),
        (
            "metrics:\n  - {name: m, source: gpu}\n  - {name: m, source: gpu}\n",
            ["rules.yaml:3: metrics[1].name: metric 'm' is defined twice"],
        ),
        (
            "metrics:\n  - name: m\n    source: gpu\n    gpu: {x: 1}\n",
            ["rules.yaml:4: metrics[0].gpu.x: unknown key (the gpu source takes no options)"],
        ),
        (
            "prometheus: {podLabel: 'bad-label'}\n",
            [
                "rules.yaml:1: prometheus.podLabel: label name 'bad-label' is not a valid "
                "Prometheus label name (letters, digits and '_', not starting with a digit)"
            ],
        ),
        (
            "serving: {warmup: 1s}\nserving: {warmup: 2s}\n",
            ["rules.yaml:2: serving: duplicate key"],
        ),
    ],
)
def test_every_problem_is_reported_with_its_line(
    tmp_path: Path, text: str, problems: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        catalogue_holder(path)
    assert [
        str(issue).replace(str(tmp_path) + "/", "") for issue in caught.value.issues
    ] == problems


def test_reload_applies_a_valid_change_and_keeps_the_old_on_an_invalid_one(tmp_path: Path) -> None:
    path = write(tmp_path, "includeDefaults: false\nmetrics:\n  - {name: a, source: gpu}\n")
    holder = catalogue_holder(path)
    seen: list[Catalogue] = []
    holder.listeners.append(seen.append)
    assert holder.reload_once() is False  # unchanged file: nothing to do

    path.write_text("includeDefaults: false\nmetrics:\n  - {name: b, source: gpu}\n")
    assert holder.reload_once() is True
    assert list(holder().metrics) == ["b"]
    assert [list(c.metrics) for c in seen] == [["b"]]

    path.write_text("includeDefaults: false\nmetrics:\n  - {name: c, source: nowhere}\n")
    assert holder.reload_once() is False
    assert list(holder().metrics) == ["b"]
    assert holder.failures == 1
    with pytest.raises(NotFound, match="the server could not find the metric c for pods"):
        holder().lookup("c", "pods")
