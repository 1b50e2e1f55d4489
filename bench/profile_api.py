"""Where the time of one pods/* read goes, in process (no TLS, no aiohttp): cProfile.

.venv/bin/python bench/profile_api.py [PODS]
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).parent))
from api_server import StaticSource, make_pods

from adapter.api import wire
from adapter.api.telemetry import Telemetry
from adapter.config import build_catalogue
from adapter.core.request import parse_metric_path
from adapter.core.resolver import Resolver
from adapter.core.selectors import EVERYTHING, parse_selector
from adapter.kube.pods import PodsFileIndex

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
path = parse_metric_path(
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/%2A/inference_latency_p95"
)
assert path is not None


async def read() -> bytes:
    values = await resolver.resolve(path, parse_selector("app=web"), EVERYTHING)
    return orjson.dumps(wire.metric_value_list("v1beta2", values))


async def loop(n: int) -> None:
    for _ in range(n):
        await read()


started = time.perf_counter()
asyncio.run(loop(500))
print(
    f"{PODS} pods: {(time.perf_counter() - started) / 500 * 1000:.3f} ms per read (resolve + render + JSON)"
)
profile = cProfile.Profile()
profile.runcall(asyncio.run, loop(300))
pstats.Stats(profile).sort_stats("tottime").print_stats(12)
