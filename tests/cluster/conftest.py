"""Fixtures of the real-control-plane suite (see controlplane.py and tests/cluster/README.md).

Session scope, started once: the control plane; the base installed server-side from deploy/;
a real Prometheus scraping simulated inference servers whose pods are the API server's real pods;
a simulated GPU collector; and the real adapter, with the token of the ServiceAccount the base
created and a serving certificate the APIServices' caBundle verifies. Every test is skipped,
with the reason, when the binaries are absent (CI has none).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server

from adapter.demo.fleet import BUCKETS
from adapter.demo.stack import serve_command
from tests.cluster.controlplane import (
    Authority,
    ControlPlane,
    KeyPair,
    Pki,
    Process,
    Workdir,
    b64,
    free_port,
    missing_assets,
    pod_ips,
    spawn,
    wait_until,
)
from tests.deploy.support import DEPLOY, find, render
from tests.support.prometheus_server import PrometheusServer

ADAPTER_NS = "inference-metrics"
ADAPTER = "inference-metrics-adapter"
SERVICE_DNS = f"{ADAPTER}.{ADAPTER_NS}.svc"
APISERVICES = ("v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io")
CRD_DIR = Path("/work/shared/schemas/prometheus-operator")
LONG_AGO = datetime.timedelta(minutes=10)

RULES = """\
serving:
  omitUnready: true
  warmup: 120s
includeDefaults: true
metrics:
  - name: inference_latency_p95
    prometheus:
      histogram: inference_duration_seconds
      quantile: 0.95
      window: 20s
"""


# Tests of the suite's own helpers, which need no control plane (they run in CI too).
OFFLINE = "test_controlplane.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = missing_assets()
    here = Path(__file__).parent
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == here and path.name != OFFLINE:
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.timeout(420))
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


# Workloads: simulated inference servers for the API server's real pods ------------------------


@dataclass
class Scenario:
    """What the simulated servers of one Deployment report, and whether pods become Ready.

    ``queue_total`` is spread evenly over the Ready pods (load conservation: the HPA's fixed
    point is then ceil(total / target), whatever the path); ``queue_by_pod`` sets pods one by one.
    ``latency`` is the duration every request of every Ready pod takes (5 per tick).
    ``gpu`` is each Ready pod's GPU utilization in percent, through the simulated collector.
    """

    namespace: str
    selector: str = "app=server"
    auto_ready: bool = True
    queue_total: float | None = None
    queue_by_pod: dict[str, float] = field(default_factory=dict)
    latency: float | None = None
    gpu: float | None = None


class Fleet:
    """Exporters and the kubelet's part, driven from the API server's pods every tick."""

    def __init__(self, plane: ControlPlane, workdir: Path) -> None:
        self.plane = plane
        self.workdir = workdir
        self.registry = CollectorRegistry()
        self.queue = Gauge(
            "inference_queue_depth", "Requests waiting (SIMULATED).", ["namespace", "pod"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "inference_duration_seconds", "Request duration (SIMULATED).", ["namespace", "pod"],
            buckets=BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.port = free_port()
        self.server, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self.collector_port = free_port()
        self.collector: Process | None = None
        self._gpu_key: tuple[Any, ...] = ()
        self._scenarios: dict[str, Scenario] = {}
        self._exported: set[tuple[str, str]] = set()
        self._ips = pod_ips()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.errors: list[str] = []
        self._write_gpu([])
        self._thread = threading.Thread(target=self._run, name="cluster-fleet", daemon=True)
        self._thread.start()

    def set(self, scenario: Scenario) -> None:
        with self._lock:
            self._scenarios[scenario.namespace] = scenario

    def drop(self, namespace: str) -> None:
        with self._lock:
            self._scenarios.pop(namespace, None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.server.shutdown()
        if self.collector is not None:
            self.collector.stop()

    # --- the loop ---

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._tick()
            except Exception as e:
                self.errors.append(f"{type(e).__name__}: {e}")
                del self.errors[:-20]

    def _tick(self) -> None:
        with self._lock:
            scenarios = list(self._scenarios.values())
        exported: set[tuple[str, str]] = set()
        gpu_pods: list[tuple[dict[str, Any], float]] = []
        for scenario in scenarios:
            pods = self.plane.pods(scenario.namespace, scenario.selector)
            pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            if scenario.auto_ready:
                for pod in pods:
                    if pod.get("status", {}).get("phase") != "Running":
                        self.plane.mark_running(
                            pod, ready=True, ready_since=_now() - LONG_AGO, ip=next(self._ips)
                        )
            ready = [p["metadata"]["name"] for p in pods if _ready(p)]
            for name in ready:
                key = (scenario.namespace, name)
                exported.add(key)
                if name in scenario.queue_by_pod:
                    self.queue.labels(*key).set(scenario.queue_by_pod[name])
                elif scenario.queue_total is not None:
                    self.queue.labels(*key).set(scenario.queue_total / len(ready))
                if scenario.latency is not None:
                    child = self.latency.labels(*key)
                    for _ in range(5):
                        child.observe(scenario.latency)
            if scenario.gpu is not None:
                gpu_pods += [(p, scenario.gpu) for p in pods if _ready(p)]
        for key in self._exported - exported:
            with contextlib.suppress(KeyError):
                self.queue.remove(*key)
            with contextlib.suppress(KeyError):
                self.latency.remove(*key)
        self._exported = exported
        self._write_gpu(gpu_pods)

    def _write_gpu(self, pods: list[tuple[dict[str, Any], float]]) -> None:
        """The simulated collector's scenario: one exclusive GPU per pod; restarted on change."""
        key = tuple(sorted((p["metadata"]["uid"], value) for p, value in pods))
        if key == self._gpu_key and self.collector is not None:
            return
        self._gpu_key = key
        path = self.workdir / "gpu-scenario.yaml"
        path.write_text(yaml.safe_dump(gpu_scenario(pods)))
        if self.collector is not None:
            self.collector.stop()
        self.collector = spawn(
            "gpu-collector",
            [sys.executable, "-m", "collectors.gpu", "--simulate", str(path),
             "--listen", f"127.0.0.1:{self.collector_port}", "--node-name", "sim-gpu-node-1"],
            self.workdir,
        )  # fmt: skip


def gpu_scenario(pods: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    """A gpu-collector ``--simulate`` scenario: one exclusive GPU per (pod, utilization)."""
    gpus, scenario_pods = [], []
    for i, (pod, value) in enumerate(pods):
        uuid = f"GPU-c1u5e7e5-0000-4000-8000-{i:012d}"
        gpus.append({"uuid": uuid, "name": "simulated GPU", "utilization": value})
        meta = pod["metadata"]
        scenario_pods.append(
            {
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "containers": [
                    {
                        "name": "server",
                        "gpus": [uuid],
                        "processes": [{"pid": 7000 + i, "utilization": value}],
                    }
                ],
            }
        )
    if not gpus:  # a scenario needs a GPU: an idle one, assigned to no pod
        gpus.append({"uuid": "GPU-c1u5e7e5-0000-4000-8000-0000000000ff", "utilization": 0})
    return {"node": "sim-gpu-node-1", "gpus": gpus, "pods": scenario_pods}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    return status.get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
    )


# The installation -----------------------------------------------------------------------------


@dataclass
class Cluster:
    plane: ControlPlane
    workdir: Path
    fleet: Fleet
    prometheus: PrometheusServer
    adapter: Process
    adapter_port: int
    serving_ca: KeyPair
    adapter_token: str

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, **kwargs)

    def adapter_url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.adapter_port}{path}"

    def namespace(self, name: str) -> str:
        self.plane.request(
            "POST", "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )  # fmt: skip
        return name


def _apply(plane: ControlPlane, *args: str) -> None:
    result = plane.kubectl("apply", "--server-side", "--force-conflicts", *args)
    assert result.returncode == 0, f"kubectl apply {args}:\n{result.stderr}\n{result.stdout}"


CERT_MANAGER_CRDS = [
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.cert-manager.io"},
        "spec": {
            "group": "cert-manager.io",
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "listKind": f"{kind}List",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    for kind, plural in (("Certificate", "certificates"), ("Issuer", "issuers"))
]


def install_crds(plane: ControlPlane) -> None:
    """The Prometheus Operator CRDs (shared/schemas) and a schemaless stand-in for cert-manager's."""
    for path in sorted(CRD_DIR.glob("*.yaml")):
        _apply(plane, "-f", str(path))
    result = plane.kubectl(
        "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(CERT_MANAGER_CRDS)
    )
    assert result.returncode == 0, result.stderr
    result = plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    assert result.returncode == 0, result.stderr


def point_apiservices(plane: ControlPlane, port: int, ca_pem: bytes) -> None:
    """The base's APIServices aimed at localhost:``port`` and verified with ``ca_pem``.

    Applied server-side by kubectl's own field manager, like ``kubectl apply -k``: later
    applies of deploy/ (the dry runs) then replace these fields instead of merging with them.
    """
    docs = []
    for name in APISERVICES:
        doc = copy.deepcopy(find(render("base"), "APIService", name))
        doc["spec"].pop("insecureSkipTLSVerify")
        doc["spec"]["caBundle"] = b64(ca_pem)
        doc["spec"]["service"]["port"] = port
        docs.append(doc)
    result = plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump_all(docs)
    )
    assert result.returncode == 0, result.stderr


def register_apiservices(plane: ControlPlane, port: int, ca: KeyPair) -> None:
    """Point the base's APIServices at the adapter on localhost:port, verified with ``ca``.

    The Service becomes ``type: ExternalName`` (localhost), which the aggregator resolves to
    https://localhost:<port>; it verifies the certificate for <service>.<namespace>.svc.
    """
    plane.request("DELETE", f"/api/v1/namespaces/{ADAPTER_NS}/services/{ADAPTER}")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": ADAPTER, "namespace": ADAPTER_NS},
        "spec": {
            "type": "ExternalName",
            "externalName": "localhost",
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
    }
    wait_until(
        "the ClusterIP Service gone",
        lambda: plane.status_of(f"/api/v1/namespaces/{ADAPTER_NS}/services/{ADAPTER}") == 404,
        30,
    )
    result = plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump(service)
    )
    assert result.returncode == 0, result.stderr
    point_apiservices(plane, port, ca.pem())


def apiservice_available(plane: ControlPlane, name: str) -> tuple[str, str]:
    status = plane.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")["status"]
    for condition in status.get("conditions", []):
        if condition["type"] == "Available":
            return condition["status"], condition.get("message", "")
    return "Unknown", ""


@pytest.fixture(scope="session")
def plane() -> Iterator[ControlPlane]:
    reason = missing_assets()
    if reason:
        pytest.skip(reason)
    workdir = Workdir.create()
    plane = ControlPlane(workdir.path, Pki.create(workdir.path))
    try:
        plane.start()
        yield plane
    except Exception:
        print(plane.logs(), file=sys.stderr)
        raise
    finally:
        plane.stop()
        workdir.remove()


@pytest.fixture(scope="session")
def cluster(plane: ControlPlane) -> Iterator[Cluster]:
    workdir = plane.workdir / "install"
    workdir.mkdir()
    install_crds(plane)
    _apply(plane, "-k", str(DEPLOY / "base"))
    # The adapter runs as the ServiceAccount the base created, with the base's RBAC only.
    token = plane.token_for(ADAPTER_NS, ADAPTER)
    kubeconfig = plane.write_kubeconfig(workdir / "adapter.kubeconfig", token=token)
    serving_ca = Authority(workdir, "adapter-serving-ca")
    serving = serving_ca.issue(
        "adapter-serving",
        ADAPTER,
        dns=(SERVICE_DNS, "localhost"),
        ips=("127.0.0.1",),
        server=True,
    )
    fleet = Fleet(plane, workdir)
    prometheus = PrometheusServer([f"127.0.0.1:{fleet.port}"])
    prometheus.start()
    rules = workdir / "rules.yaml"
    rules.write_text(RULES)
    port = free_port()
    adapter = spawn(
        "adapter",
        [
            *serve_command(port),
            "--tls-cert-file", str(serving.cert),
            "--tls-private-key-file", str(serving.key),
            "--kubeconfig", str(kubeconfig),
            "--config", str(rules),
            "--prometheus-url", prometheus.url,
            "--prometheus-refresh-interval", "2s",
            "--gpu-collector-url", f"http://127.0.0.1:{fleet.collector_port}",
            "--gpu-pull-interval", "1s",
            "--log-level", "info",
        ],
        workdir,
    )  # fmt: skip
    cluster = Cluster(plane, workdir, fleet, prometheus, adapter, port, serving_ca.pair, token)
    try:
        register_apiservices(plane, port, serving_ca.pair)
        for name in APISERVICES:

            def available(name: str = name) -> bool:
                return apiservice_available(plane, name)[0] == "True"

            wait_until(f"APIService {name} Available", available, 120)
        yield cluster
    except Exception:
        print(f"--- adapter ---\n{adapter.tail()}\n{plane.logs()}", file=sys.stderr)
        raise
    finally:
        adapter.stop()
        fleet.close()
        prometheus.close()


def wait_for(what: str, check: Any, timeout: float = 180.0) -> None:
    """wait_until with the suite's default deadline (the HPA syncs every 5 s; windows are 20 s)."""
    wait_until(what, check, timeout, interval=0.5)
