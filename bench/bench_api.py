"""Requests/s and p50/p99 of pods/*/inference_latency_p95 over TLS, one adapter process.

    .venv/bin/python bench/bench_api.py [--duration 10] [--pods 10,100,1000]

For each pod count, the adapter and a bare aiohttp TLS baseline (pre-built body
of the same items) run side by side, alternately, and are loaded by ``wrk``
(Debian package ``wrk``) from a second process on loopback: one connection for
latency (p50/p99 of sequential requests), then 8 connections for throughput.
Numbers are reported with their ratio to the baseline: the machines are shared
and noisy, the ratio is what carries over.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--pods", default="10,100,1000")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench_api: needs wrk (apt-get install wrk)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pods in (int(p) for p in args.pods.split(",")):
            results = {}
            for mode in ("bare", "adapter", "adapter-prom"):
                with server(mode, pods, Path(tmp) / mode) as port:
                    wrk(port, 1, 2)  # warm-up: TLS session, caches, JIT-free but allocator-warm
                    latency = wrk(port, 1, args.duration)
                    throughput = wrk(port, 8, args.duration)
                results[mode] = (latency, throughput)
                time.sleep(1)
            rows.append((pods, results))
    print(f"{'pods':>5} {'mode':>12} {'p50 ms':>8} {'p99 ms':>8} {'req/s c1':>9} {'req/s c8':>9}")
    for pods, results in rows:
        for mode, (lat, thr) in results.items():
            print(
                f"{pods:>5} {mode:>12} {lat['p50']:>8.3f} {lat['p99']:>8.3f} {lat['rps']:>9.0f} {thr['rps']:>9.0f}"
            )
        b = results["bare"][0]
        for mode in ("adapter", "adapter-prom"):
            a = results[mode][0]
            print(
                f"{pods:>5} {'ratio':>12} {a['p50'] / b['p50']:>8.2f} {a['p99'] / b['p99']:>8.2f}"
                f" {results[mode][1]['rps'] / results['bare'][1]['rps']:>19.2f}   ({mode} / bare)"
            )


if __name__ == "__main__":
    main()
