"""A server process for bench_api.py: the real adapter app, or a bare aiohttp baseline.

    python bench/api_server.py adapter PODS PORT CERT_DIR
    python bench/api_server.py bare PODS PORT CERT_DIR
    python bench/api_server.py adapter-prom PODS PORT CERT_DIR

``adapter`` serves pods/*/inference_latency_p95 through the full request path
(routing, selector parsing, resolver, pod index, in-memory source, Quantity
rendering, JSON, self metrics) with PODS matching pods. ``bare`` is a TLS
aiohttp handler returning the very bytes the adapter serves for that read, pre-built: the floor.
``adapter-prom`` is ``adapter`` with the real PrometheusSource, its snapshot filled
once from a fake PrometheusAPI (per-pod quantiles from bucket rates, as in production).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from adapter.api.handlers import render_metric_value_list
from adapter.api.tls import ServingTLS
from adapter.app import Parts, build_app
from adapter.core.catalogue import Catalogue
from adapter.core.model import (
    PODS,
    MetricName,
    MetricValue,
    Namespace,
    ObjectRef,
    OwnerRef,
    PodInfo,
    PodName,
    PodUID,
    Sample,
    Target,
)
from adapter.core.selectors import Selector
from adapter.kube.podsfile import PodsFileIndex
from adapter.rulesfile import build_catalogue
from adapter.sources.prometheus.catalogue import rules_of as prometheus_rules
from adapter.sources.prometheus.source import PrometheusSource
from adapter.sources.prometheus.transport import PromSample

NOW = time.time()


class StaticSource:
    """Every pod has a value; aggregation is a mean. Answers from a dict, like a snapshot.

    Its values never change or go stale: a ``VersionedSource`` at version 0, so the
    adapter's read cache applies as it does to the real sources.
    """

    name = "static"
    version = 0

    def valid_until(self, metric: MetricName, now: float) -> float:
        return float("inf")

    def __init__(self, pods: Sequence[PodInfo]) -> None:
        self._values = {
            (p.namespace, p.name): Sample(0.1 + i / 1000, NOW - 5, 120) for i, p in enumerate(pods)
        }

    async def fetch(
        self, metric: MetricName, targets: Sequence[Target], metric_selector: Selector
    ) -> Mapping[ObjectRef, Sample]:
        """Like a snapshot lookup: one dict get per pod, aggregation only for workloads."""
        result = {}
        values = self._values
        for target in targets:
            if len(target.pods) == 1:
                pod = target.pods[0]
                sample = values.get((pod.namespace, pod.name))
                if sample is not None:
                    result[target.obj] = sample
                continue
            samples = [s for p in target.pods if (s := values.get((p.namespace, p.name)))]
            if samples:
                result[target.obj] = Sample(
                    sum(s.value for s in samples) / len(samples), NOW - 5, 120
                )
        return result


async def prometheus_snapshot(pods: Sequence[PodInfo], catalogue: Catalogue) -> PrometheusSource:
    """The real PrometheusSource, its snapshot filled from bucket and gauge vectors for
    ``pods`` (a fake PrometheusAPI answers the two refresh queries)."""
    les = ["0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"]
    now = time.time()

    class FakeAPI:
        async def query(self, expr: str, *, at: float | None = None) -> Sequence[PromSample]:
            if "_bucket" in expr:
                return [
                    PromSample(
                        {"namespace": p.namespace, "pod": p.name, "le": le},
                        now,
                        float(j * 7 + i % 5),
                    )
                    for i, p in enumerate(pods)
                    for j, le in enumerate(les)
                ]
            return [
                PromSample(
                    {"namespace": p.namespace, "pod": p.name, "adapter_part": part}, now, value
                )
                for p in pods
                for part, value in (("value", 3.0), ("timestamp", now - 1))
            ]

    # Values never go stale here: the bench runs for minutes on one refresh.
    source = PrometheusSource(
        FakeAPI(), prometheus_rules(catalogue), registry=CollectorRegistry(), staleness=1e9
    )
    await source.refresh_once()
    return source


def make_pods(count: int) -> list[PodInfo]:
    owner = OwnerRef("apps/v1", "ReplicaSet", "web-7c9d5f6b8")
    pods = [
        PodInfo(
            Namespace("ml"),
            PodName(f"web-7c9d5f6b8-{i:05d}"),
            PodUID(f"uid-{i}"),
            labels={"app": "web", "pod-template-hash": "7c9d5f6b8"},
            ready_since=NOW - 3600,
            owner=owner,
        )
        for i in range(count)
    ]
    # Pods in the namespace that the selector must filter out.
    pods += [
        PodInfo(
            Namespace("ml"),
            PodName(f"other-{i}"),
            PodUID(f"o-{i}"),
            labels={"app": "other"},
            ready_since=NOW - 3600,
        )
        for i in range(count // 10)
    ]
    return pods


from adapter.app import tune_gc  # noqa: E402


async def main(mode: str, count: int, port: int, cert_dir: Path) -> None:
    tls = ServingTLS(cert_dir=cert_dir, hosts=("127.0.0.1",))
    pods = make_pods(count)
    if mode in ("adapter", "adapter-prom"):
        catalogue = build_catalogue({}, "<bench>", {})
        source: Any = (
            StaticSource(pods) if mode == "adapter" else await prometheus_snapshot(pods, catalogue)
        )
        app = build_app(
            Parts(
                catalogue=lambda: catalogue,
                pods=PodsFileIndex(pods),
                sources={"prometheus": source, "gpu": source},
                registry=CollectorRegistry(),
            )
        )
    else:
        # The bytes the adapter serves for the same read (same items, same encoder).
        body = render_metric_value_list(
            "v1beta2",
            [
                MetricValue(
                    ObjectRef(PODS, p.name, p.namespace),
                    MetricName("inference_latency_p95"),
                    Sample(0.1 + i / 1000, NOW - 5, 120),
                )
                for i, p in enumerate(pods[:count])
            ],
        )

        async def handler(_request: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls.context).start()
    if mode != "bare":
        tune_gc()  # as `serve` does
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])))
