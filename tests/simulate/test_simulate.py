"""``simulate``: a synthetic ramp whose replica curve is known, pod start-up, the CLI's
CSV and PNG side by side.

The ramp: a total queue depth L spread over the ready pods, target 10 per pod,
one step per 15 s sync. Each step moves L far enough (more than the 0.1
tolerance, and never within a hair of an integer multiple of the target) that
the HPA lands exactly on ``ceil(L / 10)``, clamped to minReplicas 1.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from adapter.hpa.spec import parse_hpa
from adapter.simulate import series
from adapter.simulate.engine import Point, Settings, Simulation
from tests.support.hpa import hpa_object

UP = [7, 32, 57, 82, 107, 132, 157, 182]
RAMP = UP + UP[-2::-1]  # up to 182, back down to 7
STEP = 15.0


def hpa(behavior: dict[str, Any] | None = None, name: str = "web") -> dict[str, Any]:
    return hpa_object(name=name, high=50, behavior=behavior)


NO_DOWNSCALE_WINDOW = {"scaleDown": {"stabilizationWindowSeconds": 0}}


def points(loads: Sequence[float]) -> list[Point]:
    return [
        Point(1_800_000_000 + i * STEP, {"inference_queue_depth": v}) for i, v in enumerate(loads)
    ]


def test_the_ramp_lands_on_ceil_load_over_target() -> None:
    rows = Simulation(parse_hpa(hpa(NO_DOWNSCALE_WINDOW))).run(points(RAMP))
    expected = [max(1, math.ceil(load / 10)) for load in RAMP]
    assert expected == [1, 4, 6, 9, 11, 14, 16, 19, 16, 14, 11, 9, 6, 4, 1]
    assert [r.replicas for r in rows] == expected
    assert [r.ready for r in rows] == expected  # no start-up delay
    assert all(r.synced for r in rows)


def test_without_behavior_the_300s_window_holds_the_ramp_down() -> None:
    rows = Simulation(parse_hpa(hpa())).run(points(RAMP))
    # The way down takes 105 s, inside the 300 s downscale stabilization: 19 is kept.
    assert [r.replicas for r in rows] == [1, 4, 6, 9, 11, 14, 16, 19] + [19] * 7


def test_pod_startup_leaves_new_pods_pending_and_damps_the_next_proposals() -> None:
    rows = Simulation(parse_hpa(hpa(NO_DOWNSCALE_WINDOW)), Settings(pod_startup=30)).run(
        points(UP[:4])
    )
    # t=15: 32 on 1 pod -> 4 (3 new, ready at t=45).
    # t=30: 57 on the 1 ready pod -> 57 each; the 3 Pending pods count 0 on a scale-up:
    #       57 / 4 = 14.25 -> ratio 1.425 -> ceil(5.7) = 6 (2 new, ready at 60).
    # t=45: 82 over 4 ready -> 20.5 each; 2 Pending count 0: 82 / 6 = 13.667 -> ceil(8.2) = 9.
    assert [(r.replicas, r.ready) for r in rows] == [(1, 1), (4, 1), (6, 1), (9, 4)]
    assert [r.per_pod for r in rows] == [7.0, 32.0, 57.0, 20.5]


def test_a_gap_in_the_series_keeps_the_count() -> None:
    rows = Simulation(parse_hpa(hpa(NO_DOWNSCALE_WINDOW))).run(points([57, math.nan, 7]))
    # 57 on 1 pod wants 6; the default scale-up policies allow 1 + 4 = 5 (57 / 5 = 11.4 each).
    # The gap: no value, the metric fails, the count stays. Then 7 over 5 pods -> 1.
    assert [(r.replicas, r.per_pod) for r in rows] == [(5, 11.4), (5, None), (1, 7.0)]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapter", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    load = tmp_path / "load.csv"
    lines = ["time,inference_queue_depth"] + [
        f"{p.time:.0f},{p.values['inference_queue_depth']:g}" for p in points(RAMP)
    ]
    load.write_text("\n".join(lines) + "\n")
    fast = tmp_path / "fast.yaml"
    fast.write_text(json.dumps(hpa(NO_DOWNSCALE_WINDOW, "fast")))
    default = tmp_path / "default.yaml"
    default.write_text(json.dumps(hpa(None, "default")))
    return load, fast, default


def test_cli_two_hpas_side_by_side_csv_and_png(
    tmp_path: Path, inputs: tuple[Path, Path, Path]
) -> None:
    load, fast, default = inputs
    out_csv, out_png = tmp_path / "sim.csv", tmp_path / "sim.png"
    done = run_cli(
        "--csv", str(load), "--hpa-file", str(fast), "--hpa-file", str(default),
        "--output-csv", str(out_csv), "--output-png", str(out_png),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    by_hpa = {
        label: [int(r["replicas"]) for r in rows if r["hpa"] == label]
        for label in ("fast", "default")
    }
    assert by_hpa == {
        "fast": [1, 4, 6, 9, 11, 14, 16, 19, 16, 14, 11, 9, 6, 4, 1],
        "default": [1, 4, 6, 9, 11, 14, 16, 19] + [19] * 7,
    }
    assert rows[1] == {
        "hpa": "fast",
        "time": "2027-01-15T08:00:15Z",
        "unix": "1800000015",
        "metric": "inference_queue_depth",
        "load": "32",
        "per_pod": "8",
        "target": "10",
        "desired": "4",
        "replicas": "4",
        "ready": "4",
        "synced": "1",
    }
    assert done.stdout.splitlines()[-2:] == [
        "fast: 15 syncs, replicas 1 -> 1, peak 19",
        "default: 15 syncs, replicas 1 -> 19, peak 19",
    ]
    # The PNG is produced and opens.
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib import image  # noqa: PLC0415  (the [plot] extra, installed for tests)

    pixels = image.imread(out_png)
    assert pixels.shape[:2] == (700, 1100)


def test_cli_without_matplotlib_still_writes_the_csv(
    tmp_path: Path, inputs: tuple[Path, Path, Path]
) -> None:
    load, fast, _ = inputs
    blocker = tmp_path / "nompl"
    blocker.mkdir()
    (blocker / "matplotlib.py").write_text("raise ImportError('blocked for the test')\n")
    out_csv, out_png = tmp_path / "sim.csv", tmp_path / "sim.png"
    done = subprocess.run(
        [sys.executable, "-c",
         f"import sys; sys.path.insert(0, {str(blocker)!r}); from adapter.cli import main; "
         f"sys.exit(main(['simulate', '--csv', {str(load)!r}, '--hpa-file', {str(fast)!r}, "
         f"'--output-csv', {str(out_csv)!r}, '--output-png', {str(out_png)!r}]))"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        "inference-metrics-adapter simulate: no PNG: matplotlib is not installed: "
        "pip install 'inference-metrics-adapter[plot]'  (adds matplotlib)\n"
    )
    assert out_csv.read_text().startswith("hpa,time,unix,metric,load,per_pod,target,desired,")
    assert not out_png.exists()


def test_cli_usage_errors_are_reported_together(tmp_path: Path) -> None:
    done = run_cli("--hpa-file", str(tmp_path / "x.yaml"), "--step", "0s", "--query", "nope")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "inference-metrics-adapter simulate: give either --csv FILE or --prometheus-url with --start/--end/--step",
        "inference-metrics-adapter simulate: --step and --sync-period must be positive, --pod-startup not negative",
        "inference-metrics-adapter simulate: --query 'nope': expected METRIC=PROMQL",
    ]


def test_per_pod_mode_uses_the_value_as_every_pods() -> None:
    # Each ready pod reports 25 whatever the count: ratio 2.5 every sync. 1 -> ceil(2.5) = 3;
    # then the default scale-up policies (max(+4 pods, +100 %) per 15 s) cap each step:
    # 3 -> 7 (wants 8), 7 -> 14 (wants 18), 14 -> 28 (wants 35).
    settings = Settings(mode="per-pod")
    rows = Simulation(parse_hpa(hpa(NO_DOWNSCALE_WINDOW)), settings).run(points([25] * 4))
    assert [(r.replicas, r.per_pod) for r in rows] == [(3, 25.0), (7, 25.0), (14, 25.0), (28, 25.0)]


def test_object_metric_value_target() -> None:
    spec = hpa(NO_DOWNSCALE_WINDOW)
    spec["spec"]["metrics"] = [
        {
            "type": "Object",
            "object": {
                "describedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "metric": {"name": "inference_queue_depth"},
                "target": {"type": "Value", "value": "10"},
            },
        }
    ]
    # Value 30 against 10: ratio 3 times the ready pods: 1 -> 3, then 3 * 3 = 9 wanted,
    # 3 + 4 = 7 allowed by the default scale-up policies.
    rows = Simulation(parse_hpa(spec)).run(points([30, 30]))
    assert [r.replicas for r in rows] == [3, 7]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1800000000", 1_800_000_000.0),
        ("2027-01-15T08:00:00Z", 1_800_000_000.0),
        ("2027-01-15T09:00:00+01:00", 1_800_000_000.0),
        ("2027-01-15T08:00:00", 1_800_000_000.0),  # no offset: UTC
        ("now", 1_800_000_000.0),
        ("now-24h", 1_800_000_000.0 - 86_400),
        ("now-90m", 1_800_000_000.0 - 5_400),
    ],
)
def test_times(text: str, expected: float) -> None:
    assert series.parse_time(text, now=1_800_000_000.0) == expected


@pytest.mark.parametrize("text", ["yesterday", "now-", "now-3x", "2027-13-01T00:00:00Z"])
def test_bad_times(text: str) -> None:
    with pytest.raises(series.SeriesError, match=r"^not a time"):
        series.parse_time(text, now=0.0)


def test_a_bad_csv_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time,m\n1,2\n2,abc\n")
    with pytest.raises(series.SeriesError, match=r"bad\.csv:3: could not convert string to float"):
        series.read_csv(bad)
    bad.write_text("when,m\n")
    with pytest.raises(series.SeriesError, match=r"bad\.csv:1: the header must be time,<metric>"):
        series.read_csv(bad)
