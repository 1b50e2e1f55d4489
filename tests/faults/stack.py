"""The whole adapter stack on loopback, with handles to break each part of it.

- a simulated inference fleet (two pods, fixed load: queue depth 4) in a thread;
- a real Prometheus (the Debian binary) scraping it every second;
- :class:`PromProxy`, a loopback HTTP proxy in front of Prometheus whose mode
  the test sets: pass, error (500), nan (every value NaN), slow, hang;
- a real ``gpu-collector --simulate`` process the adapter finds by label;
- the fake Kubernetes API (pods, TokenReview, SubjectAccessReview, the trust
  ConfigMap) in a thread of its own, with its fault hooks;
- a real ``inference-metrics-adapter serve`` process in cluster mode with short
  intervals (Prometheus refresh 1 s, staleness 8 s; GPU pull 0.5 s, staleness 2 s).
  The simulated fleet Prometheus scrapes runs in a thread of the test process, so
  on a loaded machine its samples can lag a few seconds: 8 s keeps a sample that
  is late but current from counting as stale, while expiry stays quick to test.

:class:`Watch` polls discovery, ``/readyz`` and the reads in the background and
records every violation of the suite's invariants: discovery and readiness
answer 200, and no value is ever served as 0 (or as anything the fleet does not
export).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml

from adapter.demo.fleet import FixedLoad, Fleet, SimulatedPod
from adapter.demo.stack import collector_command, free_port
from tests.fakes.http_thread import QuietHandler, serving
from tests.fakes.kube_api import FakeKubeServer
from tests.fakes.kube_auth_api import KubeAuthState, add_auth_routes
from tests.support.llm_scene import PODS, kube_pods, start_adapter, write_gpu_scenario
from tests.support.prometheus_server import PrometheusServer

G = "/apis/custom.metrics.k8s.io/v1beta2"
TOKEN = "hpa-token"
HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
QUEUE_DEPTH = 4.0
QUEUE = f"{G}/namespaces/ml/pods/%2A/inference_queue_depth?labelSelector=app%3Dllm"
LATENCY = f"{G}/namespaces/ml/pods/%2A/inference_latency_p95?labelSelector=app%3Dllm"
GPU = f"{G}/namespaces/ml/pods/%2A/gpu_utilization?labelSelector=app%3Dllm"
REFRESH_S = 1.0
GENEROUS = 60.0  # how long a test waits for something that must happen

T = TypeVar("T")


# -- Prometheus behind a proxy with modes --------------------------------------------------


class PromProxy:
    """``mode``: pass | error (500) | nan (values rewritten to NaN) | slow | hang."""

    def __init__(self, upstream: str, slow_s: float = 1.5) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.slow_s = slow_s
        self.requests = 0
        self._release = threading.Event()
        proxy = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                proxy.requests += 1
                mode = proxy.mode
                if mode == "hang":
                    proxy._release.wait(60)
                    return self.reply(503, b"{}")
                if mode == "error":
                    return self.reply(500, b'{"status":"error","error":"injected"}')
                if mode == "slow":
                    time.sleep(proxy.slow_s)
                try:
                    with urllib.request.urlopen(proxy.upstream + self.path, timeout=30) as r:
                        body = r.read()
                        status = r.status
                except Exception:
                    return self.reply(502, b"{}")
                if mode == "nan":
                    body = _nan_values(body)
                return self.reply(status, body)

        self._stack = contextlib.ExitStack()
        self.url = f"http://127.0.0.1:{self._stack.enter_context(serving(Handler))}"

    def set(self, mode: str) -> None:
        assert mode in {"pass", "error", "nan", "slow", "hang"}
        if self.mode == "hang" and mode != "hang":
            self._release.set()
            self._release = threading.Event()
        self.mode = mode

    def close(self) -> None:
        self._release.set()
        self._stack.close()


def _nan_values(body: bytes) -> bytes:
    answer = json.loads(body)
    for row in answer.get("data", {}).get("result", []):
        if "value" in row:
            row["value"][1] = "NaN"
    return json.dumps(answer).encode()


# -- the fake Kubernetes API in a thread of its own ----------------------------------------


class KubeInThread:
    """The fake API served from its own event loop; :meth:`call` runs code there."""

    def __init__(self, auth: KubeAuthState) -> None:
        self.server = FakeKubeServer(extensions=[lambda app: add_auth_routes(app, auth)])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.run(self.server.start())

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async def inside() -> T:
            return fn(*args, **kwargs)

        result: T = self.run(inside())
        return result

    def close(self) -> None:
        self.run(self.server.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


# -- processes ----------------------------------------------------------------------------


class Collector:
    """The simulated gpu-collector process; ``kill``/``start``, ``stop``/``cont``."""

    def __init__(self, scenario: Path, port: int, log: Path) -> None:
        self.scenario, self.port, self.log = scenario, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                collector_command(self.scenario, self.port, "gpu-node-1"),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)


@dataclass
class Stack:
    tmp: Path
    prometheus: PrometheusServer
    proxy: PromProxy
    kube: KubeInThread
    auth: KubeAuthState
    collector: Collector
    adapter: subprocess.Popen[bytes]
    port: int
    serving_ca: Path
    rules: Path
    log: Path

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client_tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.serving_ca))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def prometheus_signal(self, sig: signal.Signals) -> None:
        process = self.prometheus._process
        assert process is not None
        os.kill(process.pid, sig)


# Explicit forms instead of the built-ins' server families: one query per rule per refresh,
# so the query counter counts refreshes.
RULES: dict[str, Any] = {
    "serving": {"warmup": "0s"},
    "metrics": [
        {"name": "inference_queue_depth", "prometheus": {"gauge": "inference_queue_depth"}},
        {
            "name": "inference_latency_p95",
            "prometheus": {"histogram": "inference_duration_seconds"},
        },
    ],
}


@contextlib.contextmanager
def running_stack(tmp: Path) -> Iterator[Stack]:
    fleet_pods = [
        SimulatedPod("ml", pod.name, FixedLoad([0.05, 0.1, 0.2], QUEUE_DEPTH)) for pod in PODS
    ]
    with contextlib.ExitStack() as stack:
        fleet = stack.enter_context(Fleet(fleet_pods, tick=0.25).in_thread())
        prometheus = stack.enter_context(PrometheusServer(fleet.targets))
        proxy = PromProxy(prometheus.url)
        stack.callback(proxy.close)
        auth = KubeAuthState()
        auth.tokens[TOKEN] = {"username": HPA_USER, "groups": ["system:serviceaccounts"]}
        auth.allow(HPA_USER)
        kube = KubeInThread(auth)
        stack.callback(kube.close)
        for pod in kube_pods():
            kube.call(kube.server.state.add_pod, pod)
        scenario = write_gpu_scenario(tmp / "gpu.yaml")
        collector = Collector(scenario, free_port(), tmp / "collector.log")
        collector.start()
        stack.callback(collector.kill)
        rules = tmp / "rules.yaml"
        rules.write_text(yaml.safe_dump(RULES))
        kubeconfig = kube.server.write_kubeconfig(tmp / "adapter-kubeconfig")
        adapter, port = start_adapter(
            tmp,
            kubeconfig,
            "--config",
            str(rules),
            "--prometheus-url",
            proxy.url,
            "--prometheus-refresh-interval",
            "1s",
            "--prometheus-stale-after",
            "8s",
            "--prometheus-timeout",
            "2s",
            "--prometheus-selector-timeout",
            "1s",
            "--gpu-collector-port",
            str(collector.port),
            "--gpu-pull-interval",
            "500ms",
            "--gpu-stale-after",
            "2s",
            "--gpu-timeout",
            "1s",
            "--request-header-timeout",
            "2s",
            "--max-connections",
            "200",
            "--max-selector-requests-inflight",
            "50",
        )
        log = tmp / "adapter.log"

        def stop_adapter() -> None:
            adapter.terminate()
            try:
                adapter.wait(30)
            except subprocess.TimeoutExpired:
                adapter.kill()
                adapter.wait(10)

        stack.callback(stop_adapter)
        serving_ca = tmp / "certs" / "apiserver.crt"
        deadline = time.monotonic() + GENEROUS
        while not (serving_ca.exists() and b"serving custom.metrics" in log.read_bytes()):
            assert adapter.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the adapter did not start"
            time.sleep(0.1)
        yield Stack(
            tmp, prometheus, proxy, kube, auth, collector, adapter, port, serving_ca, rules, log
        )


# -- reading the adapter -------------------------------------------------------------------


class Reader:
    """An authenticated client (the HPA's token) of the adapter, keep-alive."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=stack.client_tls(), limit=20),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.stack.base + path) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def values(self, path: str) -> tuple[int, dict[str, str]]:
        """(status, {pod: Quantity}) of a read."""
        status, body = await self.get(path)
        if status != 200:
            return status, {}
        return status, {item["describedObject"]["name"]: item["value"] for item in body["items"]}

    async def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample of the adapter's own /metrics (0 when absent)."""
        return _sample(await self._metrics_text(), name, labels)

    async def _metrics_text(self) -> str:
        status, text = await self.get("/metrics")
        assert status == 200, text
        return str(text)

    async def refreshes(self) -> float:
        """Queue-depth queries that succeeded: answered, not failed or timed out.

        Both counters come from one scrape, so the difference is consistent. A
        query that timed out while Prometheus restarted is not a refresh that could
        have served values.
        """
        text = await self._metrics_text()
        queue = {"metric": "inference_queue_depth"}
        queries = _sample(text, "adapter_prometheus_query_duration_seconds_count", queue)
        return queries - _sample(text, "adapter_prometheus_query_errors_total", queue)

    async def until(self, check: Callable[[], Any], what: str, timeout: float = GENEROUS) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = await check()
            if result:
                return result
            assert time.monotonic() < deadline, f"not reached in {timeout}s: {what}"
            await asyncio.sleep(0.2)

    async def queue_served(self) -> bool:
        status, values = await self.values(QUEUE)
        return status == 200 and set(values) == {"llm-0", "llm-1"}

    async def gpu_served(self) -> bool:
        status, values = await self.values(GPU)
        return status == 200 and set(values) == {"llm-0", "llm-1"}

    async def healthy(self) -> None:
        """Every source serving both pods (the state each test starts and ends in)."""
        await self.until(self.queue_served, "queue depth served for both pods")
        await self.until(self.gpu_served, "gpu utilization served for both pods")


def _quantity(text: str) -> float:
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}
    if text and text[-1] in suffixes:
        return float(text[:-1]) * suffixes[text[-1]]
    return float(text)


@dataclass
class Watch:
    """Polls discovery, /readyz and the reads until stopped; records violations."""

    reader: Reader
    discovery_ok: int = 0
    readyz_ok: int = 0
    reads: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    rounds: int = 0
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stops after at least two complete rounds (one wholly after the test's steps)."""
        assert self._task is not None
        deadline = time.monotonic() + GENEROUS
        target = self.rounds + 2
        while self.rounds < target and time.monotonic() < deadline and not self._task.done():
            await asyncio.sleep(0.05)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            await self.once()
            self.rounds += 1
            await asyncio.sleep(0.1)

    async def once(self) -> None:
        try:
            status, body = await self.reader.get(G)
            if status == 200 and body.get("kind") == "APIResourceList":
                self.discovery_ok += 1
            else:
                self.violations.append(f"discovery answered {status}: {str(body)[:200]}")
            status, body = await self.reader.get("/readyz")
            if status == 200:
                self.readyz_ok += 1
            else:
                self.violations.append(f"/readyz answered {status}: {str(body)[:200]}")
            for path, check in ((QUEUE, _queue_ok), (LATENCY, _positive), (GPU, _percent)):
                status, values = await self.reader.values(path)
                self.reads += 1
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status >= 500:
                    self.violations.append(f"{path} answered {status}")
                for pod, value in values.items():
                    if not check(_quantity(value)):
                        self.violations.append(f"{path}: {pod} served {value}")
        except (aiohttp.ClientError, TimeoutError) as e:
            self.violations.append(f"request failed: {e!r}")

    def assert_clean(self) -> None:
        assert self.violations == [], self.violations[:20]
        assert self.discovery_ok > 0
        assert self.readyz_ok > 0


def _queue_ok(value: float) -> bool:
    return value == QUEUE_DEPTH


def _positive(value: float) -> bool:
    return value > 0


def _percent(value: float) -> bool:
    return 0 < value <= 100


def _sample(text: str, name: str, labels: dict[str, str] | None) -> float:
    """The sum of ``name``'s samples in an exposition text whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = re.match(r"^([a-zA-Z_:]+)(\{[^}]*\})? (\S+)$", line)
        if match is None or match.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if labels is None or all(got.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total
