"""The adapter's GPU source pulling 1,000 simulated collectors: one round's time and CPU, freshness.

A child process serves 1,000 simulated collectors from one aiohttp app listening on 1,000
loopback ports (127.0.0.1 only), each with 8 GPUs and 8 pods, ``"simulated": true`` and
``sampledAt`` = now. The adapter side (this process) runs the real ``GpuSource`` over a
``StaticDiscovery`` of the 1,000 URLs and measures:

- one ``refresh_once``: wall time and this process's CPU time (``time.process_time``), cold
  (new connections) and warm (keep-alive connections reused), over several rounds;
- end-to-end freshness: with ``run()`` pulling every ``--interval`` seconds, a collector's
  utilization is changed through the child's control port at a random moment, and ``fetch`` is
  polled every 5 ms until it returns the new value. Bound (issue 5): about two intervals.

    .venv/bin/python bench/bench_gpu_pull.py [--collectors 1000] [--rounds 5] [--interval 5]
        [--trials 6] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapter.core.model import MetricName, Target
from adapter.core.selectors import EVERYTHING
from adapter.sources.gpu import GpuSource, StaticDiscovery
from tests.sources.gpu.helpers import pod, pod_target

ROOT = Path(__file__).resolve().parents[1]

PODS_PER_NODE = 8
GPUS_PER_NODE = 8


# --- the child: 1,000 collectors in one process ---------------------------------------------------


async def serve(count: int) -> None:
    by_port: dict[int, int] = {}
    utilization: dict[int, float] = {}

    def document(k: int) -> dict[str, object]:
        now = time.time()
        base = utilization.get(k, float(k % 100))
        pods = [
            {"namespace": "ml", "pod": f"node{k}-pod{i}", "uid": f"uid-{k}-{i}",
             "utilization": base if i == 0 else float((k + i) % 100), "memoryUsedBytes": 1 << 30,
             "gpus": [f"GPU-{k}-{i}"], "samples": 10, "sampleTime": now}
            for i in range(PODS_PER_NODE)
        ]  # fmt: skip
        gpus = [
            {"index": i, "uuid": f"GPU-{k}-{i}", "name": "NVIDIA H100 80GB HBM3", "mig": False,
             "parentUuid": None, "migIndex": None, "status": "ok",
             "utilization": float((k + i) % 100), "samples": 10,
             "memoryUsedBytes": 1 << 30, "memoryTotalBytes": 80 << 30}
            for i in range(GPUS_PER_NODE)
        ]  # fmt: skip
        return {"node": f"sim-node-{k}", "simulated": True, "ready": True, "sampledAt": now,
                "windowSeconds": 10, "intervalSeconds": 1, "pods": pods, "gpus": gpus}  # fmt: skip

    async def snapshot(request: web.Request) -> web.Response:
        assert request.transport is not None  # a request being answered has its connection
        k = by_port[int(request.transport.get_extra_info("sockname")[1])]
        return web.json_response(document(k))

    async def control(request: web.Request) -> web.Response:
        utilization[int(request.query["node"])] = float(request.query["util"])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/snapshot", snapshot)
    app.router.add_post("/control", control)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ports = []
    for k in range(count + 1):  # the last one is the control port
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=256)
        await site.start()
        port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        by_port[port] = k
        ports.append(port)
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()


# --- the adapter side ----------------------------------------------------------------------------


async def measure(args: argparse.Namespace, ports: list[int]) -> dict[str, object]:
    # One "serves SIMULATED data" warning per node is right in a cluster, noise for 1,000 here.
    logging.getLogger("adapter.sources.gpu").setLevel(logging.ERROR)
    collectors, control = ports[:-1], ports[-1]
    urls = [f"http://127.0.0.1:{p}" for p in collectors]
    source = GpuSource(
        StaticDiscovery(urls), pull_interval=args.interval, timeout=args.timeout,
        concurrency=args.concurrency,
    )  # fmt: skip
    metric = MetricName("gpu_utilization")

    def target(k: int) -> Target:
        return pod_target(pod(f"node{k}-pod0", uid=f"uid-{k}-0"))  # the child's pod 0 of node k

    rounds = []
    for _ in range(args.rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        await source.refresh_once()
        rounds.append((time.perf_counter() - wall, time.process_time() - cpu))
    answering = len(source.store.nodes)
    pods = len(source.store.pods)

    every_pod = [target(k) for k in range(len(collectors))]
    started = time.perf_counter()
    served = await source.fetch(metric, every_pod, EVERYTHING)
    fetch_all_s = time.perf_counter() - started

    freshness = []
    task = asyncio.create_task(source.run())
    async with aiohttp.ClientSession() as session:
        for trial in range(args.trials):
            await asyncio.sleep(random.uniform(0, args.interval))  # a random phase
            k = random.randrange(len(collectors))
            value = 100.0 - trial  # a value no pod0 has had in this process
            url = f"http://127.0.0.1:{control}/control?node={k}&util={value}"
            changed = time.perf_counter()
            async with session.post(url) as resp:
                resp.raise_for_status()
            while True:
                got = await source.fetch(metric, [target(k)], EVERYTHING)
                if next(iter(got.values())).value == value:
                    break
                await asyncio.sleep(0.005)
            freshness.append(time.perf_counter() - changed)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await source.close()

    walls = [w for w, _ in rounds]
    cpus = [c for _, c in rounds]
    return {
        "collectors": len(collectors),
        "answering": answering,
        "pods_with_values": pods,
        "concurrency": args.concurrency,
        "interval_s": args.interval,
        "refresh_once_cold": {"wall_s": round(walls[0], 3), "cpu_s": round(cpus[0], 3)},
        "refresh_once_warm": {
            "wall_s_median": round(statistics.median(walls[1:]), 3),
            "wall_s_max": round(max(walls[1:]), 3),
            "cpu_s_median": round(statistics.median(cpus[1:]), 3),
        },
        "fetch_1000_pods_ms": round(fetch_all_s * 1000, 2),
        "fetch_1000_pods_served": len(served),
        "freshness_s": [round(f, 3) for f in freshness],
        "freshness_s_max": round(max(freshness), 3),
        "freshness_bound_s": 2 * args.interval,
        "cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--collectors", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return 0
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(args.collectors)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        ports = json.loads(child.stdout.readline())
        result = asyncio.run(measure(args, ports))
    finally:
        child.terminate()
        child.wait(timeout=10)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
