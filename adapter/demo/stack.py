"""The local demo stack: everything real except the workload and the GPUs.

- a SIMULATED inference fleet (``adapter.demo.fleet``): one exporter per pod with
  the latency histogram and the queue gauge, under changing load;
- SIMULATED GPU nodes: one ``gpu-collector --simulate`` per node;
- a real Prometheus (the Debian package) on 127.0.0.1 scraping all of them, and
  the adapter's own /metrics over mutual TLS;
- the real adapter (``inference-metrics-adapter serve``) in standalone mode
  (``--pods-file``), reading Prometheus and the collectors;
- a kubeconfig with a client certificate, for ``kubectl get --raw``.

Every process binds 127.0.0.1 only and is stopped by :meth:`DemoStack.stop`.
Used by ``inference-metrics-adapter demo`` and by the end-to-end tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from adapter.demo.certs import ClientCredentials, make_client_credentials

NAMESPACE = "ml"
DEPLOYMENT = "llm"
TEMPLATE_HASH = "6d9f7c8b5"
READY_SINCE = "2026-01-01T00:00:00Z"
_SUFFIX = "bcdfghjklmnpqrstvwxz"


@dataclass(frozen=True)
class DemoPod:
    name: str
    node: str
    ip: str
    uid: str
    ready: bool = True


def demo_pods(nodes: int, pods_per_node: int) -> list[DemoPod]:
    """The Deployment's pods, spread over the GPU nodes, plus one that is not Ready yet."""
    pods = []
    for n in range(nodes):
        for p in range(pods_per_node):
            index = n * pods_per_node + p
            pods.append(
                DemoPod(
                    name=f"{DEPLOYMENT}-{TEMPLATE_HASH}-{_SUFFIX[index % len(_SUFFIX)]}{index:04d}",
                    node=f"gpu-node-{n + 1}",
                    ip=f"10.42.{n}.{10 + p}",
                    uid=f"6f1d2c3b-0000-4000-8000-{index:012d}",
                )
            )
    pods.append(
        DemoPod(
            f"{DEPLOYMENT}-{TEMPLATE_HASH}-loading",
            "gpu-node-1",
            "10.42.0.99",
            "6f1d2c3b-0000-4000-8000-999999999999",
            ready=False,
        )
    )
    return pods


def pod_list(pods: list[DemoPod]) -> dict[str, Any]:
    items = []
    for pod in pods:
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod.name,
                    "namespace": NAMESPACE,
                    "uid": pod.uid,
                    "labels": {"app": DEPLOYMENT, "pod-template-hash": TEMPLATE_HASH},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "ReplicaSet",
                            "name": f"{DEPLOYMENT}-{TEMPLATE_HASH}",
                            "uid": "rs-uid",
                            "controller": True,
                        }
                    ],
                },
                "spec": {"nodeName": pod.node},
                "status": {
                    "phase": "Running",
                    "podIP": pod.ip,
                    "startTime": READY_SINCE,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True" if pod.ready else "False",
                            "lastTransitionTime": READY_SINCE,
                        }
                    ],
                },
            }
        )
    return {"apiVersion": "v1", "kind": "PodList", "items": items}


def gpu_scenario(node: str, pods: list[DemoPod], index: int) -> dict[str, Any]:
    """One simulated GPU per pod on ``node`` (exclusive), utilization waving over two minutes."""
    gpus, scenario_pods = [], []
    for i, pod in enumerate(p for p in pods if p.node == node):
        uuid = f"GPU-d3m0{index:04d}-0000-4000-8000-{i:012d}"
        gpus.append(
            {
                "uuid": uuid,
                "name": "NVIDIA H100 80GB HBM3 (simulated)",
                "memoryTotalBytes": 85899345920,
            }
        )
        base = 35 + 20 * i + 10 * index
        scenario_pods.append(
            {
                "namespace": NAMESPACE,
                "name": pod.name,
                "uid": pod.uid,
                "containers": [
                    {
                        "name": "server",
                        "gpus": [uuid],
                        "processes": [
                            {
                                "pid": 5000 + 100 * index + i,
                                "memoryBytes": 34359738368,
                                "utilization": {
                                    "mode": "linear",
                                    "repeat": True,
                                    "keyframes": [[0, base], [60, min(base + 45, 98)], [120, base]],
                                },
                            }
                        ],
                    }
                ],
            }
        )
    if index == 1:  # one MIG-partitioned GPU, unassigned: per-MIG series through GPM
        gpus.append(
            {
                "uuid": f"GPU-d3m0{index:04d}-0000-4000-8000-0000000000ff",
                "name": "NVIDIA H100 80GB HBM3 (simulated, MIG)",
                "memoryTotalBytes": 85899345920,
                "mig": {
                    "gpm": True,
                    "devices": [
                        {
                            "uuid": f"MIG-d3m0{index:04d}-0000-4000-8000-00000000000{m}",
                            "memoryTotalBytes": 10737418240,
                            "utilization": 20 + 15 * m,
                        }
                        for m in range(2)
                    ],
                },
            }
        )
    return {"node": node, "gpus": gpus, "pods": scenario_pods}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float, context: Any = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError as e:
            last = e
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s: {last}")


def serve_command(port: int) -> list[str]:
    """argv that starts ``inference-metrics-adapter serve`` from this interpreter, on
    127.0.0.1:``port`` (the demo, the end-to-end tests and the benchmarks add their flags)."""
    return [
        sys.executable, "-m", "adapter", "serve",
        "--bind-address", "127.0.0.1", "--secure-port", str(port),
    ]  # fmt: skip


def collector_command(scenario: Path, port: int, node: str) -> list[str]:
    """argv that starts the GPU node collector from this interpreter, simulating ``node``
    from the ``scenario`` file, on 127.0.0.1:``port``."""
    return [
        sys.executable, "-m", "collectors.gpu", "--simulate", str(scenario),
        "--listen", f"127.0.0.1:{port}", "--node-name", node,
    ]  # fmt: skip


@dataclass
class DemoStack:
    workdir: Path
    nodes: int = 2
    pods_per_node: int = 2
    prometheus_binary: str = field(
        default_factory=lambda: os.environ.get("PROMETHEUS_BINARY", "prometheus")
    )
    rule_files: tuple[Path, ...] = ()
    adapter_args: tuple[str, ...] = ()
    # (job, host:port) of further scrape targets, e.g. a test's stand-in for kube-state-metrics.
    extra_scrape: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # Prometheus and kubectl resolve relative paths against their config file.
        self.workdir = self.workdir.resolve()
        self.pods = demo_pods(self.nodes, self.pods_per_node)
        self._procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
        self.fleet_ports = [free_port() for _ in self.pods if _.ready]
        self.collector_ports = [free_port() for _ in range(self.nodes)]
        self.prometheus_port = free_port()
        self.adapter_port = free_port()

    # -- endpoints -------------------------------------------------------------------
    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def adapter_url(self) -> str:
        return f"https://127.0.0.1:{self.adapter_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def serving_cert(self) -> Path:
        return self.workdir / "certs" / "apiserver.crt"

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> DemoStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        if shutil.which(self.prometheus_binary) is None:
            raise RuntimeError(f"{self.prometheus_binary!r} not found: apt-get install prometheus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.credentials = make_client_credentials(self.workdir / "client")
        (self.workdir / "pods.yaml").write_text(yaml.safe_dump(pod_list(self.pods)))
        self._start_fleet()
        self._start_collectors()
        self._start_adapter()
        self._write_prometheus_config()
        self._spawn(
            "prometheus",
            [
                self.prometheus_binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
        )
        for port in self.collector_ports:
            _wait_http(f"http://127.0.0.1:{port}/healthz", timeout)
        _wait_http(f"{self.prometheus_url}/-/ready", timeout)
        self._wait_adapter(timeout)
        self._write_kubeconfig()

    def stop(self) -> None:
        for _name, proc, _log in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc, log in reversed(self._procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            log.close()
        self._procs.clear()

    def kill(self, name: str) -> None:
        """Stop one component abruptly (SIGKILL), e.g. ``collector-gpu-node-2``."""
        for proc_name, proc, _log in self._procs:
            if proc_name == name and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
                return
        raise KeyError(name)

    # -- pieces ------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # noqa: S603
        self._procs.append((name, proc, log))
        return proc

    def _start_fleet(self) -> None:
        serving = [p for p in self.pods if p.ready]
        for pod, port in zip(serving, self.fleet_ports, strict=True):
            self._spawn(
                f"fleet-{pod.name}",
                [
                    sys.executable,
                    "-m",
                    "adapter.demo.fleet",
                    "--pods",
                    f"{NAMESPACE}/{pod.name}",
                    "--port-base",
                    str(port),
                    "--host",
                    "127.0.0.1",
                    "--seed",
                    str(port % 97),
                ],
            )

    def _start_collectors(self) -> None:
        for index, port in enumerate(self.collector_ports):
            node = f"gpu-node-{index + 1}"
            scenario = self.workdir / f"gpu-{node}.yaml"
            scenario.write_text(
                yaml.safe_dump(gpu_scenario(node, [p for p in self.pods if p.ready], index))
            )
            self._spawn(f"collector-{node}", collector_command(scenario, port, node))

    def _start_adapter(self) -> None:
        argv = [
            *serve_command(self.adapter_port),
            "--cert-dir",
            str(self.workdir / "certs"),
            "--pods-file",
            str(self.workdir / "pods.yaml"),
            "--client-ca-file",
            str(self.credentials.ca_file),
            "--prometheus-url",
            self.prometheus_url,
            "--prometheus-refresh-interval",
            "2s",
            "--gpu-pull-interval",
            "1s",
        ]
        for port in self.collector_ports:
            argv += ["--gpu-collector-url", f"http://127.0.0.1:{port}"]
        self._spawn("adapter", [*argv, *self.adapter_args])

    def _wait_adapter(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.serving_cert.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the adapter did not write its serving certificate")
            time.sleep(0.2)
        import ssl  # noqa: PLC0415

        context = ssl.create_default_context(cafile=str(self.serving_cert))
        _wait_http(f"{self.adapter_url}/readyz", max(1.0, deadline - time.monotonic()), context)

    def _write_prometheus_config(self) -> None:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": "inference",
                    "honor_labels": True,
                    "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in self.fleet_ports]}],
                },
                {
                    "job_name": "gpu-collector",
                    "honor_labels": True,
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{p}" for p in self.collector_ports]}
                    ],
                },
                {
                    "job_name": "inference-metrics-adapter",
                    "scheme": "https",
                    "tls_config": {
                        "ca_file": str(self.serving_cert),
                        "cert_file": str(self.credentials.cert_file),
                        "key_file": str(self.credentials.key_file),
                    },
                    "static_configs": [{"targets": [f"127.0.0.1:{self.adapter_port}"]}],
                },
                *(
                    {
                        "job_name": job,
                        "honor_labels": True,
                        "static_configs": [{"targets": [target]}],
                    }
                    for job, target in self.extra_scrape
                ),
            ],
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))

    def _write_kubeconfig(self) -> None:
        creds: ClientCredentials = self.credentials
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "demo",
            "clusters": [
                {
                    "name": "demo",
                    "cluster": {
                        "server": self.adapter_url,
                        "certificate-authority": str(self.serving_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "demo-admin",
                    "user": {
                        "client-certificate": str(creds.cert_file),
                        "client-key": str(creds.key_file),
                    },
                }
            ],
            "contexts": [{"name": "demo", "context": {"cluster": "demo", "user": "demo-admin"}}],
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
