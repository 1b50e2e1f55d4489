"""``inference-metrics-adapter explain``: run it (argv is parsed in ``adapter.cli``).

Cluster mode (``--namespace NS --hpa NAME``): the HPA, its scale target's
``/scale`` (replicas and pod selector) and the pods come from the API server;
the adapter's explanation of each metric through the aggregator, or from
``--adapter-url`` with the kubeconfig's client credentials.

Standalone (``--hpa-file FILE --current-replicas N --selector SEL``): the HPA
from a file, the pods as the adapter sees them (a standalone adapter has no API
server to ask), the adapter at ``--adapter-url`` or the kubeconfig's server.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from adapter.explain import cluster
from adapter.explain.report import MetricInput, build_report, render_table
from adapter.hpa.calculator import PodState
from adapter.hpa.spec import HPASpecError, parse_hpa
from adapter.kube import credentials
from adapter.kube.errors import KubeConfigError


def validate(args: argparse.Namespace) -> list[str]:
    """Every usage problem at once."""
    problems = []
    if (args.hpa is None) == (args.hpa_file is None):
        problems.append("give either --hpa NAME (with --namespace) or --hpa-file FILE")
    if args.hpa_file is not None and (args.current_replicas is None or args.selector is None):
        problems.append("--hpa-file needs --current-replicas and --selector (the scale target's)")
    if args.hpa is not None and (args.current_replicas is not None or args.selector is not None):
        problems.append("--current-replicas and --selector are read from the cluster with --hpa")
    return problems


async def run(args: argparse.Namespace) -> int:
    try:
        report = await _report(args)
    except (cluster.ClusterError, KubeConfigError, HPASpecError, OSError, yaml.YAMLError) as e:
        print(f"inference-metrics-adapter explain: {e}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        sys.stdout.write(render_table(report))
    return 0


async def _report(args: argparse.Namespace) -> dict[str, Any]:
    kubeconfig = None if args.kubeconfig is None else str(args.kubeconfig)
    api = await credentials.connect(kubeconfig, context=args.context)
    adapter = api
    try:
        if args.adapter_url:
            ca = None if args.adapter_ca_file is None else str(args.adapter_ca_file)
            adapter = cluster.direct_client(api, args.adapter_url, ca)
        if args.hpa_file is not None:
            obj = _load(args.hpa_file)
            hpa = parse_hpa(obj)
            namespace = args.namespace or hpa.namespace or "default"
            current = status_replicas = int(args.current_replicas)
            selector = str(args.selector)
            pods: list[PodState] | None = None
            hpa_status = None
        else:
            namespace = args.namespace or "default"
            obj = dict(await cluster.read_hpa(api, namespace, args.hpa))
            hpa = parse_hpa(obj)
            scale = await cluster.read_scale(api, namespace, hpa.scale_target)
            current, status_replicas, selector = (
                scale.spec_replicas,
                scale.status_replicas,
                scale.selector,
            )
            pods = await cluster.list_pods(api, namespace, selector) if selector else []
            hpa_status = obj.get("status")
        inputs = []
        for metric in hpa.metrics:
            view, error = await cluster.adapter_view(adapter, metric, namespace, selector)
            inputs.append(MetricInput(metric, view, error))
        report = build_report(
            hpa,
            current,
            status_replicas,
            pods,
            inputs,
            downscale_stabilization=args.downscale_stabilization,
        )
        report["hpa"]["namespace"] = namespace
        report["selector"] = selector
        if hpa_status is not None:
            report["hpaStatus"] = hpa_status
        return report
    finally:
        if adapter is not api:
            await adapter.close()
        await api.close()


def _load(path: Path) -> dict[str, Any]:
    text = path.read_text()
    obj = yaml.safe_load(text)
    if not isinstance(obj, dict):
        raise HPASpecError(f"{path}: not a YAML or JSON object")
    return obj
