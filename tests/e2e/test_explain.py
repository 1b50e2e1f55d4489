"""``explain`` against a running adapter, real Prometheus and the fake Kubernetes API.

The scene: a Deployment ``web`` (3 replicas, selector ``app=web``) with an HPA on
``inference_queue_depth`` (AverageValue 10). Its pods: ``web-ready`` (Ready, queue
40), ``web-unready`` (Running, not Ready, queue 9 in Prometheus), ``web-quiet``
(Ready, no series at all); and ``api-0`` of another app (queue 25).

What the HPA computes from what the adapter serves (only web-ready's 40): ratio
4.0 over 1 pod; the two pods without a value are missing and count as 0 on a
scale-up: (40 + 0 + 0) / 3 = 13.333 (13333 milli, an integer mean) -> ratio 1.3333
-> ceil(1.3333 * 3) = 4.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from adapter.demo.fleet import FixedLoad, Fleet, SimulatedPod
from adapter.demo.stack import free_port, serve_command
from tests.e2e.conftest import wait_until
from tests.fakes.kube_api import FakeKubeServer, make_pod
from tests.fakes.kube_auth_api import KubeAuthState, add_auth_routes, authentication_data
from tests.fakes.kube_workloads_api import Aggregated, WorkloadsState, add_workload_routes
from tests.support.hpa import hpa_object
from tests.support.prometheus_server import PrometheusServer

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(240)]

HPA = {
    **hpa_object(),
    "status": {"currentReplicas": 3, "desiredReplicas": 3},
}


@dataclass
class Scene:
    kubeconfig: Path
    adapter_url: str
    serving_ca: Path
    workloads: WorkloadsState
    log: Path
    hpa_file: Path


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    pods = [
        SimulatedPod("ml", "web-ready", FixedLoad([], 40)),
        SimulatedPod("ml", "web-unready", FixedLoad([], 9)),
        SimulatedPod("ml", "api-0", FixedLoad([], 25)),
    ]
    fleet = Fleet(pods, tick=0.25)
    with fleet.in_thread():
        yield fleet


@pytest.fixture(scope="module")
def prom(fleet: Fleet) -> Iterator[PrometheusServer]:
    with PrometheusServer(fleet.targets) as server:
        server.wait_for("inference_queue_depth > 0", timeout=60, predicate=lambda r: len(r) == 3)
        yield server


@pytest.fixture
async def scene(tmp_path: Path, prom: PrometheusServer) -> AsyncIterator[Scene]:
    front_ca = trustme.CA()
    front_proxy = front_ca.issue_cert("front-proxy-client", common_name="front-proxy-client")
    auth = KubeAuthState()
    auth.set_configmap(authentication_data(front_ca.cert_pem.bytes().decode()))
    auth.tokens["jane-token"] = {"username": "jane", "groups": ["ml-team"]}
    auth.allow("jane", namespace="ml", subresource="inference_queue_depth")
    workloads = WorkloadsState()
    workloads.hpas[("ml", "web")] = HPA
    workloads.scales[("ml", "deployments", "web")] = (3, 3, "app=web")
    fake = FakeKubeServer(
        extensions=[
            lambda app: add_auth_routes(app, auth),
            lambda app: add_workload_routes(app, workloads, auth),
        ]
    )
    rs = ("ReplicaSet", "web-7c9d5f6b8")
    fake.state.add_pod(make_pod("ml", "web-ready", labels={"app": "web"}, owner=rs))
    fake.state.add_pod(make_pod("ml", "web-unready", labels={"app": "web"}, owner=rs, ready=False))
    fake.state.add_pod(make_pod("ml", "web-quiet", labels={"app": "web"}, owner=rs))
    fake.state.add_pod(make_pod("ml", "api-0", labels={"app": "api"}))
    await fake.start()
    port = free_port()
    log = tmp_path / "adapter.log"
    with log.open("wb") as out:
        adapter = await asyncio.create_subprocess_exec(
            *serve_command(port),
            "--cert-dir", str(tmp_path / "certs"),
            "--kubeconfig", str(fake.write_kubeconfig(tmp_path / "adapter-kubeconfig")),
            "--prometheus-url", prom.url,
            "--prometheus-refresh-interval", "1s",
            "--gpu-collector-url", "http://127.0.0.1:9",
            stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    serving_ca = tmp_path / "certs" / "apiserver.crt"
    adapter_url = f"https://127.0.0.1:{port}"
    try:

        async def started() -> bool:
            assert adapter.returncode is None, log.read_text()
            return serving_ca.exists() and b"serving custom.metrics" in log.read_bytes()

        await wait_until(started)
        context = ssl.create_default_context(cafile=str(serving_ca))
        with front_proxy.private_key_and_cert_chain_pem.tempfile() as pem:
            context.load_cert_chain(pem)
        workloads.aggregated = Aggregated(adapter_url, context)
        hpa_file = tmp_path / "hpa.yaml"
        hpa_file.write_text(json.dumps({k: v for k, v in HPA.items() if k != "status"}))
        yield Scene(
            kubeconfig=fake.write_kubeconfig(tmp_path / "jane", token="jane-token"),
            adapter_url=adapter_url,
            serving_ca=serving_ca,
            workloads=workloads,
            log=log,
            hpa_file=hpa_file,
        )
    finally:
        adapter.terminate()
        await adapter.wait()
        await fake.close()


async def explain(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapter", "explain", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def explained(scene: Scene, *extra: str) -> dict[str, Any]:
    """The JSON report, once the adapter serves web-ready's value (its first refreshes)."""

    async def ready() -> dict[str, Any] | None:
        code, out, err = await explain(
            "-n", "ml", "--hpa", "web", "--kubeconfig", str(scene.kubeconfig), "-o", "json", *extra
        )
        assert code == 0, err + scene.log.read_text()[-3000:]
        report: dict[str, Any] = json.loads(out)
        pods = {p["name"]: p for p in report["metrics"][0]["pods"]}
        return report if pods["web-ready"]["milliValue"] == 40_000 else None

    result: dict[str, Any] = await wait_until(ready, timeout=90)
    return result


def pod_rows(report: dict[str, Any]) -> list[tuple[str, Any, Any, str]]:
    return [
        (p["name"], p["milliValue"], p["reason"], p["hpa"]) for p in report["metrics"][0]["pods"]
    ]


EXPECTED_PODS = [
    ("web-quiet", None, "no_value", "missing"),
    ("web-ready", 40_000, None, "counted"),
    ("web-unready", None, "not_ready", "missing"),
]


async def test_through_the_api_server(scene: Scene) -> None:
    report = await explained(scene)
    assert pod_rows(report) == EXPECTED_PODS  # api-0, another app's pod, is not listed
    metric = report["metrics"][0]
    assert (metric["desiredReplicas"], metric["usageMilli"], metric["ratio"]) == (4, 40_000, 4.0)
    assert (metric["missingAs"], metric["rebalancedRatio"], metric["readyPods"]) == (
        0,
        1.3333,  # 40000 // 3 = 13333 milli: the controller's integer mean
        1,
    )
    assert metric["adapter"]["source"] == "prometheus"
    rule = metric["adapter"]["rule"]
    # zero-config: the built-in is read from every server family, one query each
    assert rule["form"] == "families"
    assert list(rule["queries"])[-1] == "generic"
    assert "inference_queue_depth{" in rule["queries"]["generic"]
    assert "vllm:num_requests_waiting" in rule["queries"]["vllm"]
    assert 0 <= rule["snapshotAgeSeconds"] < 30
    assert (report["currentReplicas"], report["desiredReplicas"], report["proposal"]) == (3, 4, 4)
    assert (report["error"], report["limitedBy"], report["holdBack"]) == (
        None,
        "DesiredWithinRange",
        [],
    )
    assert report["selector"] == "app=web"
    assert report["hpaStatus"] == {"currentReplicas": 3, "desiredReplicas": 3}
    # It went through the "aggregator", as jane, to the explain view of the HPA's read.
    user, path = scene.workloads.proxied[-1]
    assert user == "jane"
    assert path == (
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/*/inference_queue_depth"
        "?labelSelector=app%3Dweb&explain=true"
    )


async def test_directly_with_the_kubeconfig_credentials(scene: Scene) -> None:
    report = await explained(
        scene, "--adapter-url", scene.adapter_url, "--adapter-ca-file", str(scene.serving_ca)
    )
    assert pod_rows(report) == EXPECTED_PODS
    assert (report["metrics"][0]["desiredReplicas"], report["desiredReplicas"]) == (4, 4)


async def test_standalone_hpa_file_and_the_table(scene: Scene) -> None:
    await explained(scene)  # the adapter has its values
    code, out, err = await explain(
        "--hpa-file", str(scene.hpa_file), "--current-replicas", "3", "--selector", "app=web",
        "--kubeconfig", str(scene.kubeconfig),
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "HPA ml/web -> Deployment/web: 3 replicas (min 1, max 10) -> desired 4"
    assert lines[1:3] == ["", "Pods metric inference_queue_depth (target AverageValue 10)"]
    assert lines[3].startswith("  source prometheus, form families, snapshot ")
    queries = [line for line in lines if line.startswith("  query (")]
    assert [q.split(")")[0].removeprefix("  query (") for q in queries] == [
        "vllm", "sglang", "trtllm-serve", "triton-trtllm", "triton", "tgi", "nim", "knative",
        "generic",
    ]  # fmt: skip
    table = lines[lines.index("  POD          PHASE    READY  VALUE  HPA      REASON     FAMILY") :]
    assert table[1:4] == [
        "  web-quiet    Running  true   -      missing  no_value   -",
        "  web-ready    Running  true   40     counted  -          generic",
        "  web-unready  Running  false  -      missing  not_ready  generic",
    ]
    assert table[4] == (
        "  -> usage 40; ratio 4.000; over 1 pods with values; missing pods counted as 0;"
        " rebalanced ratio 1.333 -> desired 4"
    )
    assert lines[-1] == "Largest proposal 4; within min/max and behavior: 4 (DesiredWithinRange)"


async def test_a_stranger_gets_the_adapters_403(scene: Scene, tmp_path: Path) -> None:
    # jane's rule covers one metric: the same read of another metric is denied, so is its explain.
    hpa = json.loads(scene.hpa_file.read_text())
    hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] = "inference_latency_p95"
    other = tmp_path / "other.yaml"
    other.write_text(json.dumps(hpa))
    code, out, err = await explain(
        "--hpa-file", str(other), "--current-replicas", "3", "--selector", "app=web",
        "--kubeconfig", str(scene.kubeconfig), "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    metric = json.loads(out)["metrics"][0]
    assert metric["error"] == (
        "failed to get pods metric value: unable to get metric inference_latency_p95: "
        'pods.custom.metrics.k8s.io "*" is forbidden: User "jane" cannot get resource '
        '"pods/inference_latency_p95" in API group "custom.metrics.k8s.io" in the namespace "ml"'
    )
    assert (metric["desiredReplicas"], json.loads(out)["desiredReplicas"]) == (None, 3)


async def test_simulate_replays_a_prometheus_range(prom: PrometheusServer, tmp_path: Path) -> None:
    # web-ready's queue is 40 at every scrape: replayed as the total load of a fleet
    # under the HPA (target 10), it wants 4 pods.
    # Wait until Prometheus holds more than the replayed range (scrapes every second).
    await asyncio.to_thread(
        prom.wait_for,
        'count_over_time(inference_queue_depth{pod="web-ready"}[30s]) >= 25',
        timeout=90,
    )
    end = time.time() - 2
    start = end - 20
    hpa = tmp_path / "web.json"
    hpa.write_text(json.dumps({k: v for k, v in HPA.items() if k != "status"}))
    out_csv = tmp_path / "sim.csv"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapter", "simulate", "--prometheus-url", prom.url,
        "--start", f"{start:.3f}", "--end", f"{end:.3f}", "--step", "5s",
        "--query", 'inference_queue_depth=sum(inference_queue_depth{pod="web-ready"})',
        "--hpa-file", str(hpa), "--output-csv", str(out_csv),
        "--output-png", str(tmp_path / "sim.png"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    rows = out_csv.read_text().splitlines()
    assert rows[0] == "hpa,time,unix,metric,load,per_pod,target,desired,replicas,ready,synced"
    loads = [row.split(",")[4] for row in rows[1:]]
    replicas = [row.split(",")[8] for row in rows[1:]]
    assert (len(rows) - 1, set(loads)) == (5, {"40"})
    # From 1 replica: 40 wants 4 (= max(2 x 1, 4), the no-behavior limit) at once.
    assert replicas == ["4"] * 5
