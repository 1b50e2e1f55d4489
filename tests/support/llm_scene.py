"""The scene the cluster-mode and fault tests run: two LLM pods on one GPU node, whose
simulated collector pod answers on 127.0.0.1."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from adapter.demo.stack import DemoPod, free_port, gpu_scenario, serve_command
from tests.fakes.kube_api import make_pod

NODE = "gpu-node-1"
PODS = [
    DemoPod("llm-0", NODE, "10.0.0.11", "11111111-0000-4000-8000-000000000001"),
    DemoPod("llm-1", NODE, "10.0.0.12", "11111111-0000-4000-8000-000000000002"),
]


def kube_pods() -> list[dict[str, Any]]:
    """The API server's Pods: ``PODS`` (``app=llm`` in ``ml``, Ready) and the collector's."""
    llm = [
        make_pod("ml", pod.name, labels={"app": "llm"}, node=pod.node, pod_ip=pod.ip, uid=pod.uid)
        for pod in PODS
    ]
    collector = make_pod(
        "inference-metrics",
        "gpu-collector-x1",
        labels={"app.kubernetes.io/name": "gpu-collector"},
        node=NODE,
        pod_ip="127.0.0.1",
    )
    return [*llm, collector]


def write_gpu_scenario(path: Path) -> Path:
    """The simulated collector's scenario for ``NODE``: one GPU per pod of ``PODS``."""
    path.write_text(yaml.safe_dump(gpu_scenario(NODE, PODS, 0)))
    return path


def start_adapter(
    workdir: Path, kubeconfig: Path, *flags: str
) -> tuple[subprocess.Popen[bytes], int]:
    """``serve`` on a free loopback port, with ``kubeconfig``, certificates in
    ``workdir/certs``, ``flags`` and its output in ``workdir/adapter.log``; and that port."""
    port = free_port()
    with (workdir / "adapter.log").open("wb") as out:
        adapter = subprocess.Popen(
            [
                *serve_command(port),
                "--cert-dir",
                str(workdir / "certs"),
                "--kubeconfig",
                str(kubeconfig),
                *flags,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return adapter, port
