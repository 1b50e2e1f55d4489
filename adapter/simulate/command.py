"""``inference-metrics-adapter simulate``: run it (argv is parsed in ``adapter.cli``).

Reads the load (``--csv FILE``, or ``--prometheus-url`` with ``--start``,
``--end``, ``--step`` and a ``--query METRIC=PROMQL`` per metric, default
``sum(METRIC)``), runs every ``--hpa-file`` through ``engine`` side by side,
writes ``--output-csv`` and, with matplotlib, ``--output-png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from adapter.hpa.spec import HPASpec, HPASpecError, parse_hpa
from adapter.simulate import plot, series
from adapter.simulate.engine import Point, Row, Settings, Simulation


def validate(args: argparse.Namespace) -> list[str]:
    problems = []
    prometheus = args.prometheus_url is not None
    if prometheus == (args.csv is not None):
        problems.append("give either --csv FILE or --prometheus-url with --start/--end/--step")
    if prometheus and (args.start is None or args.end is None):
        problems.append("--prometheus-url needs --start and --end")
    if args.step <= 0 or args.sync_period <= 0 or args.pod_startup < 0:
        problems.append("--step and --sync-period must be positive, --pod-startup not negative")
    for item in args.query:
        if "=" not in item:
            problems.append(f"--query {item!r}: expected METRIC=PROMQL")
    return problems


def run(args: argparse.Namespace) -> int:
    try:
        specs = [(path.stem, _load(path)) for path in args.hpa_file]
        points = _points(args, specs)
        settings = Settings(
            pod_startup=args.pod_startup,
            sync_period=args.sync_period,
            initial_replicas=args.initial_replicas,
            mode=args.mode,
            downscale_stabilization=args.downscale_stabilization,
        )
        results: list[tuple[str, list[Row]]] = [
            (label, Simulation(spec, settings).run(points)) for label, spec in specs
        ]
    except (HPASpecError, series.SeriesError, OSError, yaml.YAMLError, ValueError) as e:
        print(f"inference-metrics-adapter simulate: {e}", file=sys.stderr)
        return 1
    series.write_result(args.output_csv, results)
    print(f"wrote {args.output_csv}")
    try:
        plot.plot(args.output_png, results, title=", ".join(label for label, _ in results))
        print(f"wrote {args.output_png}")
    except plot.PlotUnavailable as e:
        print(f"inference-metrics-adapter simulate: no PNG: {e}", file=sys.stderr)
    for label, rows in results:
        synced = [r for r in rows if r.synced]
        if synced:
            peak = max(r.replicas for r in synced)
            print(f"{label}: {len(synced)} syncs, replicas {synced[0].replicas} -> "
                  f"{synced[-1].replicas}, peak {peak}")  # fmt: skip
    return 0


def _load(path: Path) -> HPASpec:
    obj = yaml.safe_load(path.read_text())
    if not isinstance(obj, dict):
        raise HPASpecError(f"{path}: not a YAML or JSON object")
    try:
        return parse_hpa(obj)
    except HPASpecError as e:
        raise HPASpecError(f"{path}: {e}") from e


def _points(args: argparse.Namespace, specs: list[tuple[str, HPASpec]]) -> list[Point]:
    if args.csv is not None:
        return series.read_csv(args.csv)
    queries = dict(item.split("=", 1) for item in args.query)
    for _, spec in specs:
        for metric in spec.metrics:
            if metric.served_kind:
                queries.setdefault(metric.name, f"sum({metric.name})")
    return series.query_range(
        args.prometheus_url,
        queries,
        series.parse_time(args.start),
        series.parse_time(args.end),
        args.step,
    )
