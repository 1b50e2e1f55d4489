"""Benchmark of the Prometheus source (issue 3), against the real Prometheus.

    .venv/bin/python bench/bench_prometheus.py            # all three parts
    .venv/bin/python bench/bench_prometheus.py --only c   # one part

(a) ``pods/*/inference_latency_p95`` for 10, 100 and 1,000 pods answered from
    the snapshot, against the direct PromQL query for the same values on the
    same Prometheus (scraping the simulated fleet every second): time and ratio.
(b) PromQL queries per minute with 1, 100 and 1,000 simulated HPAs polling
    every 15 s (simulated minute on a fake clock, real backend calls counted).
(c) One refresh with 10,000 pods (a fake PrometheusAPI decoding a real-format
    JSON answer of 10,000 pods' buckets, byte for byte as Prometheus writes it):
    time and peak RSS, each decoder in a process of its own, one after the other:
    ``transport.decode`` (column-wise, what the transport does) and ``json``
    (how the transport decoded answers before: ``json.loads``, a PromSample per
    series). ``--decoder`` runs only one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapter.core.catalogue import Aggregation, MetricSpec
from adapter.core.model import (
    DEPLOYMENTS,
    PODS,
    MetricName,
    Namespace,
    ObjectRef,
    PodInfo,
    PodName,
    PodUID,
    Target,
)
from adapter.core.selectors import EVERYTHING, parse_selector
from adapter.demo.fleet import BUCKETS, FixedLoad, Fleet, SimulatedPod
from adapter.sources.prometheus import (
    LATENCY_P95_OPTIONS,
    QUEUE_DEPTH_OPTIONS,
    PrometheusClient,
    PrometheusSource,
    PromLabels,
    PromSample,
    TransportOptions,
    parse_rule,
)
from adapter.sources.prometheus.transport import PrometheusAPI, _vector, decode
from tests.support.prometheus_server import PrometheusServer

LATENCY = MetricName("inference_latency_p95")
SIZES = (10, 100, 1000)


def rules() -> list[Any]:
    def spec(name: str, options: Any, aggregate: Aggregation) -> MetricSpec:
        return MetricSpec(
            MetricName(name),
            "prometheus",
            (PODS, DEPLOYMENTS),
            aggregate=aggregate,
            options=options,
        )

    return [
        parse_rule(
            spec("inference_latency_p95", LATENCY_P95_OPTIONS, Aggregation.HISTOGRAM), PromLabels()
        ),
        parse_rule(
            spec("inference_queue_depth", QUEUE_DEPTH_OPTIONS, Aggregation.SUM), PromLabels()
        ),
    ]


def targets(namespace: str, count: int) -> list[Target]:
    out = []
    for i in range(count):
        pod = PodInfo(Namespace(namespace), PodName(f"p-{i}"), PodUID(f"{namespace}-{i}"))
        out.append(Target(ObjectRef(PODS, pod.name, pod.namespace), (pod,)))
    return out


class Counting:
    def __init__(self, inner: PrometheusAPI) -> None:
        self.inner = inner
        self.calls = 0

    async def query(self, expr: str, *, at: float | None = None) -> Sequence[PromSample]:
        self.calls += 1
        return await self.inner.query(expr, at=at)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.3f}"


async def part_a_b(prom: PrometheusServer) -> None:
    client = PrometheusClient(TransportOptions(url=prom.url, timeout=30))
    counting = Counting(client)
    source = PrometheusSource(counting, rules())
    await source.refresh_once()
    print("\n(a) pods/*/inference_latency_p95 from the snapshot vs the direct PromQL query")
    print(f"{'pods':>6} {'items':>6} {'fetch ms':>9} {'req/s':>9} {'PromQL ms':>10} {'ratio':>8}")
    for size in SIZES:
        ns = f"b{size}"
        wanted = targets(ns, size)
        n = max(20, 20_000 // size)
        got: Any = {}
        started = time.perf_counter()
        for _ in range(n):
            got = await source.fetch(LATENCY, wanted, EVERYTHING)
        fetch = (time.perf_counter() - started) / n
        expr = (
            "histogram_quantile(0.95, sum by (namespace, pod, le) "
            f'(rate(inference_duration_seconds_bucket{{namespace="{ns}"}}[2m])))'
        )
        durations = []
        for _ in range(10):
            t0 = time.perf_counter()
            await client.query(expr)
            durations.append(time.perf_counter() - t0)
        direct = statistics.median(durations)
        row = f"{size:>6} {len(got):>6} {ms(fetch)} {1 / fetch:>9.0f} {ms(direct):>10}"
        print(f"{row} {direct / fetch:>7.0f}x")

    print("\n(b) PromQL queries per minute, HPAs polling pods/* every 15 s (simulated minute)")
    header = f"{'HPAs':>6} {'polls':>6} {'queries/min':>12}"
    print(f"{header} {'with one shared selector':>25} {'one query per poll':>19}")
    for hpas in (1, 100, 1000):
        now = [time.time()]
        counted = Counting(client)
        sim = PrometheusSource(counted, rules(), clock=lambda now=now: now[0])
        selector = parse_selector("job=targets")
        wanted = targets("b10", 10)
        polls = 0
        selected_calls = 0
        start = now[0]
        # One refresh every 15 s; each HPA polls once per 15 s at its own offset.
        for tick in range(60 * 4):  # 0.25 s steps over one minute
            now[0] = start + tick * 0.25
            if tick % 60 == 0:
                await sim.refresh_once()
            for h in range(hpas):
                if (h * 60 // max(hpas, 1)) == tick % 60:
                    await sim.fetch(LATENCY, wanted, EVERYTHING)
                    before = counted.calls
                    await sim.fetch(LATENCY, wanted, selector)
                    selected_calls += counted.calls - before
                    polls += 1
        refreshes = counted.calls - selected_calls
        print(f"{hpas:>6} {polls:>6} {refreshes:>12} {refreshes + selected_calls:>25} {polls:>19}")
    client.close()


def part_c(decoder: str, pods: int = 10_000) -> None:
    les = [*(repr(b) for b in BUCKETS), "+Inf"]
    now = time.time()
    bucket_rows = [
        {
            "metric": {"namespace": "ml", "pod": f"p-{i}", "le": le},
            "value": [now, repr(float(j * 7 + i % 5))],
        }
        for i in range(pods)
        for j, le in enumerate(les)
    ]
    gauge_rows = [
        {
            "metric": {"namespace": "ml", "pod": f"p-{i}", "adapter_part": part},
            "value": [now, value],
        }
        for i in range(pods)
        for part, value in (("value", "3"), ("timestamp", repr(now - 1)))
    ]
    bodies = {
        name: json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": rows}},
            separators=(",", ":"),  # Prometheus' own layout
        ).encode()
        for name, rows in (("bucket", bucket_rows), ("gauge", gauge_rows))
    }
    del bucket_rows, gauge_rows

    class FakeAPI:
        async def query(self, expr: str, *, at: float | None = None) -> Sequence[PromSample]:
            # What the transport does with an HTTP answer's body.
            body = bodies["bucket" if "_bucket" in expr else "gauge"]
            if decoder == "json":
                return _vector(json.loads(body)["data"]["result"])
            return _vector(decode(body))

    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    source = PrometheusSource(FakeAPI(), rules())
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        asyncio.run(source.refresh_once())
        times.append(time.perf_counter() - t0)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    series = pods * len(les) + pods * 2
    deployment = Target(
        ObjectRef(DEPLOYMENTS, "web", Namespace("ml")),
        tuple(PodInfo(Namespace("ml"), PodName(f"p-{i}"), PodUID(str(i))) for i in range(pods)),
    )
    t0 = time.perf_counter()
    asyncio.run(source.fetch(LATENCY, [deployment], EVERYTHING))
    fleet = time.perf_counter() - t0
    print(f"\n(c) one refresh, {pods:,} pods ({series:,} series incl. decoding, 2 rules)")
    print(f"    decoder: {decoder}")
    runs = ", ".join(f"{t * 1000:.0f}" for t in times)
    print(f"    refresh: median {statistics.median(times) * 1000:.0f} ms (runs: {runs} ms)")
    before, after = rss_before / 1024, rss_after / 1024
    print(f"    peak RSS: {after:.0f} MiB (before the refreshes: {before:.0f} MiB)")
    print(f"    fleet p95 over all {pods:,} pods (one deployment): {fleet * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["ab", "c"])
    parser.add_argument("--decoder", choices=["columns", "json"], help="(c) with one decoder")
    args = parser.parse_args()
    if args.decoder:
        part_c(args.decoder)
        return
    if args.only in (None, "c"):
        for decoder in ("columns", "json"):  # a process each: peak RSS is per process
            subprocess.run([sys.executable, __file__, "--decoder", decoder], check=True)
    if args.only == "c":
        return
    pods = [
        SimulatedPod(f"b{size}", f"p-{i}", FixedLoad([0.03, 0.08, 0.25, 0.9], 2))
        for size in SIZES
        for i in range(size)
    ]
    fleet = Fleet(pods, pods_per_port=100, tick=1.0)
    with fleet.in_thread(), PrometheusServer(fleet.targets) as prom:
        prom.wait_for(
            'count(rate(inference_duration_seconds_count{namespace="b1000"}[2m]) > 0)',
            timeout=120,
            predicate=lambda r: bool(r) and float(r[0]["value"][1]) >= 1000,
        )
        asyncio.run(part_a_b(prom))


if __name__ == "__main__":
    main()
