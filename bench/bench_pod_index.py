"""Memory per pod in the pod index, and a read over it: 10,000 and 50,000 pods.

    .venv/bin/python bench/bench_pod_index.py [--pods 10000,50000]

Each size runs in a fresh process: the real ``PodIndex`` lists the pods page
by page (500 a page, as from the API server) from realistic Pod objects (eight
labels, an owner, conditions), the pages are dropped, and the process's RSS is
read before and after. Also timed: a 1,000-pod namespace read through the
resolver, uncached and cached.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry

from adapter.api.handlers import render_metric_value_list
from adapter.api.telemetry import Telemetry
from adapter.app import tune_gc
from adapter.core.model import Sample
from adapter.core.request import parse_metric_path
from adapter.core.resolver import Resolver
from adapter.core.selectors import EVERYTHING, parse_selector
from adapter.kube.podindex import PodIndex
from adapter.rulesfile import build_catalogue

PAGE = 500


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def pod_object(i: int) -> dict[str, Any]:
    ns = f"team-{i // 1000}"
    app = f"llm-{(i // 50) % 20}"
    template = f"{(i // 50) % 20:04d}5f6d7c"
    return {
        "metadata": {
            "name": f"{app}-{template}-{i:06d}",
            "namespace": ns,
            "uid": f"6f1d2c3b-{i:04x}-4000-8000-{i:012d}",
            "resourceVersion": str(1000 + i),
            "labels": {
                "app": app,
                "app.kubernetes.io/name": app,
                "app.kubernetes.io/instance": f"{app}-prod",
                "app.kubernetes.io/component": "inference",
                "app.kubernetes.io/part-of": "llm-platform",
                "pod-template-hash": template,
                "model": "llama-3-70b",
                "tier": "gpu",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{app}-{template}",
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": f"gpu-node-{i % 500}"},
        "status": {
            "phase": "Running",
            "podIP": f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}",
            "startTime": "2026-11-01T10:00:00Z",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-01T10:01:00Z"}
            ],
        },
    }


class PagedAPI:
    """List pages built on demand, so only one page of JSON is alive at a time."""

    def __init__(self, count: int) -> None:
        self.count = count

    async def list(self, *, continue_token: str | None, **_: Any) -> dict[str, Any]:
        start = int(continue_token or 0)
        end = min(self.count, start + PAGE)
        meta = {"resourceVersion": "99999"}
        if end < self.count:
            meta["continue"] = str(end)
        return {"metadata": meta, "items": [pod_object(i) for i in range(start, end)]}

    def watch(self, **_: Any) -> Any:
        raise NotImplementedError


def one_size(count: int) -> None:
    class Everyone:
        """Every pod has a value, forever (a VersionedSource at version 0)."""

        name = "static"
        version = 0

        def valid_until(self, metric: Any, now: float) -> float:
            return float("inf")

        async def fetch(self, metric: Any, targets: Any, selector: Any) -> Any:
            return {t.obj: Sample(0.25, 1.8e9, 120) for t in targets}

    gc.collect()
    before = rss_mib()
    index = PodIndex(PagedAPI(count))
    started = time.perf_counter()
    asyncio.run(index.list_once())
    listed = time.perf_counter() - started
    gc.collect()
    tune_gc()
    after = rss_mib()
    catalogue = build_catalogue({}, "<bench>", {})
    resolver = Resolver(
        lambda: catalogue,
        index,
        {"prometheus": Everyone(), "gpu": Everyone()},
        time.time,
        Telemetry(CollectorRegistry(), time.time),
    )
    path = parse_metric_path(
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/team-1/pods/*/inference_latency_p95"
    )
    assert path is not None
    selector = parse_selector("tier=gpu")

    async def reads() -> tuple[float, float, int]:
        t0 = time.perf_counter()
        for _ in range(20):
            answer = await resolver.compute(catalogue, path, selector, EVERYTHING)
            render_metric_value_list("v1beta2", answer.values)
        cold = (time.perf_counter() - t0) / 20
        t0 = time.perf_counter()
        for _ in range(2000):
            answer = await resolver.answer(path, selector, EVERYTHING)
            answer.body("v1beta2", render_metric_value_list)
        return cold, (time.perf_counter() - t0) / 2000, len(answer.values)

    cold, cached, items = asyncio.run(reads())
    per_pod = (after - before) * 1024 * 1024 / count
    print(
        f"{count:>7,} pods: RSS {after:6.0f} MiB (index {after - before:5.1f} MiB,"
        f" {per_pod:5.0f} B/pod), list {listed:5.2f} s;"
        f" read of {items:,} pods: uncached {cold * 1000:6.2f} ms, cached {cached * 1000:6.3f} ms"
    )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "one":
        one_size(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", default="10000,50000")
    args = parser.parse_args()
    for count in args.pods.split(","):
        subprocess.run([sys.executable, __file__, "one", count], check=True)


if __name__ == "__main__":
    main()
