"""The real `inference-metrics-adapter serve` process: auth, config reload, graceful stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from adapter.demo.certs import make_client_credentials
from adapter.demo.stack import demo_pods, free_port, pod_list, serve_command
from tests.fakes.serving import serving
from tests.support.kubectl import kubectl, write_kubeconfig

RULES_V1 = {
    "metrics": [
        {
            "name": "tokens_per_second",
            "source": "prometheus",
            "resources": ["pods"],
            "aggregate": "sum",
            "prometheus": {"gauge": "tokens_per_second"},
        }
    ]
}
RULES_V2 = {
    "metrics": [
        {
            "name": "tokens_per_second_v2",
            "source": "prometheus",
            "resources": ["pods"],
            "prometheus": {"gauge": "tokens_per_second"},
        }
    ]
}


class Adapter:
    def __init__(self, tmp: Path, prometheus_url: str = "http://127.0.0.1:9") -> None:
        self.tmp = tmp
        self.port = free_port()
        self.rules = tmp / "rules.yaml"
        self.rules.write_text(yaml.safe_dump(RULES_V1))
        (tmp / "pods.yaml").write_text(yaml.safe_dump(pod_list(demo_pods(1, 2))))
        self.creds = make_client_credentials(tmp / "client")
        self.log = (tmp / "adapter.log").open("wb")
        self.proc = subprocess.Popen(
            [
                *serve_command(self.port),
                "--cert-dir",
                str(tmp / "certs"),
                "--pods-file",
                str(tmp / "pods.yaml"),
                "--client-ca-file",
                str(self.creds.ca_file),
                "--config",
                str(self.rules),
                "--prometheus-url",
                prometheus_url,
                "--prometheus-refresh-interval",
                "1h",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        cert = tmp / "certs" / "apiserver.crt"
        deadline = time.monotonic() + 30
        while (
            not cert.exists() or b"serving custom.metrics" not in (tmp / "adapter.log").read_bytes()
        ):
            assert self.proc.poll() is None, (tmp / "adapter.log").read_text()
            assert time.monotonic() < deadline, "adapter did not start"
            time.sleep(0.1)
        self.kubeconfig = write_kubeconfig(
            tmp / "kubeconfig",
            f"https://127.0.0.1:{self.port}",
            ca_file=cert,
            client_cert=self.creds.cert_file,
            client_key=self.creds.key_file,
        )
        self.anonymous = write_kubeconfig(
            tmp / "anonymous",
            f"https://127.0.0.1:{self.port}",
            ca_file=cert,
            token="not-a-real-token",
        )

    def log_text(self) -> str:
        return (self.tmp / "adapter.log").read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def adapter(tmp_path: Path) -> Iterator[Adapter]:
    server = Adapter(tmp_path)
    yield server
    server.stop()


async def discovery(adapter: Adapter) -> list[str]:
    result = await kubectl(
        adapter.kubeconfig, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2"
    )
    assert result.returncode == 0, result.stderr
    return [r["name"] for r in json.loads(result.stdout)["resources"]]


async def test_client_certificate_reads_and_anonymous_is_401(adapter: Adapter) -> None:
    assert "pods/tokens_per_second" in await discovery(adapter)
    denied = await kubectl(adapter.anonymous, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2")
    assert denied.returncode == 1
    assert "Unauthorized" in denied.stderr
    log = adapter.log_text()
    assert "every caller with a client certificate from --client-ca-file may read" in log
    access = [json.loads(line) for line in log.splitlines() if '"logger": "adapter.access"' in line]
    assert {
        "user": "demo-admin",
        "groups": ["demo", "system:authenticated"],
        "authn": "x509",
        "verb": "GET",
        "path": "/apis/custom.metrics.k8s.io/v1beta2",
        "status": 200,
        "authz": "standalone",
    }.items() <= access[0].items()
    assert "not-a-real-token" not in log


async def test_rules_reload_on_sighup_and_invalid_rules_keep_the_old(adapter: Adapter) -> None:
    adapter.rules.write_text(yaml.safe_dump(RULES_V2))
    adapter.proc.send_signal(signal.SIGHUP)
    for _ in range(50):
        if "pods/tokens_per_second_v2" in await discovery(adapter):
            break
        await asyncio.sleep(0.1)
    names = await discovery(adapter)
    assert "pods/tokens_per_second_v2" in names
    assert "pods/tokens_per_second" not in names

    adapter.rules.write_text("metrics:\n  - name: broken\n    source: nowhere\n")
    adapter.proc.send_signal(signal.SIGHUP)
    for _ in range(50):
        if "rejected" in adapter.log_text():
            break
        await asyncio.sleep(0.1)
    assert "rules.yaml:3: metrics[0].source: required: one of prometheus, gpu" in adapter.log_text()
    assert "pods/tokens_per_second_v2" in await discovery(adapter)


async def test_sigterm_stops_gracefully(adapter: Adapter) -> None:
    assert await discovery(adapter)
    adapter.proc.send_signal(signal.SIGTERM)
    assert adapter.proc.wait(30) == 0
    log = adapter.log_text()
    assert "shutting down: no new connections, finishing in-flight requests" in log
    assert log.rstrip().endswith('"msg": "stopped"}')


def test_invalid_rules_file_fails_at_start_with_every_problem(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "serving: {warmup: soon}\nmetrics:\n  - name: x\n    source: prometheus\n    unknown: 1\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "adapter", "check-config", str(rules)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{rules}:1: serving.warmup: invalid duration 'soon': use a number and a unit (ms, s, m, h, d), e.g. 15s or 2m",
        f"{rules}:5: metrics[0].unknown: unknown key (allowed: aggregate, description, gpu, name, prometheus, resources, source, unit)",
        f"{rules}:3: metrics[0].prometheus: needs exactly one of histogram, gauge, query or families (found: none)",
    ]


async def test_sigterm_lets_an_in_flight_request_finish(tmp_path: Path) -> None:
    """A metricLabelSelector read waits on a (deliberately slow) Prometheus; SIGTERM
    arrives meanwhile: the read still gets its answer, then the process exits 0."""
    from aiohttp import web  # noqa: PLC0415

    arrived = asyncio.Event()

    async def slow_query(request: web.Request) -> web.Response:
        form = await request.post() if request.method == "POST" else {}
        if "llama" in str(request.rel_url) + str(form.get("query", "")):  # the request's own query
            arrived.set()
            await asyncio.sleep(2)
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": []}}
        )

    app = web.Application()
    app.router.add_route("*", "/api/v1/query", slow_query)
    async with serving(app) as url:
        server = Adapter(tmp_path, url)
        try:
            read = asyncio.create_task(
                kubectl(
                    server.kubeconfig,
                    "get",
                    "--raw",
                    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/%2A/tokens_per_second"
                    "?metricLabelSelector=model%3Dllama",
                )
            )
            await asyncio.wait_for(arrived.wait(), 20)
            server.proc.send_signal(signal.SIGTERM)
            result = await read
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["items"] == []
            assert await asyncio.to_thread(server.proc.wait, 30) == 0
        finally:
            server.stop()
