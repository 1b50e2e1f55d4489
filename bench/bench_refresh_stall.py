"""How long a refresh at 10,000 pods holds the event loop, this tree against another.

    .venv/bin/python bench/bench_refresh_stall.py --baseline-src DIR [--pods 10000] [--rounds 5]

DIR is another tree (e.g. ``git archive <commit> | tar -x -C DIR``). Each tree runs
in a process of its own, alternating, ``--rounds`` times: a ``PrometheusSource``
with the built-in rules refreshes against recorded answers in Prometheus' own
layout (18 bucket series and one gauge series per pod; decoded in a worker
thread, as the transport does), while a task on the same loop wakes every
millisecond and records how late it woke. Reported per tree, medians over the
rounds: the refresh's wall time and the event loop's longest stall during it
(what every read, discovery request and health check waited at worst).
No network; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
BUCKETS = ("0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0")


def bodies(pods: int, now: float) -> dict[str, bytes]:
    """A bucket answer and a gauge answer laid out exactly as Prometheus writes them."""
    les = [*BUCKETS, *(f"{20 * 2**i}.0" for i in range(7)), "+Inf"]  # 18 buckets
    buckets = [
        {
            "metric": {"le": le, "namespace": f"n{i % 10}", "pod": f"p-{i}"},
            "value": [now, f"{j + i % 7}"],
        }
        for i in range(pods)
        for j, le in enumerate(les)
    ]
    gauges = [
        {"metric": {"namespace": f"n{i % 10}", "pod": f"p-{i}"}, "value": [now, str(i % 9)]}
        for i in range(pods)
    ]
    return {
        name: json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": rows}},
            separators=(",", ":"),
        ).encode()
        for name, rows in (("bucket", buckets), ("gauge", gauges))
    }


def child(pods: int) -> None:
    """One round in this process, with ``adapter`` from sys.path[0]; prints JSON."""
    from adapter.rulesfile import build_catalogue  # noqa: PLC0415  (the tree under test)
    from adapter.sources.prometheus import PrometheusSource, transport  # noqa: PLC0415
    from adapter.sources.prometheus.catalogue import rules_of  # noqa: PLC0415

    answers = bodies(pods, time.time())
    rules = [
        rule
        for rule in rules_of(build_catalogue({}, "<bench>", {}))
        if str(rule.metric) in ("inference_latency_p95", "inference_queue_depth")
    ]

    class RecordedAPI:
        async def query(self, expr: str, *, at: float | None = None) -> Sequence[Any]:
            if "inference_duration_seconds_bucket" in expr:
                body = answers["bucket"]
            elif "inference_queue_depth" in expr and "namespace" in expr:
                body = answers["gauge"]
            else:
                body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
            # As the transport does: the body decoded in a worker thread.
            return await asyncio.to_thread(lambda: transport._vector(transport.decode(body)))

    async def one() -> tuple[float, float]:
        source = PrometheusSource(RecordedAPI(), rules)
        stall = 0.0
        running = True

        async def ticker() -> None:
            nonlocal stall
            while running:
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                stall = max(stall, time.perf_counter() - before - 0.001)

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        await source.refresh_once()
        wall = time.perf_counter() - started
        running = False
        await tick
        assert source.snapshot, "the refresh built nothing"
        return wall, stall

    import adapter  # noqa: PLC0415

    wall, stall = asyncio.run(one())
    print(json.dumps({"wall": wall, "stall": stall, "adapter": adapter.__file__}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline-src", type=Path, required=True)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        sys.path.insert(0, str(args.child))
        child(args.pods)
        return
    trees = {"this tree": HERE, "baseline": args.baseline_src.resolve()}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--baseline-src",
                    ".",
                    "--pods",
                    str(args.pods),
                    "--child",
                    str(tree),
                ],
                check=True,
                capture_output=True,
                text=True,
                timeout=600,
                cwd=tree,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            assert result["adapter"].startswith(str(tree)), (result["adapter"], tree)
            results[name].append(result)
    print(f"one refresh of p95 + queue depth, {args.pods:,} pods, medians of {args.rounds}:")
    for name, runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        stall = statistics.median(r["stall"] for r in runs)
        print(
            f"  {name:10} ({trees[name]}): refresh {wall * 1000:.0f} ms, "
            f"longest event-loop stall {stall * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
