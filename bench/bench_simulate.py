"""``simulate`` over 24 h at 15 s steps (5,760 steps) for one HPA: wall time.

Generates a day of diurnal load (a sine with noise, 5 to 400 queued requests in
total) as a CSV, then runs the real command side by side with a baseline that
only reads that CSV and writes a result CSV of the same size (no HPA
arithmetic, no chart). Reports each median wall time over ``--repeat`` runs and
their ratio, and the same for the engine alone (in process). Target (issue 15):
seconds, not minutes.

    .venv/bin/python bench/bench_simulate.py [--repeat 3] [--pod-startup 3m]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapter.hpa.spec import parse_hpa
from adapter.simulate import series
from adapter.simulate.engine import Settings, Simulation
from tests.support.hpa import hpa_object

STEP = 15.0
DAY = 24 * 3600
HPA = hpa_object(name="bench", target="llm", low=2, high=60)

BASELINE = """
import csv, sys
from pathlib import Path
rows = list(csv.reader(Path(sys.argv[1]).open()))
with Path(sys.argv[2]).open("w") as out:
    w = csv.writer(out)
    for row in rows[1:]:
        w.writerow(["bench", row[0], row[0], "m", row[1], row[1], "10", 2, 2, 2, 1])
"""


def write_load(path: Path) -> None:
    rng = random.Random(15)
    lines = ["time,inference_queue_depth"]
    start = 1_800_000_000
    for i in range(int(DAY / STEP)):
        t = i * STEP
        load = 200 + 195 * math.sin(2 * math.pi * t / DAY) + rng.gauss(0, 5)
        lines.append(f"{start + t:.0f},{max(0.0, load):.2f}")
    path.write_text("\n".join(lines) + "\n")


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pod-startup", default="3m")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        load, hpa = work / "load.csv", work / "hpa.json"
        write_load(load)
        hpa.write_text(json.dumps(HPA))
        simulate = [
            sys.executable, "-m", "adapter", "simulate", "--csv", str(load),
            "--hpa-file", str(hpa), "--pod-startup", args.pod_startup,
            "--output-csv", str(work / "out.csv"), "--output-png", str(work / "out.png"),
        ]  # fmt: skip
        baseline = [sys.executable, "-c", BASELINE, str(load), str(work / "base.csv")]
        runs = [(timed(simulate), timed(baseline)) for _ in range(args.repeat)]
        points = series.read_csv(load)
        engine = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            rows = Simulation(parse_hpa(HPA), Settings(pod_startup=180)).run(points)
            engine.append(time.perf_counter() - started)
        png = (work / "out.png").exists()
    sim = statistics.median(r[0] for r in runs)
    base = statistics.median(r[1] for r in runs)
    print(f"steps: {len(points)} (24 h at {STEP:g} s), one HPA, pod start-up {args.pod_startup}")
    print(f"simulate command (CSV + PNG: {png}): {sim:.2f} s wall (median of {args.repeat})")
    print(f"baseline (read + write the same CSV sizes): {base:.2f} s; ratio {sim / base:.1f}x")
    print(
        f"engine alone, in process: {statistics.median(engine) * 1000:.0f} ms "
        f"({statistics.median(engine) / len(points) * 1e6:.1f} us per step; "
        f"peak replicas {max(r.replicas for r in rows)})"
    )


if __name__ == "__main__":
    main()
