"""Where one refresh's time goes at 10,000 pods, against the real Prometheus.

    .venv/bin/python bench/profile_refresh.py [--layout 10x1000] [--rounds 3]

The fleet and Prometheus of ``bench_read_vs_promql.py`` (same layout syntax),
then, for the largest answer of the built-in metrics (the latency histogram's
``generic`` family, 18 bucket series per pod), median of ``--rounds``:

- the HTTP exchange alone (the body in hand, not decoded), with the answer
  gzip-compressed (what clients ask for by default) and uncompressed;
- decoding: the column decoder, and ``json`` plus a PromSample per series
  (how the transport decoded before);
- the snapshot build from each;

then a cProfile of what one refresh of every built-in rule does (each query,
decoding and build, one after the other on this thread: the transport decodes in
worker threads, which cProfile does not see), top functions by own time.
Loopback only; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_read_vs_promql import parse_layout  # bench/ is sys.path[0] when run as a script

from adapter.rulesfile import build_catalogue
from adapter.sources.prometheus import (
    FamilyRule,
    PrometheusClient,
    TransportOptions,
    snapshot,
    transport,
)
from adapter.sources.prometheus.catalogue import rules_of as prometheus_rules
from tests.support.prometheus_server import PrometheusServer


def median_of(rounds: int, call: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layout", default="10x1000")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    total = sum(size for _, size in parse_layout(args.layout))
    fleet = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("bench_read_vs_promql.py")),
            "fleet",
            args.layout,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert fleet.stdout is not None
        targets = json.loads(fleet.stdout.readline())
        with PrometheusServer(targets, scrape_interval="5s") as prom:
            prom.wait_for(
                "count(rate(inference_duration_seconds_count[2m]) > 0)",
                timeout=600,
                predicate=lambda r: bool(r) and float(r[0]["value"][1]) >= total,
            )
            measure(prom.url, args.rounds, total)
    finally:
        fleet.terminate()
        fleet.wait(20)


def measure(url: str, rounds: int, total: int) -> None:
    rules = prometheus_rules(build_catalogue({}, "<bench>", {}))
    latency = next(rule for rule in rules if rule.metric == "inference_latency_p95")
    assert isinstance(latency, FamilyRule)
    family = len(latency.families) - 1
    expr = dict(latency.queries())["generic"]
    session = requests.Session()
    session.trust_env = False

    def get(encoding: str) -> bytes:
        response = session.get(
            f"{url}/api/v1/query", params={"query": expr}, headers={"Accept-Encoding": encoding}
        )
        response.raise_for_status()
        return response.content

    print(f"\n{total:,} pods; the largest answer: {expr}")
    for encoding in ("gzip, deflate", "identity"):
        wall, body = median_of(rounds, functools.partial(get, encoding))
        print(f"  HTTP exchange, Accept-Encoding {encoding!r}: {wall * 1000:7.0f} ms")
    series = body.count(b'{"metric"')
    print(f"  answer: {len(body) / 1e6:.1f} MB, {series:,} series")
    decoded = {}
    for name, decoder in (
        ("columns", lambda: transport._vector(transport.decode(body))),
        ("json + PromSample", lambda: transport._vector(json.loads(body)["data"]["result"])),
    ):
        wall, decoded[name] = median_of(rounds, decoder)
        print(f"  decode, {name:18}: {wall * 1000:7.0f} ms")
    for name, vector in decoded.items():
        vectors = [vector if i == family else [] for i in range(len(latency.families))]
        wall, _ = median_of(
            rounds, functools.partial(snapshot.build_families, latency, vectors, time.time(), 45.0)
        )
        print(f"  build from {name:18}: {wall * 1000:7.0f} ms")
    del decoded

    # The transport decodes in its worker threads, which cProfile does not see: here
    # each query of every rule runs on this thread, one after the other.
    client = PrometheusClient(TransportOptions(url=url, timeout=60))
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    for rule in rules:
        assert isinstance(rule, FamilyRule)
        vectors = [transport._vector(client._get(q, {})) for _, q in rule.queries()]
        snapshot.build_families(rule, vectors, time.time(), 45.0)
    profile.disable()
    wall = time.perf_counter() - started
    print(f"\n  every built-in rule, queries one after the other (profiled): {wall:.2f} s")
    pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    client.close()


if __name__ == "__main__":
    main()
