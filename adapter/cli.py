"""``inference-metrics-adapter``: argv -> Settings -> run.

The only module that reads the command line and the environment.

Subcommands:
  serve          the aggregated API server
  check-config   validate a rules file; print each metric and the exact PromQL it sends
  convert-rules  translate a prometheus-adapter config into a rules file
  explain        why a metric is missing, and what the HPA will do (adapter.explain)
  simulate       replay a time range through the HPA's arithmetic (adapter.simulate)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from adapter import __version__, flags
from adapter.settings import KubeSettings, Settings


def _prometheus_once_flags(parser: argparse.ArgumentParser, url_help: str, deadline: str) -> None:
    """``--prometheus-url`` and ``--prometheus-timeout`` of a command that asks Prometheus
    once (not a settings group: no refresh, no staleness)."""
    parser.add_argument("--prometheus-url", help=url_help)
    parser.add_argument("--prometheus-timeout", type=flags.duration, default=10.0, help=deadline)


def _downscale_stabilization_flag(parser: argparse.ArgumentParser) -> None:
    """The HPA controller's setting, for the commands that redo its arithmetic."""
    parser.add_argument(
        "--downscale-stabilization",
        type=flags.duration,
        default=300.0,
        help="the controller's --horizontal-pod-autoscaler-downscale-stabilization",
    )


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the custom.metrics.k8s.io API server")
    flags.add_flags(p, Settings)


def _explain_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "explain", help="why a metric is missing, and what the HPA will do with what we serve"
    )
    p.add_argument(
        "-n", "--namespace", help="the HPA's namespace (default: the manifest's, else default)"
    )
    p.add_argument("--hpa", help="the HPA's name (cluster mode)")
    p.add_argument("--hpa-file", type=Path, help="standalone: an autoscaling/v2 HPA manifest")
    p.add_argument("--current-replicas", type=int, help="standalone: the target's replicas")
    p.add_argument("--selector", help="standalone: the scale target's pod selector")
    flags.add_flag(p, KubeSettings, "kubeconfig")  # the adapter's own, as serve takes them
    flags.add_flag(p, KubeSettings, "context")
    p.add_argument(
        "--adapter-url", help="ask the adapter directly (default: through the API server)"
    )
    p.add_argument("--adapter-ca-file", type=Path, help="CA of the adapter's serving certificate")
    _downscale_stabilization_flag(p)
    p.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="report format"
    )


def _simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="replay a load through the HPA's arithmetic")
    p.add_argument(
        "--hpa-file", type=Path, action="append", required=True, help="repeat to compare"
    )
    p.add_argument("--csv", type=Path, help="recorded load: time,<metric>,...")
    p.add_argument("--prometheus-url", help="recorded load: query this Prometheus instead")
    p.add_argument("--start", help="Unix seconds or RFC 3339")
    p.add_argument("--end", help="Unix seconds or RFC 3339")
    p.add_argument(
        "--step", type=flags.duration, default=15.0, help="resolution of the Prometheus range query"
    )
    p.add_argument(
        "--query", action="append", default=[], metavar="METRIC=PROMQL", help="default sum(METRIC)"
    )
    p.add_argument(
        "--mode",
        choices=["total", "per-pod"],
        default="total",
        help="total: the load spreads over ready pods; per-pod: each pod reports it as is",
    )
    p.add_argument("--pod-startup", type=flags.duration, default=0.0, help="e.g. 3m for a GPU pod")
    p.add_argument(
        "--sync-period",
        type=flags.duration,
        default=15.0,
        help="the controller's --horizontal-pod-autoscaler-sync-period",
    )
    _downscale_stabilization_flag(p)
    p.add_argument("--initial-replicas", type=int, help="default: the HPA's minReplicas")
    p.add_argument(
        "--output-csv",
        type=Path,
        default=Path("simulation.csv"),
        help="replicas and metric per step, per HPA",
    )
    p.add_argument(
        "--output-png", type=Path, default=Path("simulation.png"), help="the same, as a chart"
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="inference-metrics-adapter",
        description="custom.metrics.k8s.io for GPU inference: "
        "p95 latency, queue depth, GPU utilization",
    )
    root.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = root.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _explain_parser(sub)
    _simulate_parser(sub)
    check = sub.add_parser("check-config", help="validate a rules file and print its catalogue")
    check.add_argument(
        "config", type=Path, nargs="?", help="rules file (default: the built-in metrics only)"
    )
    flags.add_flag(check, Settings, "presets")
    _prometheus_once_flags(
        check,
        "also run one refresh and print, per metric, the pods each server family won",
        "deadline of each query",
    )
    convert = sub.add_parser(
        "convert-rules",
        help="translate a prometheus-adapter config into a rules file "
        "(untranslatable rules are listed on stderr with their line)",
    )
    convert.add_argument("config", type=Path, help="prometheus-adapter config or its ConfigMap")
    convert.add_argument("-o", "--output", type=Path, help="write here (default: stdout)")
    _prometheus_once_flags(
        convert,
        "list series once, at conversion time, for rules whose names come from discovery",
        "deadline of the listing",
    )
    demo = sub.add_parser(
        "demo", help="run the local demo (simulated pods and GPUs, real Prometheus)"
    )
    demo.add_argument(
        "--workdir",
        type=Path,
        default=Path(".demo"),
        help="configs, certificates and logs (emptied first)",
    )
    demo.add_argument("--rounds", type=int, default=3, help="how many times values are shown")
    demo.add_argument("--every", type=flags.duration, default=10.0, help="time between rounds")
    demo.add_argument(
        "--keep-running", action="store_true", help="after the rounds, run until Ctrl-C"
    )
    return root


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings of ``serve`` from its parsed arguments (not yet validated)."""
    return flags.from_args(Settings, args)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, the same keys in both programs (the adapter and the collector).

    Keys: ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``msg``,
    then the record's ``fields`` (structured extras such as the access log's),
    then ``exc`` (the formatted traceback) when there is one.
    """

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        entry = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def _check_config(args: argparse.Namespace) -> int:
    """Print each metric, then per PromQL query it sends each refresh: ``  <family>: <query>``.

    With ``--prometheus-url``, then one refresh: per metric, the pods each family won.
    """
    from adapter.app import catalogue_holder  # noqa: PLC0415
    from adapter.rulesfile import ConfigError  # noqa: PLC0415
    from adapter.sources.prometheus.catalogue import queries_of  # noqa: PLC0415
    from adapter.sources.prometheus.diagnose import family_winners  # noqa: PLC0415

    try:
        presets = flags.read_flag(Settings, "presets", args)
        catalogue = catalogue_holder(args.config, presets or None)()
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    if catalogue.presets:
        print(f"presets: {', '.join(catalogue.presets)}")
    queries = queries_of(catalogue)
    for spec in catalogue:
        resources = ", ".join(str(rk.group_resource) for rk in spec.resources)
        print(
            f"{spec.name}  source={spec.source} aggregate={spec.aggregate.value} "
            f"resources=[{resources}]"
        )
        for family, query in queries.get(spec.name, ()):
            print(f"  {family}: {query}")
    total = sum(len(q) for q in queries.values())
    print(f"{total} PromQL queries per refresh, whatever the number of HPAs and pods")
    if args.prometheus_url:
        winners = asyncio.run(
            family_winners(catalogue, args.prometheus_url, args.prometheus_timeout)
        )
        for metric, by_family in winners.items():
            print(f"{metric}: pods per family in Prometheus now")
            for family, pods in by_family.items():
                shown = ", ".join(f"{ns}/{pod}" for ns, pod in pods[:5])
                more = f" and {len(pods) - 5} more" if len(pods) > 5 else ""
                print(f"  {family or '(rule)'}: {len(pods)} ({shown}{more})")
    return 0


def _run_tool(args: argparse.Namespace) -> int:
    """``explain`` and ``simulate``: validate every argument, then run."""
    if args.command == "explain":
        from adapter.explain import command as explain  # noqa: PLC0415  (heavy, only when used)

        problems = explain.validate(args)
    else:
        from adapter.simulate import command as simulate  # noqa: PLC0415

        problems = simulate.validate(args)
    for problem in problems:
        print(f"inference-metrics-adapter {args.command}: {problem}", file=sys.stderr)
    if problems:
        return 2
    if args.command == "explain":
        return asyncio.run(explain.run(args))
    return simulate.run(args)


def _series_lister(url: str, timeout: float) -> Callable[[str], list[str]]:
    """Metric names of the series matching a selector, from ``/api/v1/series``."""

    def names(match: str) -> list[str]:
        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(  # noqa: S310  (the user's own Prometheus URL)
            f"{url.rstrip('/')}/api/v1/series?{query}", timeout=timeout
        ) as response:
            body = json.load(response)
        return sorted({str(series["__name__"]) for series in body.get("data", [])})

    return names


def _convert_rules(args: argparse.Namespace) -> int:
    """Write the converted rules file; list every untranslatable form on stderr.

    Exit 0 when everything was converted, 3 when some forms were listed, 1 on
    unreadable input or a failed series listing.
    """
    from adapter.convert import convert  # noqa: PLC0415
    from adapter.rulesfile import ConfigError  # noqa: PLC0415

    lister = None
    if args.prometheus_url:
        lister = _series_lister(args.prometheus_url, args.prometheus_timeout)
    try:
        text = args.config.read_text(encoding="utf-8")
        result = convert(text, str(args.config), lister)
    except (OSError, UnicodeDecodeError, urllib.error.URLError, ValueError) as e:
        print(f"convert-rules: {e}", file=sys.stderr)
        return 1
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    output = result.yaml(str(args.config))
    if args.output is None:
        sys.stdout.write(output)
    else:
        args.output.write_text(output, encoding="utf-8")
    for item in result.untranslatable:
        print(f"{args.config}: {item}", file=sys.stderr)
    return 3 if result.untranslatable else 0


def _demo(args: argparse.Namespace) -> int:
    from adapter.demo.run import main as demo  # noqa: PLC0415

    return demo(args.workdir, args.rounds, args.every, args.keep_running)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    tools: dict[str, Callable[[argparse.Namespace], int]] = {
        "check-config": _check_config,
        "convert-rules": _convert_rules,
        "explain": _run_tool,
        "simulate": _run_tool,
        "demo": _demo,
    }
    if args.command in tools:
        return tools[args.command](args)
    settings = settings_from_args(args)
    problems = settings.validate()
    if problems:
        for problem in problems:
            print(f"inference-metrics-adapter: {problem}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    from adapter.app import serve  # noqa: PLC0415

    try:
        return asyncio.run(serve(settings))
    except KeyboardInterrupt:
        return 130
