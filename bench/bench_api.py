"""Requests/s and p50/p99 of pods/*/inference_latency_p95 over TLS, one adapter process.

    .venv/bin/python bench/bench_api.py [--duration 3] [--rounds 5] [--pods 10,100,1000]

For each pod count, the adapter (``adapter``: in-memory source; ``adapter-prom``:
the real Prometheus source's snapshot) and a bare aiohttp TLS baseline
(pre-built body of the same items) run side by side, all three up at once, and
are loaded in turn, round after round, by ``wrk`` (Debian package ``wrk``) from
a second process on loopback: one connection for latency (p50/p99 of sequential
requests), then 8 connections for throughput. Each number is the median over
the rounds, reported with its ratio to the baseline's: the machines are shared
and noisy, the ratio is what carries over.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).parent
PATH = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/%2A/inference_latency_p95?labelSelector=app%3Dweb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(mode: str, pods: int, cert_dir: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "api_server.py"), mode, str(pods), str(port), str(cert_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{mode} server did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def wrk(port: int, connections: int, duration: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            f"https://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert rps and not errors, out
    return {"p50": latency("50"), "p99": latency("99"), "rps": float(rps.group(1))}


MODES = ("bare", "adapter", "adapter-prom")


def measure(pods: int, rounds: int, duration: int, tmp: Path) -> dict[str, dict[str, float]]:
    """Medians over ``rounds`` of each mode's latency (1 connection) and throughput (8)."""
    samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with contextlib.ExitStack() as stack:
        ports = {mode: stack.enter_context(server(mode, pods, tmp / mode)) for mode in MODES}
        for port in ports.values():
            wrk(port, 1, 1)  # warm-up: TLS session, caches, allocator
        for _ in range(rounds):
            for mode, port in ports.items():
                latency = wrk(port, 1, duration)
                latency["rps8"] = wrk(port, 8, duration)["rps"]
                samples[mode].append(latency)
    return {
        mode: {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        for mode, runs in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pods", default="10,100,1000")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench_api: needs wrk (apt-get install wrk)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pods in (int(p) for p in args.pods.split(",")):
            rows.append((pods, measure(pods, args.rounds, args.duration, Path(tmp) / str(pods))))
    print(f"medians of {args.rounds} rounds, {args.duration} s per wrk run")
    print(f"{'pods':>5} {'mode':>12} {'p50 ms':>8} {'p99 ms':>8} {'req/s c1':>9} {'req/s c8':>9}")
    for pods, results in rows:
        for mode, r in results.items():
            print(
                f"{pods:>5} {mode:>12} {r['p50']:>8.3f} {r['p99']:>8.3f} {r['rps']:>9.0f} {r['rps8']:>9.0f}"
            )
        b = results["bare"]
        for mode in ("adapter", "adapter-prom"):
            a = results[mode]
            print(
                f"{pods:>5} {'ratio':>12} {a['p50'] / b['p50']:>8.2f} {a['p99'] / b['p99']:>8.2f}"
                f" {a['rps'] / b['rps']:>9.2f} {a['rps8'] / b['rps8']:>9.2f}   ({mode} / bare)"
            )


if __name__ == "__main__":
    main()
