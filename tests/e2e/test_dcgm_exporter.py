"""gpu_utilization from dcgm-exporter, end to end: a fake dcgm-exporter /metrics page in its
own exposition format, scraped by the real Prometheus the way a ServiceMonitor does it
(without honorLabels: the exporter's pod labels become ``exported_*``) and as a job that
keeps them (honorLabels), and the real ``serve`` process answering over HTTPS.

Checked on exact bodies: a pod's value is the mean over its GPUs, a Deployment's the mean
over its pods that have one; GPUs without a pod are ignored (never land on the exporter's
own pod); a pod whose series is NaN or stuck (older than the staleness bound) is omitted.
No GPU collector runs at all.
"""

from __future__ import annotations

import calendar
import json
import re
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from adapter.core.catalogue import Aggregation, MetricSpec
from adapter.core.model import PODS, MetricName
from adapter.demo.certs import make_client_credentials
from adapter.demo.stack import TEMPLATE_HASH, DemoPod, pod_list, serve_command
from adapter.sources.prometheus import promql
from adapter.sources.prometheus.rules import FamilyRule, PromLabels, parse_rule
from tests.fakes.http_thread import QuietHandler, serving
from tests.support.prometheus_server import PrometheusServer, free_port

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(240)]

NS = "ml"
EXPORTER_NS = "gpu-operator"
EXPORTER_POD = "nvidia-dcgm-exporter-7xk2p"
MODEL = "NVIDIA H100 80GB HBM3"
STUCK_FOR_SECONDS = 240  # older than --prometheus-stale-after, younger than Prometheus' 5m lookback


def pod_name(suffix: str) -> str:
    return f"llm-{TEMPLATE_HASH}-{suffix}"


A, B, NAN, STUCK = pod_name("a0001"), pod_name("b0002"), pod_name("c0003"), pod_name("d0004")


@dataclass(frozen=True)
class Gpu:
    index: int
    node: str
    value: str  # as dcgm-exporter prints it
    pod: str = ""  # "" : not attributed to a pod (dcgm-exporter writes the labels empty)
    container: str = ""
    stuck: bool = False

    @property
    def uuid(self) -> str:
        return f"GPU-5c9a1e2b-{self.node[-1]}0{self.index}0-4a7e-9b1f-0c3d5e7f9a{self.index:02d}"


GPUS = (
    Gpu(0, "gpu-node-1", "70", A, "vllm"),
    Gpu(1, "gpu-node-1", "45", A, "vllm"),  # A: two GPUs, mean 57.5
    Gpu(2, "gpu-node-1", "88"),  # idle of any pod: must be ignored
    Gpu(3, "gpu-node-1", "0"),  # the same, at 0: never a false zero for anyone
    Gpu(0, "gpu-node-2", "93", B, "vllm"),
    Gpu(1, "gpu-node-2", "NaN", NAN, "vllm"),
    Gpu(2, "gpu-node-2", "61", STUCK, "vllm", stuck=True),
)


def exposition(started_ms: int) -> str:
    """dcgm-exporter's page: HELP/TYPE per counter, its label set, one series per GPU."""
    lines = []
    for name, help_text, value_of in (
        ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda g: g.value),
        ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda g: "40960"),
    ):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for gpu in GPUS:
            labels = (
                f'gpu="{gpu.index}",UUID="{gpu.uuid}",pci_bus_id="00000000:{0x18 + gpu.index:02X}'
                f':00.0",device="nvidia{gpu.index}",modelName="{MODEL}",Hostname="{gpu.node}",'
                f'container="{gpu.container}",namespace="{NS if gpu.pod else ""}",pod="{gpu.pod}"'
            )
            # A stuck sample (its exporter froze): Prometheus keeps returning it, we must not.
            stamp = f" {started_ms - STUCK_FOR_SECONDS * 1000}" if gpu.stuck else ""
            lines.append(f"{name}{{{labels}}} {value_of(gpu)}{stamp}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def dcgm_exporter() -> Iterator[str]:
    body = exposition(int(time.time() * 1000)).encode()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            status = 200 if self.path == "/metrics" else 404
            self.reply(status, body, "text/plain; version=0.0.4; charset=utf-8")

    with serving(Handler, free_port()) as port:
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def prom(dcgm_exporter: str) -> Iterator[PrometheusServer]:
    scrape = {"scrape_interval": "1s", "scrape_timeout": "1s"}
    extra = {
        "scrape_configs": [
            # What a ServiceMonitor (honorLabels: false) does: the target's own pod labels win,
            # dcgm-exporter's become exported_namespace / exported_pod / exported_container.
            {
                "job_name": "dcgm",
                **scrape,
                "static_configs": [
                    {
                        "targets": [dcgm_exporter],
                        "labels": {
                            "namespace": EXPORTER_NS,
                            "pod": EXPORTER_POD,
                            "container": "nvidia-dcgm-exporter",
                        },
                    }
                ],
            },
            # A job that keeps dcgm-exporter's labels (honorLabels: true, no pod target labels).
            {
                "job_name": "dcgm-honor",
                "honor_labels": True,
                **scrape,
                "static_configs": [{"targets": [dcgm_exporter]}],
            },
        ]
    }
    with PrometheusServer([], extra) as server:
        server.wait_for(
            "count(DCGM_FI_DEV_GPU_UTIL)",
            timeout=60,
            predicate=lambda r: bool(r) and float(r[0]["value"][1]) == 2 * len(GPUS),
        )
        yield server


RULES = {
    "presets": ["vllm", "dcgm-exporter"],
    "metrics": [
        # The preset's gpu_utilization (exported_* labels), on the ServiceMonitor-like job.
        {"name": "gpu_utilization", "prometheus": {"selector": 'job="dcgm"'}},
        # The same series kept under dcgm-exporter's own labels (honorLabels: true), read by
        # a gauge rule of another name with its own label names: per pod the mean over its GPUs.
        {
            "name": "gpu_utilization_honor_labels",
            "source": "prometheus",
            "resources": ["pods", "deployments.apps"],
            "unit": "percent",
            "aggregate": "mean",
            "prometheus": {
                "gauge": "DCGM_FI_DEV_GPU_UTIL",
                "namespaceLabel": "namespace",
                "podLabel": "pod",
                "selector": 'job="dcgm-honor"',
            },
        },
    ],
}


class Adapter:
    def __init__(self, tmp: Path, prometheus_url: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        (tmp / "rules.yaml").write_text(yaml.safe_dump(RULES))
        pods = pod_list(
            [
                DemoPod(name, node, f"10.42.0.{i + 10}", f"6f1d2c3b-0000-4000-8000-{i:012d}")
                for i, (name, node) in enumerate(
                    [
                        (A, "gpu-node-1"),
                        (B, "gpu-node-2"),
                        (NAN, "gpu-node-2"),
                        (STUCK, "gpu-node-2"),
                    ]
                )
            ]
            + [DemoPod(EXPORTER_POD, "gpu-node-1", "10.42.0.99", "7a2b3c4d-0000-4000-8000-0")]
        )
        exporter_pod = pods["items"][-1]
        exporter_pod["metadata"]["namespace"] = EXPORTER_NS
        exporter_pod["metadata"]["labels"] = {"app": "nvidia-dcgm-exporter"}
        del exporter_pod["metadata"]["ownerReferences"]
        (tmp / "pods.yaml").write_text(yaml.safe_dump(pods))
        self.creds = make_client_credentials(tmp / "client")
        self.log = (tmp / "adapter.log").open("wb")
        self.proc = subprocess.Popen(
            [
                *serve_command(self.port),
                "--cert-dir", str(tmp / "certs"),
                "--pods-file", str(tmp / "pods.yaml"),
                "--client-ca-file", str(self.creds.ca_file),
                "--config", str(tmp / "rules.yaml"),
                "--prometheus-url", prometheus_url,
                "--prometheus-refresh-interval", "1s",
                "--prometheus-stale-after", "60s",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        cert = tmp / "certs" / "apiserver.crt"
        deadline = time.monotonic() + 60
        try:
            while not cert.exists() or b"serving custom.metrics" not in self.log_bytes():
                assert self.proc.poll() is None, self.log_bytes().decode()
                assert time.monotonic() < deadline, "adapter did not start"
                time.sleep(0.1)
        except AssertionError:
            self.stop()
            raise
        self.tls = ssl.create_default_context(cafile=str(cert))
        self.tls.load_cert_chain(str(self.creds.cert_file), str(self.creds.key_file))

    def log_bytes(self) -> bytes:
        return (self.tmp / "adapter.log").read_bytes()

    def get(self, path: str) -> Any:
        url = f"https://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, context=self.tls, timeout=10) as response:
            assert response.status == 200
            return json.load(response)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()


@pytest.fixture(scope="module")
def adapter(prom: PrometheusServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Adapter]:
    server = Adapter(tmp_path_factory.mktemp("dcgm"), prom.url)
    yield server
    server.stop()


def values_when(adapter: Adapter, path: str, names: set[str], timeout: float = 60.0) -> Any:
    """Poll until the list answers exactly ``names`` (the first refreshes may precede scrapes)."""
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        body = adapter.get(path)
        if {item["describedObject"]["name"] for item in body["items"]} == names:
            return body
        time.sleep(0.25)
    raise AssertionError(f"{path} never answered {sorted(names)}; last: {body}")


RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def with_timestamps(body: Any, started: float) -> Any:
    """Check every item's timestamp (a recent sample's own time) and blank it for comparison."""
    for item in body["items"]:
        stamp = item["timestamp"]
        assert RFC3339.fullmatch(stamp), stamp
        seconds = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
        assert started - 2 <= seconds <= time.time() + 1, (stamp, started)
        item["timestamp"] = "<sample time>"
    return body


def pod_item(name: str, metric: str, value: str) -> dict[str, Any]:
    return {
        "describedObject": {"kind": "Pod", "namespace": NS, "name": name, "apiVersion": "v1"},
        "metric": {"name": metric, "selector": None},
        "timestamp": "<sample time>",
        "value": value,
    }


@pytest.mark.parametrize("metric", ["gpu_utilization", "gpu_utilization_honor_labels"])
def test_pods_get_the_mean_over_their_gpus_and_nan_or_stuck_pods_are_omitted(
    adapter: Adapter, prom: PrometheusServer, metric: str
) -> None:
    started = time.time() - STUCK_FOR_SECONDS + 30  # every served sample is newer than this
    body = values_when(
        adapter, f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/pods/*/{metric}", {A, B}
    )
    assert with_timestamps(body, started) == {
        "kind": "MetricValueList",
        "apiVersion": "custom.metrics.k8s.io/v1beta2",
        "metadata": {},
        "items": [pod_item(A, metric, "57500m"), pod_item(B, metric, "93")],
    }
    # Prometheus does answer for the NaN and stuck pods: leaving them out is the adapter's doing.
    there = prom.query(f'DCGM_FI_DEV_GPU_UTIL{{job="dcgm",exported_pod=~"{NAN}|{STUCK}"}}')
    assert sorted((r["metric"]["exported_pod"], r["value"][1]) for r in there) == [
        (NAN, "NaN"),
        (STUCK, "61"),
    ]
    # Asked by label selector, they are still absent, never 0.
    selected = adapter.get(
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/pods/*/{metric}"
        "?labelSelector=app%3Dllm"
    )
    assert [item["describedObject"]["name"] for item in selected["items"]] == [A, B]


@pytest.mark.parametrize("metric", ["gpu_utilization", "gpu_utilization_honor_labels"])
def test_the_deployment_is_the_mean_over_its_pods_with_a_value(
    adapter: Adapter, metric: str
) -> None:
    values_when(
        adapter, f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/pods/*/{metric}", {A, B}
    )
    body = adapter.get(
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/deployments.apps/llm/{metric}"
    )
    assert with_timestamps(body, time.time() - STUCK_FOR_SECONDS + 30) == {
        "kind": "MetricValueList",
        "apiVersion": "custom.metrics.k8s.io/v1beta2",
        "metadata": {},
        "items": [
            {
                "describedObject": {
                    "kind": "Deployment",
                    "namespace": NS,
                    "name": "llm",
                    "apiVersion": "apps/v1",
                },
                "metric": {"name": metric, "selector": None},
                "timestamp": "<sample time>",
                "value": "75250m",  # (57.5 + 93) / 2: the NaN and stuck pods are left out
            }
        ],
    }


def test_gpus_without_a_pod_never_land_on_the_exporters_own_pod(
    adapter: Adapter, prom: PrometheusServer
) -> None:
    values_when(
        adapter,
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/pods/*/gpu_utilization",
        {A, B},
    )
    # Without honorLabels the idle GPUs' series do carry the exporter's pod label ...
    idle = prom.query(f'DCGM_FI_DEV_GPU_UTIL{{job="dcgm",pod="{EXPORTER_POD}",exported_pod=""}}')
    assert sorted(r["metric"]["gpu"] for r in idle) == ["2", "3"]
    # ... and the adapter reads exported_pod: the exporter's pod has no value.
    body = adapter.get(
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{EXPORTER_NS}/pods/*/gpu_utilization"
    )
    assert body["items"] == []
    # No collector runs, and none is missed: gpu_utilization comes from Prometheus.
    assert b"gpu-collector" not in adapter.log_bytes()
    # Discovery lists the preset's gpu_utilization for pods and workloads, not nodes.
    resources = adapter.get("/apis/custom.metrics.k8s.io/v1beta2")["resources"]
    names = {r["name"] for r in resources if r["name"].endswith("/gpu_utilization")}
    assert names == {
        "pods/gpu_utilization",
        "deployments.apps/gpu_utilization",
        "statefulsets.apps/gpu_utilization",
    }


# --- arbitrary valid label names: every form's query is PromQL the real Prometheus accepts ---

_RESERVED = {"le", promql.PART_LABEL, "adapter_series"}
_label_names = st.from_regex(promql.LABEL_NAME_RE, fullmatch=True).filter(
    lambda n: not n.startswith("__") and n not in _RESERVED
)
_FORMS: dict[str, tuple[str, dict[str, Any], Aggregation]] = {
    "histogram": ("h", {"histogram": "DCGM_FI_DEV_GPU_UTIL"}, Aggregation.HISTOGRAM),
    "gauge": ("g", {"gauge": "DCGM_FI_DEV_GPU_UTIL"}, Aggregation.MEAN),
    "query": (
        "q",
        {"query": "avg by (<<groupBy>>) (avg_over_time(DCGM_FI_DEV_GPU_UTIL{<<matchers>>}[1m]))"},
        Aggregation.MEAN,
    ),
    "families": ("gpu_utilization", {"families": ["dcgm-exporter"]}, Aggregation.MEAN),
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(form=st.sampled_from(list(_FORMS)), namespace=_label_names, pod=_label_names)
@example(form="gauge", namespace="Hostname", pod="gpu")  # labels the series do carry
@example(form="families", namespace="exported_namespace", pod="UUID")
@example(form="query", namespace="job", pod="instance")
def test_any_valid_label_names_give_queries_prometheus_accepts(
    prom: PrometheusServer, form: str, namespace: str, pod: str
) -> None:
    assume(namespace != pod)
    name, options, aggregate = _FORMS[form]
    spec = MetricSpec(
        MetricName(name),
        "prometheus",
        (PODS,),
        aggregate=aggregate,
        options={**options, "namespaceLabel": namespace, "podLabel": pod},
    )
    rule = parse_rule(spec, PromLabels())
    texts = [q for _, q in rule.queries()] if isinstance(rule, FamilyRule) else [rule.query()]
    for text in texts:
        # Raises with Prometheus' message when it does not parse. Whatever it answers (a
        # name like gpu or job does match series) is grouped by exactly these two labels.
        for row in prom.query(text):
            assert row["metric"][namespace]
            assert row["metric"][pod]
            assert set(row["metric"]) <= {namespace, pod, promql.PART_LABEL}
