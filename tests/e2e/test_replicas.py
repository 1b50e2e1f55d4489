"""Two replicas behind one Service answer the same read with the same bytes.

Two real ``serve`` processes (different hash seeds, so no answer may depend on
dict or set order) read the same pods file and the same Prometheus (a loopback
fake answering the refresh queries with fixed vectors); every read, cached or
computed, must be byte-identical across them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from adapter.demo.certs import make_client_credentials
from adapter.demo.stack import free_port, serve_command
from tests.fakes.http_thread import QuietHandler, serving

T = 1_800_000_000.0
PODS = [f"llm-5f6d7c8b9-{i:05d}" for i in range(5)]
LES = ("0.05", "0.1", "0.25", "0.5", "1", "+Inf")
GROUP = "/apis/custom.metrics.k8s.io"
READS = [
    "v1beta2/namespaces/ml/pods/*/inference_latency_p95",
    "v1beta2/namespaces/ml/pods/*/inference_latency_p95?labelSelector=app%3Dllm",
    "v1beta1/namespaces/ml/pods/*/inference_queue_depth",
    "v1beta2/namespaces/ml/deployments.apps/llm/inference_latency_p95",
    f"v1beta2/namespaces/ml/pods/{PODS[2]}/inference_queue_depth",
    "v1beta2/namespaces/ml/deployments.apps/*/inference_queue_depth",
]


def vector(query: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, pod in enumerate(PODS):
        labels = {"namespace": "ml", "pod": pod}
        if "_bucket" in query:
            rows += [
                {"metric": {**labels, "le": le}, "value": [T, repr(float((i + 1) * (j + 1)))]}
                for j, le in enumerate(LES)
            ]
        else:
            rows.append({"metric": {**labels, "adapter_part": "value"}, "value": [T, str(i)]})
            rows.append({"metric": {**labels, "adapter_part": "timestamp"}, "value": [T, repr(T)]})
    return rows


class FakePrometheus(QuietHandler):
    def do_GET(self) -> None:  # the HTTP API's instant query, nothing else
        url = urlsplit(self.path)
        query = parse_qs(url.query).get("query", [""])[0]
        body = json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": vector(query)}}
        ).encode()
        self.reply(200 if url.path == "/api/v1/query" else 404, body)


@pytest.fixture
def prometheus() -> Iterator[str]:
    with serving(FakePrometheus) as port:
        yield f"http://127.0.0.1:{port}"


def pod_list() -> dict[str, Any]:
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    return {
        "kind": "PodList",
        "items": [
            {
                "metadata": {
                    "name": name,
                    "namespace": "ml",
                    "uid": f"uid-{name}",
                    "labels": {"app": "llm", "pod-template-hash": "5f6d7c8b9"},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "ReplicaSet",
                            "name": "llm-5f6d7c8b9",
                            "controller": True,
                        }
                    ],
                },
                "spec": {"nodeName": f"gpu-node-{i % 2}"},
                "status": {"phase": "Running", "conditions": [ready]},
            }
            for i, name in enumerate(PODS)
        ],
    }


class Replica:
    def __init__(self, tmp: Path, name: str, prometheus: str, seed: str) -> None:
        self.tmp, self.port = tmp, free_port()
        creds = make_client_credentials(tmp / f"{name}-client")
        self.log = tmp / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    *serve_command(self.port),
                    f"--cert-dir={tmp / f'{name}-certs'}",
                    f"--pods-file={tmp / 'pods.json'}",
                    f"--client-ca-file={creds.ca_file}",
                    f"--prometheus-url={prometheus}",
                    "--prometheus-refresh-interval=1h",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONHASHSEED": seed},
            )
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        self.session.verify = str(tmp / f"{name}-certs" / "apiserver.crt")
        self.session.cert = (str(creds.cert_file), str(creds.key_file))

    def get(self, path: str) -> requests.Response:
        return self.session.get(f"https://127.0.0.1:{self.port}{GROUP}/{path}", timeout=10)

    def wait_serving(self, deadline: float) -> None:
        """Until the first refresh is in: every pod has its latency."""
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                response = self.get(READS[0])
                if response.status_code == 200 and len(response.json()["items"]) == len(PODS):
                    return
            except (requests.RequestException, OSError):
                pass
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.2)

    def stop(self) -> None:
        self.session.close()
        self.proc.terminate()
        self.proc.wait(30)


def test_two_replicas_answer_identical_bodies(tmp_path: Path, prometheus: str) -> None:
    (tmp_path / "pods.json").write_text(json.dumps(pod_list()))
    replicas = [Replica(tmp_path, f"r{i}", prometheus, str(i)) for i in range(2)]
    try:
        deadline = time.monotonic() + 60
        for replica in replicas:
            replica.wait_serving(deadline)
        for path in READS:
            # First read (computed), then again (from the read cache), on each replica.
            bodies = [replica.get(path).content for replica in replicas for _ in range(2)]
            assert len(set(bodies)) == 1, (path, bodies)
            assert json.loads(bodies[0])["items"], path  # not trivially equal empty lists
        latency = json.loads(replicas[0].get(READS[0]).content)["items"]
        assert [item["describedObject"]["name"] for item in latency] == PODS
    finally:
        for replica in replicas:
            replica.stop()
