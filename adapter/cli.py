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
from pathlib import Path

from adapter import __version__
from adapter.auth.config import AuthSettings
from adapter.core.durations import parse_duration
from adapter.settings import (
    GpuSettings,
    KubeSettings,
    PrometheusSettings,
    ServingSettings,
    Settings,
)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


_AUTH_DEFAULTS = AuthSettings()


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _connection_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--max-connections",
        type=int,
        default=ServingSettings.max_connections,
        help="open connections at most; the oldest unauthenticated one makes room",
    )
    g.add_argument(
        "--request-header-timeout",
        type=_duration,
        default=ServingSettings.request_header_timeout,
        help="from accept to the first complete request head, TLS handshake included",
    )


def _selector_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--prometheus-selector-timeout",
        type=_duration,
        default=PrometheusSettings.selector_timeout,
        help="deadline of one metricLabelSelector query",
    )
    g.add_argument(
        "--prometheus-selector-concurrency",
        type=int,
        default=PrometheusSettings.selector_concurrency,
        help="distinct metricLabelSelector queries at once; more get 429",
    )
    g.add_argument(
        "--max-selector-requests-inflight",
        type=int,
        default=_AUTH_DEFAULTS.max_selector_requests_inflight,
        help="in-flight reads with a metricLabelSelector; a budget apart from the rest",
    )


def _gpu_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--gpu-collector-url", action="append", default=[], help="standalone mode; repeatable"
    )
    g.add_argument("--gpu-collector-selector", default=GpuSettings.collector_selector)
    g.add_argument("--gpu-collector-port", type=int, default=GpuSettings.collector_port)
    g.add_argument("--gpu-pull-interval", type=_duration, default=GpuSettings.pull_interval)
    g.add_argument("--gpu-stale-after", type=_duration)
    g.add_argument("--gpu-timeout", type=_duration, default=GpuSettings.timeout)


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the custom.metrics.k8s.io API server")
    g = p.add_argument_group("serving")
    g.add_argument("--bind-address", default=ServingSettings.bind_address)
    g.add_argument("--secure-port", type=int, default=ServingSettings.secure_port)
    g.add_argument("--tls-cert-file", type=Path)
    g.add_argument("--tls-private-key-file", type=Path)
    g.add_argument(
        "--cert-dir", type=Path, help="where a generated self-signed certificate is kept"
    )
    g.add_argument("--shutdown-timeout", type=_duration, default=ServingSettings.shutdown_timeout)
    _connection_flags(g)
    g.add_argument(
        "--self-signed-host",
        action="append",
        default=[],
        dest="extra_hosts",
        help="extra DNS name for a generated certificate; repeatable",
    )
    g = p.add_argument_group("authentication and authorization (names as kube-apiserver's)")
    g.add_argument("--client-ca-file", type=Path)
    g.add_argument("--requestheader-client-ca-file", type=Path)
    g.add_argument("--requestheader-allowed-names", type=_csv, default=())
    g.add_argument(
        "--requestheader-username-headers",
        type=_csv,
        default=_AUTH_DEFAULTS.requestheader_username_headers,
    )
    g.add_argument(
        "--requestheader-group-headers",
        type=_csv,
        default=_AUTH_DEFAULTS.requestheader_group_headers,
    )
    g.add_argument(
        "--requestheader-extra-headers-prefix",
        type=_csv,
        default=_AUTH_DEFAULTS.requestheader_extra_headers_prefix,
    )
    g.add_argument(
        "--requestheader-uid-headers", type=_csv, default=_AUTH_DEFAULTS.requestheader_uid_headers
    )
    g.add_argument(
        "--authentication-skip-lookup",
        action="store_true",
        help="do not read kube-system/extension-apiserver-authentication",
    )
    g.add_argument("--authentication-tolerate-lookup-failure", action="store_true")
    g.add_argument(
        "--authentication-token-webhook-cache-ttl",
        type=_duration,
        default=_AUTH_DEFAULTS.authentication_token_webhook_cache_ttl,
    )
    g.add_argument("--api-audiences", type=_csv, default=())
    g.add_argument(
        "--authorization-webhook-cache-authorized-ttl",
        type=_duration,
        default=_AUTH_DEFAULTS.authorization_webhook_cache_authorized_ttl,
    )
    g.add_argument(
        "--authorization-webhook-cache-unauthorized-ttl",
        type=_duration,
        default=_AUTH_DEFAULTS.authorization_webhook_cache_unauthorized_ttl,
    )
    g.add_argument(
        "--authorization-always-allow-paths",
        type=_csv,
        default=_AUTH_DEFAULTS.authorization_always_allow_paths,
    )
    g.add_argument(
        "--max-requests-inflight", type=int, default=_AUTH_DEFAULTS.max_requests_inflight
    )
    g = p.add_argument_group("pods")
    g.add_argument("--kubeconfig", type=Path, help="default: in-cluster service account")
    g.add_argument("--context", help="kubeconfig context")
    g.add_argument("--pods-file", type=Path, help="standalone mode: a PodList (YAML or JSON)")
    _rules_arguments(p)
    g = p.add_argument_group("prometheus")
    g.add_argument("--prometheus-url")
    g.add_argument("--prometheus-bearer-token-file", type=Path)
    g.add_argument("--prometheus-ca-file", type=Path)
    g.add_argument("--prometheus-client-cert", type=Path)
    g.add_argument("--prometheus-client-key", type=Path)
    g.add_argument(
        "--prometheus-header", type=_header, action="append", default=[], metavar="'NAME: VALUE'"
    )
    g.add_argument("--prometheus-timeout", type=_duration, default=PrometheusSettings.timeout)
    g.add_argument("--prometheus-insecure-skip-verify", action="store_true")
    g.add_argument("--prometheus-compression", action="store_true")
    g.add_argument(
        "--prometheus-refresh-interval", type=_duration, default=PrometheusSettings.refresh_interval
    )
    g.add_argument("--prometheus-stale-after", type=_duration)
    _selector_flags(g)
    _gpu_flags(p.add_argument_group("gpu collectors"))
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _explain_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "explain", help="why a metric is missing, and what the HPA will do with what we serve"
    )
    p.add_argument("-n", "--namespace")
    p.add_argument("--hpa", help="the HPA's name (cluster mode)")
    p.add_argument("--hpa-file", type=Path, help="standalone: an autoscaling/v2 HPA manifest")
    p.add_argument("--current-replicas", type=int, help="standalone: the target's replicas")
    p.add_argument("--selector", help="standalone: the scale target's pod selector")
    p.add_argument("--kubeconfig", type=Path, help="default: in-cluster service account")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument(
        "--adapter-url", help="ask the adapter directly (default: through the API server)"
    )
    p.add_argument("--adapter-ca-file", type=Path, help="CA of the adapter's serving certificate")
    p.add_argument(
        "--downscale-stabilization",
        type=_duration,
        default=300.0,
        help="the controller's --horizontal-pod-autoscaler-downscale-stabilization",
    )
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")


def _simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="replay a load through the HPA's arithmetic")
    p.add_argument(
        "--hpa-file", type=Path, action="append", required=True, help="repeat to compare"
    )
    p.add_argument("--csv", type=Path, help="recorded load: time,<metric>,...")
    p.add_argument("--prometheus-url")
    p.add_argument("--start", help="Unix seconds or RFC 3339")
    p.add_argument("--end", help="Unix seconds or RFC 3339")
    p.add_argument("--step", type=_duration, default=15.0)
    p.add_argument(
        "--query", action="append", default=[], metavar="METRIC=PROMQL", help="default sum(METRIC)"
    )
    p.add_argument(
        "--mode",
        choices=["total", "per-pod"],
        default="total",
        help="total: the load spreads over ready pods; per-pod: each pod reports it as is",
    )
    p.add_argument("--pod-startup", type=_duration, default=0.0, help="e.g. 3m for a GPU pod")
    p.add_argument("--sync-period", type=_duration, default=15.0)
    p.add_argument("--downscale-stabilization", type=_duration, default=300.0)
    p.add_argument("--initial-replicas", type=int, help="default: the HPA's minReplicas")
    p.add_argument("--output-csv", type=Path, default=Path("simulation.csv"))
    p.add_argument("--output-png", type=Path, default=Path("simulation.png"))


def _rules_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("rules")
    g.add_argument("--config", type=Path, help="rules file (YAML); reloaded on change and SIGHUP")
    _preset_argument(g)


def _preset_argument(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--preset",
        action="append",
        default=[],
        dest="presets",
        metavar="FAMILY",
        help="read the built-ins only from this server family (vllm, sglang, trtllm-serve, "
        "triton-trtllm, triton, tgi, nim, knative, generic); repeatable, in order; "
        "replaces the rules file's presets",
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
    check.add_argument("config", type=Path, nargs="?")
    _preset_argument(check)
    check.add_argument(
        "--prometheus-url",
        help="also run one refresh and print, per metric, the pods each server family won",
    )
    check.add_argument("--prometheus-timeout", type=_duration, default=10.0)
    convert = sub.add_parser(
        "convert-rules",
        help="translate a prometheus-adapter config into a rules file "
        "(untranslatable rules are listed on stderr with their line)",
    )
    convert.add_argument("config", type=Path, help="prometheus-adapter config or its ConfigMap")
    convert.add_argument("-o", "--output", type=Path, help="write here (default: stdout)")
    convert.add_argument(
        "--prometheus-url",
        help="list series once, at conversion time, for rules whose names come from discovery",
    )
    convert.add_argument("--prometheus-timeout", type=_duration, default=10.0)
    demo = sub.add_parser(
        "demo", help="run the local demo (simulated pods and GPUs, real Prometheus)"
    )
    demo.add_argument("--workdir", type=Path, default=Path(".demo"))
    demo.add_argument("--rounds", type=int, default=3)
    demo.add_argument("--every", type=_duration, default=10.0)
    demo.add_argument("--keep-running", action="store_true")
    return root


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        serving=ServingSettings(
            bind_address=args.bind_address,
            secure_port=args.secure_port,
            tls_cert_file=args.tls_cert_file,
            tls_private_key_file=args.tls_private_key_file,
            cert_dir=args.cert_dir,
            shutdown_timeout=args.shutdown_timeout,
            extra_hosts=tuple(args.extra_hosts),
            max_connections=args.max_connections,
            request_header_timeout=args.request_header_timeout,
        ),
        auth=AuthSettings(
            client_ca_file=args.client_ca_file,
            requestheader_client_ca_file=args.requestheader_client_ca_file,
            requestheader_allowed_names=args.requestheader_allowed_names,
            requestheader_username_headers=args.requestheader_username_headers,
            requestheader_group_headers=args.requestheader_group_headers,
            requestheader_extra_headers_prefix=args.requestheader_extra_headers_prefix,
            requestheader_uid_headers=args.requestheader_uid_headers,
            authentication_skip_lookup=args.authentication_skip_lookup,
            authentication_tolerate_lookup_failure=args.authentication_tolerate_lookup_failure,
            authentication_token_webhook_cache_ttl=args.authentication_token_webhook_cache_ttl,
            api_audiences=args.api_audiences,
            authorization_webhook_cache_authorized_ttl=args.authorization_webhook_cache_authorized_ttl,
            authorization_webhook_cache_unauthorized_ttl=args.authorization_webhook_cache_unauthorized_ttl,
            authorization_always_allow_paths=args.authorization_always_allow_paths,
            max_requests_inflight=args.max_requests_inflight,
            max_selector_requests_inflight=args.max_selector_requests_inflight,
            standalone=args.pods_file is not None,
        ),
        kube=KubeSettings(
            kubeconfig=args.kubeconfig, context=args.context, pods_file=args.pods_file
        ),
        prometheus=PrometheusSettings(
            url=args.prometheus_url,
            bearer_token_file=args.prometheus_bearer_token_file,
            ca_file=args.prometheus_ca_file,
            client_cert_file=args.prometheus_client_cert,
            client_key_file=args.prometheus_client_key,
            headers=tuple(args.prometheus_header),
            timeout=args.prometheus_timeout,
            insecure_skip_verify=args.prometheus_insecure_skip_verify,
            compression=args.prometheus_compression,
            refresh_interval=args.prometheus_refresh_interval,
            stale_after=args.prometheus_stale_after,
            selector_timeout=args.prometheus_selector_timeout,
            selector_concurrency=args.prometheus_selector_concurrency,
        ),
        gpu=GpuSettings(
            collector_urls=tuple(args.gpu_collector_url),
            collector_selector=args.gpu_collector_selector,
            collector_port=args.gpu_collector_port,
            pull_interval=args.gpu_pull_interval,
            stale_after=args.gpu_stale_after,
            timeout=args.gpu_timeout,
        ),
        config_file=args.config,
        presets=tuple(args.presets),
        log_level=args.log_level,
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log pipelines in a cluster expect."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
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
    from adapter.app import catalogue_holder, family_winners, prometheus_queries  # noqa: PLC0415
    from adapter.config import ConfigError  # noqa: PLC0415

    try:
        catalogue = catalogue_holder(args.config, tuple(args.presets) or None)()
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    if catalogue.presets:
        print(f"presets: {', '.join(catalogue.presets)}")
    queries = prometheus_queries(catalogue)
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
    from adapter.config import ConfigError  # noqa: PLC0415
    from adapter.convert import convert  # noqa: PLC0415

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
