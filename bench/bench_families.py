"""Benchmark of the server families (issue 13): refresh time and PromQL load.

    .venv/bin/python bench/bench_families.py            # 1,000 and 10,000 pods

For each fleet size, in the same run and process: today's two-rule refresh
(``inference_duration_seconds`` histogram + ``inference_queue_depth`` gauge,
every pod exporting them) against the four built-ins with every family enabled
(28 queries), the pods spread round-robin over the nine families with each
server's own bucket ladder (vLLM 22 bounds, TGI 36, ...). The fake Prometheus
answers each query with a real-format JSON body of exactly the rows that query
would return, decoded and parsed as the transport does, so the refresh cost
includes JSON decoding. PromQL load: queries sent in one simulated minute
(refresh every 15 s) while 100 HPAs read every metric every 15 s.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapter.core.catalogue import Aggregation, MetricSpec
from adapter.core.model import PODS, MetricName
from adapter.core.selectors import EVERYTHING
from adapter.sources.prometheus import (
    LATENCY_P95_OPTIONS,
    QUEUE_DEPTH_OPTIONS,
    PrometheusSource,
    PromLabels,
    PromSample,
    parse_rule,
)
from adapter.sources.prometheus.families import FAMILIES, PRESETS, SERIES_LABEL, Kind
from adapter.sources.prometheus.transport import _vector
from tests.sources.prometheus.helpers import pod_target

AGGREGATES = {
    "inference_latency_p95": Aggregation.HISTOGRAM,
    "inference_queue_depth": Aggregation.SUM,
    "inference_kv_cache_utilization": Aggregation.MEAN,
    "inference_requests_running": Aggregation.SUM,
}
LADDERS = {"vllm": 22, "sglang": 23, "trtllm-serve": 22, "tgi": 36, "nim": 22}
INTERVAL = 15.0


def spec(name: str, options: Any) -> MetricSpec:
    return MetricSpec(
        MetricName(name), "prometheus", (PODS,), aggregate=AGGREGATES[name], options=options
    )


def two_rules() -> list[Any]:
    return [
        parse_rule(spec("inference_latency_p95", LATENCY_P95_OPTIONS), PromLabels()),
        parse_rule(spec("inference_queue_depth", QUEUE_DEPTH_OPTIONS), PromLabels()),
    ]


def family_rules() -> list[Any]:
    # The inference servers' four built-ins; gpu_utilization's dcgm-exporter family is a
    # different source of a different metric, not part of what this bench compares.
    return [
        parse_rule(spec(name, {"families": "all"}), PromLabels())
        for name in FAMILIES
        if name in AGGREGATES
    ]


def bucket_rows(pods: Sequence[str], ladder: int, now: float, tag: str | None) -> list[Any]:
    extra = {} if tag is None else {SERIES_LABEL: tag}
    les = [*(repr(0.01 * 1.5**k) for k in range(ladder - 1)), "+Inf"]
    return [
        {
            "metric": {"namespace": "ml", "pod": pod, "le": le, **extra},
            "value": [now, repr(j * 7.0 + i % 5)],
        }
        for i, pod in enumerate(pods)
        for j, le in enumerate(les)
    ]


def gauge_rows(pods: Sequence[str], now: float, tag: str | None) -> list[Any]:
    extra = {} if tag is None else {SERIES_LABEL: tag}
    return [
        {
            "metric": {"namespace": "ml", "pod": pod, "adapter_part": part, **extra},
            "value": [now, value],
        }
        for pod in pods
        for part, value in (("value", "3"), ("timestamp", repr(now - 1)))
    ]


class FakeAPI:
    """Answers each query with the JSON body Prometheus would send; counts queries."""

    def __init__(self, bodies: dict[str, str]) -> None:
        self.bodies = bodies
        self.calls = 0

    async def query(self, expr: str, *, at: float | None = None) -> Sequence[PromSample]:
        self.calls += 1
        return _vector(json.loads(self.bodies.get(expr, "[]")))


def answers(rules: Sequence[Any], pods: int, all_generic: bool) -> dict[str, str]:
    """The JSON answer of every query the rules send, for ``pods`` pods."""
    now = time.time()
    names = [f"p-{i}" for i in range(pods)]
    owners = {family: names[k :: len(PRESETS)] for k, family in enumerate(PRESETS)}
    bodies: dict[str, str] = {}
    for rule in rules:
        if not hasattr(rule, "queries"):
            histogram = "_bucket" in rule.query()
            rows = bucket_rows(names, 22, now, None) if histogram else gauge_rows(names, now, None)
            bodies[rule.query()] = json.dumps(rows)
            continue
        for family, (name, expr) in zip(rule.families, rule.queries(), strict=True):
            mine = names if all_generic else owners[name]
            tag = "0" if len(family.series) > 1 else None
            if family.kind is Kind.HISTOGRAM:
                rows = bucket_rows(mine, LADDERS.get(name, 16), now, tag)
            else:
                rows = gauge_rows(mine, now, tag)
            bodies[expr] = json.dumps(rows)
    return bodies


def measure(rules: Sequence[Any], bodies: dict[str, str], pods: int) -> tuple[list[float], int]:
    """Refresh times (3 runs) and the queries of one simulated minute with 100 HPAs."""
    api = FakeAPI(bodies)
    source = PrometheusSource(api, rules)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        asyncio.run(source.refresh_once())
        times.append(time.perf_counter() - t0)
    wanted = [pod_target("ml", f"p-{i}") for i in range(min(pods, 50))]
    api.calls = 0

    async def minute() -> None:
        for _ in range(int(60 / INTERVAL)):
            await source.refresh_once()
            for _hpa in range(100):
                for metric in source.rules:
                    await source.fetch(metric, wanted, EVERYTHING)

    asyncio.run(minute())
    return times, api.calls


def main() -> None:
    print(
        f"{'pods':>7} {'rules':<34} {'queries/refresh':>15} {'queries/min':>11} {'refresh ms (median of 3)':>25} {'ratio':>6}"
    )
    for pods in (1_000, 10_000):
        baseline = two_rules()
        base_times, base_calls = measure(baseline, answers(baseline, pods, True), pods)
        families = family_rules()
        fam_times, fam_calls = measure(families, answers(families, pods, False), pods)
        base_ms = statistics.median(base_times) * 1000
        fam_ms = statistics.median(fam_times) * 1000
        print(
            f"{pods:>7} {'two rules (today)':<34} {base_calls // 4:>15} {base_calls:>11} {base_ms:>25.0f} {1:>6.2f}"
        )
        label = "4 built-ins, all 28 family queries"
        print(
            f"{pods:>7} {label:<34} {fam_calls // 4:>15} {fam_calls:>11} {fam_ms:>25.0f} {fam_ms / base_ms:>6.2f}"
        )


if __name__ == "__main__":
    main()
