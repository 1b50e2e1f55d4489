"""Collector CPU and RSS: 8 simulated GPUs, 64 processes, 1 s sampling, ~30 s.

Runs ``python -m collectors.gpu --simulate collectors/gpu/scenarios/bench-8gpu-64proc.yaml`` and,
side by side, an idle ``python -c`` as the baseline. While they run, the adapter's pull is
imitated (``/snapshot`` every second) and Prometheus' (``/metrics`` every 15 s). CPU is
utime+stime from /proc/<pid>/stat over the measured span (after warm-up), as % of one core; peak
RSS is VmHWM from /proc/<pid>/status. Targets (issue 5): under 2 % of one core, under 60 MB.

    .venv/bin/python bench/bench_collector.py [--seconds 30] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "collectors/gpu/scenarios/bench-8gpu-64proc.yaml"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return bytes(resp.read())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    collector = subprocess.Popen(
        [sys.executable, "-m", "collectors.gpu", "--simulate", str(SCENARIO),
         "--listen", "127.0.0.1:0", "--interval", "1", "--window", "10", "--log-level", "WARNING"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    total = args.seconds + args.warmup + 5
    baseline = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({total})"])
    try:
        # --log-level WARNING hides the "listening" line: find the port from /proc/net/tcp instead.
        port = wait_for_port(collector.pid)
        base = f"http://127.0.0.1:{port}"
        while get(f"{base}/readyz") != b"ok\n":
            time.sleep(0.1)
        time.sleep(args.warmup)
        start = time.monotonic()
        cpu0 = {p.pid: cpu_seconds(p.pid) for p in (collector, baseline)}
        pulls = scrapes = 0
        snapshot: dict[str, object] = {}
        while time.monotonic() - start < args.seconds:
            snapshot = json.loads(get(f"{base}/snapshot"))
            pulls += 1
            if pulls % 15 == 1:
                get(f"{base}/metrics")
                scrapes += 1
            time.sleep(max(0.0, start + pulls - time.monotonic()))
        elapsed = time.monotonic() - start
        cpu1 = {p.pid: cpu_seconds(p.pid) for p in (collector, baseline)}
        metrics = get(f"{base}/metrics").decode()
        result = {
            "scenario": SCENARIO.name,
            "seconds": round(elapsed, 1),
            "snapshot_pulls": pulls,
            "metrics_scrapes": scrapes,
            "pods_in_snapshot": len(snapshot.get("pods", [])),  # type: ignore[arg-type]
            "samples_total": _metric(metrics, "gpu_collector_samples_total"),
            "last_tick_seconds": _metric(metrics, "gpu_collector_sample_duration_seconds"),
        }
        for name, proc in (("collector", collector), ("baseline_idle_python", baseline)):
            result[name] = {
                "cpu_percent_of_one_core": round(
                    100 * (cpu1[proc.pid] - cpu0[proc.pid]) / elapsed, 2
                ),
                "peak_rss_mb": round(status_kib(proc.pid, "VmHWM") / 1024, 1),
                "rss_mb": round(status_kib(proc.pid, "VmRSS") / 1024, 1),
            }
        print(json.dumps(result, indent=2))
    finally:
        for proc in (collector, baseline):
            proc.terminate()
            proc.wait(timeout=10)
        if collector.stderr is not None:
            collector.stderr.close()
    return 0


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_for_port(pid: int, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                return int(parts[1].split(":")[1], 16)
        time.sleep(0.1)
    raise RuntimeError("the collector never listened")


if __name__ == "__main__":
    sys.exit(main())
