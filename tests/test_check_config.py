"""check-config: each metric and the exact PromQL each refresh sends, per family."""

from __future__ import annotations

import pytest

from adapter.cli import main, parser, settings_from_args


def test_check_config_prints_every_query_each_refresh_sends(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check-config", "--preset", "triton", "--preset", "tgi"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "presets: triton, tgi",
        "inference_latency_p95  source=prometheus aggregate=histogram "
        "resources=[pods, deployments.apps, statefulsets.apps]",
        "  triton: label_replace(max by (namespace, pod) (nv_inference_request_summary_us{"
        'namespace!="",pod!="",quantile="0.95"}), "adapter_part", "value", "", "") or '
        "label_replace(min by (namespace, pod) (timestamp(nv_inference_request_summary_us{"
        'namespace!="",pod!="",quantile="0.95"})), "adapter_part", "timestamp", "", "")',
        "  tgi: sum by (namespace, pod, le) (rate(tgi_request_duration_bucket{"
        'namespace!="",pod!=""}[2m]))',
        "inference_queue_depth  source=prometheus aggregate=sum "
        "resources=[pods, deployments.apps, statefulsets.apps]",
        "  triton: label_replace(sum by (namespace, pod) (nv_inference_pending_request_count{"
        'namespace!="",pod!=""}), "adapter_part", "value", "", "") or label_replace(min by '
        '(namespace, pod) (timestamp(nv_inference_pending_request_count{namespace!="",'
        'pod!=""})), "adapter_part", "timestamp", "", "")',
        '  tgi: label_replace(sum by (namespace, pod) (tgi_queue_size{namespace!="",pod!=""}), '
        '"adapter_part", "value", "", "") or label_replace(min by (namespace, pod) (timestamp('
        'tgi_queue_size{namespace!="",pod!=""})), "adapter_part", "timestamp", "", "")',
        "inference_requests_running  source=prometheus aggregate=sum "
        "resources=[pods, deployments.apps, statefulsets.apps]",
        '  tgi: label_replace(sum by (namespace, pod) (tgi_batch_current_size{namespace!="",'
        'pod!=""}), "adapter_part", "value", "", "") or label_replace(min by (namespace, pod) '
        '(timestamp(tgi_batch_current_size{namespace!="",pod!=""})), "adapter_part", '
        '"timestamp", "", "")',
        "gpu_utilization  source=gpu aggregate=mean "
        "resources=[pods, deployments.apps, statefulsets.apps, nodes]",
        "5 PromQL queries per refresh, whatever the number of HPAs and pods",
    ]


def test_serve_takes_repeatable_presets_in_order() -> None:
    args = parser().parse_args(["serve", "--preset", "vllm", "--preset", "tgi"])
    assert settings_from_args(args).presets == ("vllm", "tgi")
    assert settings_from_args(parser().parse_args(["serve"])).presets == ()


def test_check_config_rejects_an_unknown_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--preset", "ollama"]) == 1
    assert capsys.readouterr().err == (
        "<built-in>: --preset 'ollama': unknown (known: vllm, sglang, trtllm-serve, "
        "triton-trtllm, triton, tgi, nim, knative, generic, dcgm-exporter)\n"
    )
