"""Exposition fixtures of real inference servers, served on loopback for Prometheus.

Every series uses the server's own name, labels, unit and bucket bounds (from
``servers.md``: vLLM ``vllm/v1/metrics``, SGLang ``collector.py``, TGI
``router/src/server.rs``, Triton ``metrics.md``, TensorRT-LLM, NIM 1.x,
Knative queue-proxy). ``namespace`` and ``pod`` are written on each series, as
a PodMonitor's relabeling would attach them.

Histogram counters grow as ``weight * seconds since start``: all buckets of a
scrape scale by the same factor, so rates keep the weights' ratios and every
quantile is known exactly, however the scrapes fall.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.prometheus_server import free_port

NS = "srv"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"

VLLM_E2E = (0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680)  # fmt: skip
SGLANG_E2E = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600, 1200, 1800, 2400)  # fmt: skip
TGI_DURATION = tuple(0.0001 * 1.5**k for k in range(1, 36))  # 0.00015 s ... 145.6 s
# Knative <= 1.18 latency buckets are milliseconds (bounds illustrative; the unit is Knative's).
KNATIVE_MS = (5, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 500, 1000, 2000, 5000, 10000)


@dataclass(frozen=True)
class Histogram:
    name: str
    bounds: Sequence[float]
    weights: Mapping[float, float]
    """Observations per second falling at each bound (not cumulative); +Inf allowed."""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Value:
    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    kind: str = "gauge"
    per_second: float = 0.0
    """A counter's growth: the exposed value is ``value + per_second * elapsed``."""


@dataclass(frozen=True)
class Pod:
    name: str
    series: Sequence[Histogram | Value]
    labels: Mapping[str, str] | None = None
    """The pod's target labels; default ``namespace``/``pod`` as a PodMonitor attaches."""

    @property
    def target(self) -> Mapping[str, str]:
        return {"namespace": NS, "pod": self.name} if self.labels is None else self.labels


def _h(
    name: str, bounds: Sequence[float], weights: Mapping[float, float], **labels: str
) -> Histogram:
    return Histogram(name, bounds, weights, labels)


def _v(name: str, value: float, kind: str = "gauge", **labels: str) -> Value:
    return Value(name, value, labels, kind)


def vllm_pod(name: str, weights: Mapping[float, float]) -> Pod:
    """vLLM v1 with two data-parallel engines (per-engine series)."""
    e0 = {"engine": "0", "model_name": LLAMA}
    e1 = {"engine": "1", "model_name": LLAMA}
    half = {bound: w / 2 for bound, w in weights.items()}
    return Pod(
        name,
        [
            _h("vllm:e2e_request_latency_seconds", VLLM_E2E, half, **e0),
            _h("vllm:e2e_request_latency_seconds", VLLM_E2E, {**half, 5: half.get(5, 0) + 1}, **e1),
            _v("vllm:num_requests_waiting", 3, **e0),
            _v("vllm:num_requests_waiting", 4, **e1),
            _v("vllm:num_requests_running", 2, **e0),
            _v("vllm:num_requests_running", 5, **e1),
            _v("vllm:kv_cache_usage_perc", 0.25, **e0),
            _v("vllm:kv_cache_usage_perc", 0.5, **e1),
        ],
    )


PODS: tuple[Pod, ...] = (
    vllm_pod("vllm-0", {0.5: 50, 1: 30, 2.5: 15, 10: 5}),
    vllm_pod("vllm-1", {0.8: 20, 2: 20, 15: 10}),
    Pod(  # vLLM before 0.9: the KV-cache gauge under its old name
        "vllm-old",
        [
            _v("vllm:num_requests_waiting", 1, model_name="m"),
            _v("vllm:gpu_cache_usage_perc", 0.8, model_name="m"),
        ],
    ),
    Pod(
        "sglang-0",
        [
            _h(
                "sglang:e2e_request_latency_seconds",
                SGLANG_E2E,
                {0.4: 10, 2: 60, 20: 30},
                model_name="q",
            ),
            _v("sglang:num_queue_reqs", 5, model_name="q"),
            _v("sglang:num_running_reqs", 9, model_name="q"),
            _v("sglang:token_usage", 0.42, model_name="q"),
        ],
    ),
    Pod(
        "tgi-0",
        [
            _h("tgi_request_duration", TGI_DURATION, {TGI_DURATION[20]: 70, TGI_DURATION[27]: 30}),
            _v("tgi_queue_size", 2),
            _v("tgi_batch_current_size", 6),
        ],
    ),
    Pod(  # summary_latencies=true: per-model quantiles in µs
        "triton-0",
        [
            _v(
                "nv_inference_request_summary_us",
                120000,
                "summary",
                model="a",
                version="1",
                quantile="0.95",
            ),
            _v(
                "nv_inference_request_summary_us",
                250000,
                "summary",
                model="b",
                version="1",
                quantile="0.95",
            ),
            _v(
                "nv_inference_request_summary_us",
                90000,
                "summary",
                model="b",
                version="1",
                quantile="0.5",
            ),
            _v("nv_inference_request_duration_us", 5e9, "counter", model="a", version="1"),
            _v("nv_inference_request_success", 1e4, "counter", model="a", version="1"),
            _v("nv_inference_pending_request_count", 1, model="a", version="1"),
            _v("nv_inference_pending_request_count", 2, model="b", version="1"),
        ],
    ),
    Pod(  # default Triton: µs counters only, no p95 exists
        "triton-1",
        [
            _v("nv_inference_request_duration_us", 5e9, "counter", model="a", version="1"),
            _v("nv_inference_request_success", 1e4, "counter", model="a", version="1"),
            _v("nv_inference_pending_request_count", 4, model="a", version="1"),
        ],
    ),
    Pod(  # Triton with the TensorRT-LLM backend
        "triton-trtllm-0",
        [
            _v("nv_inference_pending_request_count", 0, model="tensorrt_llm", version="1"),
            _v(
                "nv_trt_llm_request_metrics",
                6,
                model="tensorrt_llm",
                version="1",
                request_type="waiting",
            ),
            _v(
                "nv_trt_llm_request_metrics",
                3,
                model="tensorrt_llm",
                version="1",
                request_type="scheduled",
            ),
            _v(
                "nv_trt_llm_request_metrics",
                9,
                model="tensorrt_llm",
                version="1",
                request_type="active",
            ),
            _v(
                "nv_trt_llm_request_metrics",
                64,
                model="tensorrt_llm",
                version="1",
                request_type="max",
            ),
            _v(
                "nv_trt_llm_kv_cache_block_metrics",
                0.5,
                model="tensorrt_llm",
                version="1",
                kv_cache_block_type="fraction",
            ),
            _v(
                "nv_trt_llm_kv_cache_block_metrics",
                100,
                model="tensorrt_llm",
                version="1",
                kv_cache_block_type="used",
            ),
        ],
    ),
    Pod(
        "trtllm-serve-0",
        [
            _h(
                "trtllm_e2e_request_latency_seconds",
                VLLM_E2E,
                {0.3: 40, 1.5: 40, 5: 20},
                model_name="t",
                engine_type="trtllm",
            ),
            _v("trtllm_num_requests_waiting", 1, model_name="t", engine_type="trtllm"),
            _v("trtllm_num_requests_running", 2, model_name="t", engine_type="trtllm"),
            _v("trtllm_kv_cache_utilization", 0.3, model_name="t", engine_type="trtllm"),
        ],
    ),
    Pod(  # NIM for LLMs 1.x: unprefixed vLLM-style names
        "nim-0",
        [
            _h("e2e_request_latency_seconds", VLLM_E2E, {1: 80, 10: 20}, model_name="n"),
            _v("num_requests_waiting", 2, model_name="n"),
            _v("num_requests_running", 1, model_name="n"),
            _v("gpu_cache_usage_perc", 0.6, model_name="n"),
        ],
    ),
    Pod(  # Knative >= 1.19 (OTel names, seconds)
        "kn-new-0",
        [
            _h(
                "kn_serving_invocation_duration_seconds",
                (0.01, 0.1, 0.5, 1, 5, 10),
                {0.1: 60, 1: 40},
            ),
            _v("kn_serving_queue_depth", 3),
        ],
    ),
    Pod(  # Knative <= 1.18 (milliseconds)
        "kn-old-0",
        [
            _h(
                "revision_app_request_latencies",
                KNATIVE_MS,
                {40: 30, 250: 60, 2000: 10},
                namespace_name=NS,
                pod_name="kn-old-0",
            ),
            _v("revision_queue_depth", 4, namespace_name=NS, pod_name="kn-old-0"),
        ],
    ),
    Pod(  # both vLLM and the generic series: vLLM comes first in the documented order
        "both-0",
        [
            _h(
                "vllm:e2e_request_latency_seconds", VLLM_E2E, {0.3: 100}, engine="0", model_name="m"
            ),
            _v("vllm:num_requests_waiting", 8, engine="0", model_name="m"),
            _h("inference_duration_seconds", (0.1, 1, 10), {10: 100}),
            _v("inference_queue_depth", 99),
        ],
    ),
)


def exposition(pods: Sequence[Pod], elapsed: float) -> str:
    """The text format of every pod's series, ``elapsed`` seconds after the start."""
    families: dict[str, tuple[str, list[str]]] = {}
    for pod in pods:
        for series in pod.series:
            base = {**pod.target, **series.labels}
            if isinstance(series, Histogram):
                lines = families.setdefault(series.name, ("histogram", []))[1]
                cumulative = 0.0
                for bound in (*series.bounds, math.inf):
                    cumulative += series.weights.get(bound, 0.0) * elapsed
                    le = "+Inf" if bound == math.inf else repr(float(bound))
                    lines.append(_line(f"{series.name}_bucket", {**base, "le": le}, cumulative))
                lines.append(_line(f"{series.name}_count", base, cumulative))
                lines.append(_line(f"{series.name}_sum", base, cumulative))
            else:
                lines = families.setdefault(series.name, (series.kind, []))[1]
                lines.append(_line(series.name, base, series.value + series.per_second * elapsed))
    out: list[str] = []
    for name, (kind, lines) in families.items():
        out.append(f"# TYPE {name} {'untyped' if kind == 'counter' else kind}")
        out.extend(lines)
    return "\n".join(out) + "\n"


def _line(name: str, labels: Mapping[str, str], value: float) -> str:
    text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{text}}} {value!r}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@contextmanager
def serving(pods: Sequence[Pod] = PODS) -> Iterator[str]:
    """Serve ``pods``' exposition on 127.0.0.1; yields the ``host:port`` target."""
    started = time.monotonic()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exposition(pods, time.monotonic() - started).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="server-fixtures", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
