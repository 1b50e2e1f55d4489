"""Soak: the whole stack under steady load, Prometheus restarted on a schedule.

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 200] [--restart-every 5]

Runs the fault suite's stack (tests/faults/stack.py: real Prometheus, a
simulated fleet and gpu-collector, the fake Kubernetes API, the adapter
process in cluster mode) on 127.0.0.1 and sends ``--rate`` authenticated
requests a second for ``--minutes``: a mix of the three metric reads, reads
with a metricLabelSelector, discovery and /readyz. Every ``--restart-every``
minutes Prometheus is killed and started again. Not run in CI.

Reports, per minute and at the end: requests by status, the adapter's RSS
(``/proc/<pid>/status``), and any value served as 0 or other than exported
(there must be none). The expected errors are 503 for selector reads while
Prometheus is down; anything else is reported as unexpected. RSS growth is
measured from the end of the first minute (warm) to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.faults.stack import (  # noqa: E402
    GPU,
    LATENCY,
    QUEUE,
    G,
    Reader,
    Stack,
    _percent,
    _positive,
    _quantity,
    _queue_ok,
    running_stack,
)

SELECTOR = f"{QUEUE}&metricLabelSelector=job%3Dtargets"
MIX = [
    (QUEUE, _queue_ok),
    (LATENCY, _positive),
    (GPU, _percent),
    (QUEUE, _queue_ok),
    (SELECTOR, _queue_ok),
    (G, None),
    ("/readyz", None),
    (LATENCY, _positive),
]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def soak(stack: Stack, minutes: float, rate: float, restart_every: float) -> int:
    reader = Reader(stack)
    await reader.healthy()
    statuses: Counter[str] = Counter()
    unexpected: Counter[str] = Counter()
    false_values: list[str] = []
    prometheus_down = False
    started = time.monotonic()
    end = started + minutes * 60
    next_restart = started + restart_every * 60
    rss: list[tuple[float, float]] = [(0.0, rss_mib(stack.adapter.pid))]
    inflight: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        path, check = MIX[i % len(MIX)]
        try:
            status, body = await reader.get(path)
        except Exception as e:
            unexpected[f"exception {type(e).__name__}"] += 1
            return
        statuses[str(status)] += 1
        if status == 503 and path == SELECTOR:
            return  # documented: selector reads fail fast while Prometheus is down
        if status != 200:
            unexpected[f"{status} {path[:60]}"] += 1
            return
        if check is not None:
            for item in body["items"]:
                if not check(_quantity(item["value"])):
                    false_values.append(
                        f"{path}: {item['describedObject']['name']} {item['value']}"
                    )

    async def restart() -> None:
        nonlocal prometheus_down
        process = stack.prometheus._process
        assert process is not None
        prometheus_down = True
        process.kill()
        await asyncio.to_thread(process.wait, 30)
        await asyncio.sleep(5)
        await asyncio.to_thread(stack.prometheus.start)
        prometheus_down = False
        print(f"  prometheus restarted at {time.monotonic() - started:.0f}s", flush=True)

    restarts: list[asyncio.Task[None]] = []
    i = 0
    next_report = started + 60
    interval = 1.0 / rate
    tick = started
    while time.monotonic() < end:
        tick += interval
        delay = tick - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        i += 1
        now = time.monotonic()
        if now >= next_restart:
            next_restart += restart_every * 60
            restarts.append(asyncio.create_task(restart()))
        if now >= next_report:
            next_report += 60
            rss.append((now - started, rss_mib(stack.adapter.pid)))
            print(
                f"{(now - started) / 60:5.1f} min  sent {i}  statuses {dict(statuses)}  "
                f"unexpected {sum(unexpected.values())}  RSS {rss[-1][1]:.1f} MiB",
                flush=True,
            )
    await asyncio.gather(*inflight, *restarts)
    rss.append((time.monotonic() - started, rss_mib(stack.adapter.pid)))
    await reader.close()
    warm = rss[1][1] if len(rss) > 2 else rss[0][1]
    growth = (rss[-1][1] - warm) / warm * 100
    elapsed = time.monotonic() - started
    print(f"\nsent {i} requests in {elapsed:.0f}s ({i / elapsed:.1f}/s); statuses {dict(statuses)}")
    print(f"unexpected: {dict(unexpected) or 'none'}")
    print(f"values served as 0 or other than exported: {false_values[:10] or 'none'}")
    print(
        f"RSS start {rss[0][1]:.1f} MiB, after the first minute {warm:.1f} MiB, "
        f"end {rss[-1][1]:.1f} MiB: growth {growth:+.2f} % from warm"
    )
    print("RSS per minute:", ", ".join(f"{m / 60:.0f}:{r:.1f}" for m, r in rss))
    return 1 if unexpected or false_values else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--restart-every", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, running_stack(Path(tmp)) as stack:
        code = asyncio.run(soak(stack, args.minutes, args.rate, args.restart_every))
        with contextlib.suppress(OSError):
            (Path(tmp) / "adapter.log").replace(Path(tempfile.gettempdir()) / "soak-adapter.log")
    raise SystemExit(code)


if __name__ == "__main__":
    main()
