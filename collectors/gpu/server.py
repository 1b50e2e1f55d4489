"""The collector's HTTP edge (aiohttp): ``/metrics``, ``/snapshot``, ``/healthz``, ``/readyz``.

``GET /snapshot`` — the adapter's input. 200 once a complete tick has run; 503 before (same body,
``"ready": false``) and while NVML is unavailable in not-ready mode (``{"error": …}``)::

    {
      "node": "gpu-node-1",
      "simulated": false,            # true only under --simulate
      "ready": true,
      "sampledAt": 1763800000.5,     # Unix seconds of the last tick
      "windowSeconds": 10,
      "intervalSeconds": 1,
      "pods": [                      # pods with >= 1 valid sample in the window; others absent
        {"namespace": "ml", "pod": "web-1",
         "uid": "6f1c…" | null,      # null when nothing on the node revealed it
         "utilization": 73.25,       # percent, window mean, mean over the pod's GPUs/MIG devices
         "memoryUsedBytes": 123 | null,
         "gpus": ["GPU-…", "MIG-…"], # devices the value is from
         "samples": 10,              # ticks in the window with a value
         "sampleTime": 1763800000.5} # Unix seconds of the newest of them
      ],
      "gpus": [                      # full GPUs ("mig": false) and MIG devices ("mig": true)
        {"index": 0, "uuid": "GPU-…", "name": "NVIDIA H100 80GB HBM3", "mig": false,
         "parentUuid": null, "migIndex": null,          # set on MIG devices
         "status": "ok" | "unsupported" | "lost" | "error",
         "utilization": 73.25 | null,                   # null unless status is ok: never 0
         "samples": 10,
         "memoryUsedBytes": 1 | null, "memoryTotalBytes": 2 | null}
      ]
    }

``/readyz`` is 200 after the first complete tick; ``/healthz`` is 200 while the process serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from collectors.gpu.exporter import GpuCollector
from collectors.gpu.sampler import Sampler, Snapshot
from collectors.gpu.wire import render_snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CollectorState:
    """What the edge serves: a sampler, or the reason there is none (NVML unavailable)."""

    node: str
    simulated: bool
    sampler: Sampler | None
    unavailable_reason: str | None = None

    def snapshot(self) -> Snapshot | None:
        return self.sampler.snapshot() if self.sampler is not None else None


STATE = web.AppKey("state", CollectorState)
REGISTRY = web.AppKey("registry", CollectorRegistry)


async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(generate_latest, request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def snapshot(request: web.Request) -> web.Response:
    state = request.app[STATE]
    current = state.snapshot()
    if current is None:
        return web.json_response({"error": state.unavailable_reason}, status=503)
    return web.json_response(render_snapshot(current), status=200 if current.ready else 503)


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.sampler is None:
        return web.Response(text=f"not ready: {state.unavailable_reason}\n", status=503)
    if not state.sampler.ready:
        return web.Response(text="not ready: no complete sample yet\n", status=503)
    return web.Response(text="ok\n")


def build_app(state: CollectorState, *, run_sampler: bool = True) -> web.Application:
    """The app; ``run_sampler=False`` leaves ticking to the caller (tests call ``sample_once``)."""
    app = web.Application()
    app[STATE] = state
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GpuCollector(state.node, state.simulated, state.snapshot))
    app[REGISTRY] = registry
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/snapshot", snapshot)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if run_sampler and state.sampler is not None:
        app.cleanup_ctx.append(_sampling(state.sampler))
    return app


def _sampling(sampler: Sampler) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(sampler.run(), name="gpu-collector-sampler")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (``await runner.cleanup()`` stops) and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    addresses = runner.addresses
    return runner, int(addresses[0][1]) if addresses else port
