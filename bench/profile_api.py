"""Where the time of one pods/* read goes, in process (no TLS, no aiohttp): cProfile.

    .venv/bin/python bench/profile_api.py [PODS]

Two paths are timed and profiled: a read whose state has not changed since the
last one (served from the read cache: a lookup, telemetry replayed), and the
uncached path that every read took before (and that the first read after a pod
event, snapshot swap or reload still takes): select, filter, look up, render.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).parent))
from api_server import StaticSource, make_pods

from adapter.api.handlers import render_metric_value_list
from adapter.api.telemetry import Telemetry
from adapter.core.request import MetricPath, parse_metric_path
from adapter.core.resolver import Resolver
from adapter.core.selectors import EVERYTHING, parse_selector
from adapter.kube.podsfile import PodsFileIndex
from adapter.rulesfile import build_catalogue

PODS = int(sys.argv[1]) if len(sys.argv) > 1 else 100
pods = make_pods(PODS)
catalogue = build_catalogue({}, "<profile>", {})
source = StaticSource(pods)
resolver = Resolver(
    lambda: catalogue,
    PodsFileIndex(pods),
    {"prometheus": source, "gpu": source},
    time.time,
    Telemetry(CollectorRegistry(), time.time),
)
parsed = parse_metric_path(
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/%2A/inference_latency_p95"
)
assert parsed is not None
path: MetricPath = parsed
selector = parse_selector("app=web")


async def cached() -> bytes:
    answer = await resolver.answer(path, selector, EVERYTHING)
    return answer.body("v1beta2", render_metric_value_list)


async def uncached() -> bytes:
    answer = await resolver.compute(catalogue, path, selector, EVERYTHING)
    return render_metric_value_list("v1beta2", answer.values)


async def loop(read: object, n: int) -> None:
    for _ in range(n):
        await read()  # type: ignore[operator]


for name, read, n in (("cached", cached, 5000), ("uncached", uncached, 300)):
    started = time.perf_counter()
    asyncio.run(loop(read, n))
    per_read = (time.perf_counter() - started) / n * 1000
    print(f"{PODS} pods, {name}: {per_read:.4f} ms per read (resolve + render + JSON)")
    profile = cProfile.Profile()
    profile.runcall(asyncio.run, loop(read, n))
    pstats.Stats(profile).sort_stats("tottime").print_stats(8)
