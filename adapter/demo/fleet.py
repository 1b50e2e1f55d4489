"""A simulated GPU inference fleet: Prometheus exporters with synthetic load.

**Everything here is simulated.** Each pod exports what a real inference
server would, labelled with its own ``namespace`` and ``pod`` (what Kubernetes
service discovery would add):

- ``inference_duration_seconds`` histogram, buckets for 10 ms to 10 s;
- ``inference_queue_depth`` gauge;
- ``inference_fleet_info{simulated="true"} 1``, so no one mistakes it for data.

Load is a pure function of the seed, the pod and the tick number, so a run is
reproducible: :class:`WaveLoad` (the demo: request rate and latency follow a
slow wave per pod, queue depth follows load) or :class:`FixedLoad` (tests: the
same exact observations every tick, so the quantiles are known).

Command line (serves until interrupted, prints each pod's scrape address)::

    python -m adapter.demo.fleet --pods ml/web-0,ml/web-1 --port-base 9500
    python -m adapter.demo.fleet --generate ml/web:100 --pods-per-port 50 --port-base 9500

In-process (tests, benchmarks)::

    fleet = Fleet([SimulatedPod("ml", "a", FixedLoad([0.05] * 9 + [2.0], 3))])
    async with fleet:           # or: with fleet.in_thread():
        fleet.targets           # ["127.0.0.1:PORT"]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import random
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = [
    "BUCKETS",
    "FixedLoad",
    "Fleet",
    "Load",
    "SimulatedPod",
    "WaveLoad",
    "main",
]

log = logging.getLogger(__name__)

BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0,
)  # fmt: skip
SIMULATED_BANNER: Final = (
    "SIMULATED inference fleet: every metric it exports is synthetic, not a real workload"
)


class Load(Protocol):
    """What a pod does during one tick: the observations and the queue depth."""

    def tick(self, pod: SimulatedPod, n: int, seconds: float) -> tuple[Sequence[float], float]: ...


@dataclass(frozen=True, slots=True)
class FixedLoad:
    """The same observations and queue depth every tick (tests: known quantiles)."""

    observations: Sequence[float]
    queue_depth: float = 0.0

    def tick(self, pod: SimulatedPod, n: int, seconds: float) -> tuple[Sequence[float], float]:
        return self.observations, self.queue_depth


@dataclass(frozen=True, slots=True)
class WaveLoad:
    """Demo load: request rate and latency follow a slow wave, phase-shifted per pod.

    Latencies are log-normal around a median that grows with load; the queue
    depth is load times latency (Little's law) with a little noise.
    """

    seed: int = 0
    rps: float = 20.0
    period_seconds: float = 300.0
    median_seconds: float = 0.12

    def tick(self, pod: SimulatedPod, n: int, seconds: float) -> tuple[Sequence[float], float]:
        rng = random.Random(f"{self.seed}/{pod.namespace}/{pod.name}/{n}")  # noqa: S311
        phase = random.Random(f"{self.seed}/{pod.namespace}/{pod.name}").random() * 2 * math.pi  # noqa: S311
        load = 1.0 + 0.7 * math.sin(2 * math.pi * n * seconds / self.period_seconds + phase)
        median = self.median_seconds * (0.6 + load)
        count = max(0, round(self.rps * load * seconds + rng.uniform(-0.5, 0.5)))
        observations = [min(30.0, rng.lognormvariate(math.log(median), 0.6)) for _ in range(count)]
        queue = max(0.0, round(self.rps * load * median * 2 + rng.gauss(0, 1)))
        return observations, queue


class _Exporter:
    """One scrape endpoint: a registry holding the series of one or more pods."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "inference_duration_seconds",
            "Time to serve one inference request (SIMULATED).",
            ["namespace", "pod"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge(
            "inference_queue_depth",
            "Requests waiting for the model (SIMULATED).",
            ["namespace", "pod"],
            registry=self.registry,
        )
        Info("inference_fleet", "This fleet is simulated.", registry=self.registry).info(
            {"simulated": "true"}
        )

    async def handle(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@dataclass(eq=False)
class SimulatedPod:
    """One simulated pod. With ``load=None`` it only changes when told to."""

    namespace: str
    name: str
    load: Load | None = None
    _exporter: _Exporter | None = field(default=None, init=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def _attach(self, exporter: _Exporter) -> None:
        self._exporter = exporter
        exporter.latency.labels(self.namespace, self.name)  # exported from the start, at 0
        exporter.queue.labels(self.namespace, self.name)

    def observe(self, *seconds: float) -> None:
        exporter = self._require()
        child = exporter.latency.labels(self.namespace, self.name)
        for value in seconds:
            child.observe(value)

    def set_queue_depth(self, depth: float) -> None:
        self._require().queue.labels(self.namespace, self.name).set(depth)

    def step(self, n: int, seconds: float) -> None:
        if self.load is None:
            return
        observations, depth = self.load.tick(self, n, seconds)
        self.observe(*observations)
        self.set_queue_depth(depth)

    def _require(self) -> _Exporter:
        if self._exporter is None:
            raise RuntimeError("the pod is not part of a started Fleet")
        return self._exporter


class Fleet:
    """Serves simulated pods over HTTP on ``host``; one port per ``pods_per_port`` pods.

    ``port_base=0`` picks free ports. Every ``tick`` seconds each pod's load
    runs one step (tick numbers, not wall time, drive the load: reproducible).
    """

    def __init__(
        self,
        pods: Sequence[SimulatedPod],
        *,
        host: str = "127.0.0.1",
        port_base: int = 0,
        pods_per_port: int = 1,
        tick: float = 0.5,
    ) -> None:
        if pods_per_port < 1:
            raise ValueError("pods_per_port must be at least 1")
        self.pods = list(pods)
        self.host = host
        self.tick = tick
        self._port_base = port_base
        self._groups = [
            self.pods[i : i + pods_per_port] for i in range(0, len(self.pods), pods_per_port)
        ]
        self._runners: list[web.AppRunner] = []
        self._ticker: asyncio.Task[None] | None = None
        self.ports: list[int] = []
        self.port_of: dict[str, int] = {}

    @property
    def targets(self) -> list[str]:
        """``host:port`` of every endpoint, for a scrape config."""
        return [f"{self.host}:{port}" for port in self.ports]

    async def start(self) -> None:
        log.warning(SIMULATED_BANNER)
        for index, group in enumerate(self._groups):
            exporter = _Exporter()
            for pod in group:
                pod._attach(exporter)
            app = web.Application()
            app.router.add_get("/metrics", exporter.handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            port = self._port_base + index if self._port_base else 0
            site = web.TCPSite(runner, self.host, port)
            await site.start()
            self._runners.append(runner)
            bound = runner.addresses[-1][1]
            self.ports.append(bound)
            self.port_of.update({pod.key: bound for pod in group})
        self._ticker = asyncio.create_task(self._run_ticks(), name="fleet-ticks")

    async def _run_ticks(self) -> None:
        n = 0
        while True:
            for pod in self.pods:
                pod.step(n, self.tick)
            n += 1
            await asyncio.sleep(self.tick)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[Fleet]:
        """Serve from a thread with its own event loop (for synchronous fixtures)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(
            target=_serve_in_thread, args=(loop, self, ready), name="fleet", daemon=True
        )
        thread.start()
        ready.wait(30)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            loop.close()


def _serve_in_thread(loop: asyncio.AbstractEventLoop, fleet: Fleet, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.run_until_complete(fleet.start())
    ready.set()
    loop.run_forever()


def parse_pods(pods: str, generate: Sequence[str]) -> list[tuple[str, str]]:
    """``ml/web-0,ml/web-1`` plus ``ml/web:3`` (web-0..web-2) as (namespace, name)."""
    found: list[tuple[str, str]] = []
    for item in filter(None, (p.strip() for p in pods.split(","))):
        namespace, slash, name = item.partition("/")
        if not slash or not namespace or not name:
            raise ValueError(f"{item!r}: expected namespace/name")
        found.append((namespace, name))
    for item in generate:
        prefix, colon, count = item.rpartition(":")
        namespace, slash, name = prefix.partition("/")
        if not colon or not slash or not count.isdigit():
            raise ValueError(f"{item!r}: expected namespace/prefix:count")
        found.extend((namespace, f"{name}-{i}") for i in range(int(count)))
    if not found:
        raise ValueError("no pods given")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adapter.demo.fleet", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--pods", default="", help="namespace/name,... (e.g. ml/web-0,ml/web-1)")
    parser.add_argument("--generate", action="append", default=[], help="namespace/prefix:count")
    parser.add_argument("--port-base", type=int, default=9500, help="first port (0: any free)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--pods-per-port", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tick", type=float, default=0.5, help="seconds between load steps")
    parser.add_argument("--rps", type=float, default=20.0, help="mean requests/s per pod")
    args = parser.parse_args(argv)
    try:
        named = parse_pods(args.pods, args.generate)
    except ValueError as e:
        parser.error(str(e))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    load = WaveLoad(seed=args.seed, rps=args.rps)
    fleet = Fleet(
        [SimulatedPod(ns, name, load) for ns, name in named],
        host=args.host,
        port_base=args.port_base,
        pods_per_port=args.pods_per_port,
        tick=args.tick,
    )
    asyncio.run(_serve(fleet))
    return 0


async def _serve(fleet: Fleet) -> None:
    await fleet.start()
    for pod in fleet.pods:
        print(f"{pod.key} http://{fleet.host}:{fleet.port_of[pod.key]}/metrics (simulated)")
    print(f"targets: {','.join(fleet.targets)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await fleet.stop()


if __name__ == "__main__":
    sys.exit(main())
