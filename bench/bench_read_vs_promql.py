"""The real `serve` process against the real Prometheus: reads vs direct PromQL, refresh, RSS.

    .venv/bin/python bench/bench_read_vs_promql.py                       # 100 and 1,000 pods
    .venv/bin/python bench/bench_read_vs_promql.py --layout 10x1000      # 10 namespaces of 1,000
    .venv/bin/python bench/bench_read_vs_promql.py --replicas 2          # two replicas, same reads
    .venv/bin/python bench/bench_read_vs_promql.py --baseline-src DIR    # and `serve` from DIR

For each layout (``N`` pods in one namespace, or ``KxN``: K namespaces of N), a
simulated fleet (a separate process, constant load) is scraped by a real
Prometheus every 5 s; then ``inference-metrics-adapter serve`` runs as it does in
production (standalone mode: pods file, client-certificate authentication,
TLS, the Prometheus source refreshing every 15 s, the read cache warmed every
second). Measured, each as a median over alternating runs on the same machine:

- one namespace's ``pods/*/inference_latency_p95`` read from the adapter
  (HTTPS, keep-alive, client certificate) against the direct PromQL query for
  the same values on the same Prometheus (HTTP, keep-alive): the ratio;
- each metric's refresh wall time (queries, decoding, snapshot build), timed in
  this process with the adapter's own PrometheusSource, one rule at a time: as
  ``serve`` runs it (large answers split into shards) and unsplit, alternating,
  beside Prometheus' own evaluation of the same queries (``count(<query>)``);
- the adapter's RSS (VmRSS sampled every 0.5 s over 17 s, more than one refresh
  interval; and the peak VmHWM) once every namespace was read,
  and with ``--baseline-src`` that of a `serve` run from another tree, side by side;
- with ``--replicas 2``: both replicas read in turn, bodies compared byte for byte.

Prometheus is served over plain HTTP (in its favour). Loopback only, bounded in
time: every wait has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import requests
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapter.demo.certs import make_client_credentials
from adapter.demo.fleet import FixedLoad, Fleet, SimulatedPod
from adapter.demo.stack import free_port, serve_command
from adapter.rulesfile import build_catalogue
from adapter.settings import PrometheusSettings
from adapter.sources.prometheus import (
    FamilyRule,
    PrometheusClient,
    PrometheusSource,
    TransportOptions,
    snapshot,
    transport,
)
from adapter.sources.prometheus.catalogue import rules_of as prometheus_rules
from tests.support.prometheus_server import PrometheusServer

SCRAPE = "5s"
GROUP = "/apis/custom.metrics.k8s.io/v1beta2"


def parse_layout(text: str) -> list[tuple[str, int]]:
    """``1000`` -> [("n0", 1000)]; ``10x1000`` -> ten namespaces of 1,000."""
    count, _, size = text.rpartition("x")
    return [(f"n{i}", int(size)) for i in range(int(count or 1))]


def fleet_main(layout: str) -> None:
    """The fleet process: constant load, one tick per 5 s, prints its targets."""

    async def serve() -> None:
        pods = [
            SimulatedPod(ns, f"p-{i}", FixedLoad([0.03, 0.08, 0.25, 0.9], 2))
            for ns, size in parse_layout(layout)
            for i in range(size)
        ]
        fleet = Fleet(pods, pods_per_port=250, tick=5.0)
        await fleet.start()
        print(json.dumps(fleet.targets), flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


def pod_list(layout: str) -> dict[str, Any]:
    items = []
    for ns, size in parse_layout(layout):
        for i in range(size):
            items.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"p-{i}",
                        "namespace": ns,
                        "uid": f"{ns}-{i:08d}",
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
                    "spec": {"nodeName": f"gpu-node-{i % 100}"},
                    "status": {
                        "phase": "Running",
                        "podIP": f"10.{i // 250}.{i % 250}.1",
                        "startTime": "2026-01-01T00:00:00Z",
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "True",
                                "lastTransitionTime": "2026-01-01T00:00:00Z",
                            }
                        ],
                    },
                }
            )
    return {"apiVersion": "v1", "kind": "PodList", "items": items}


@contextmanager
def process(
    args: Sequence[str], log: Path, src: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``args`` running until the block ends; with ``src``, importing ``adapter`` from there."""
    env = None if src is None else {**os.environ, "PYTHONPATH": str(src)}
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=src)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_until(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.5)


class Replica:
    """One `serve` process and a keep-alive HTTPS session to it."""

    def __init__(
        self, stack: ExitStack, tmp: Path, name: str, prometheus: str, src: Path | None = None
    ) -> None:
        self.port = free_port()
        self.src = "this tree" if src is None else str(src)
        creds = make_client_credentials(tmp / f"{name}-client")
        log = tmp / f"{name}.log"
        self.proc = stack.enter_context(
            process(
                [
                    *serve_command(self.port),
                    f"--cert-dir={tmp / f'{name}-certs'}",
                    f"--pods-file={tmp / 'pods.json'}",
                    f"--client-ca-file={creds.ca_file}",
                    f"--prometheus-url={prometheus}",
                    "--prometheus-refresh-interval=15s",
                    "--log-level=warning",
                ],
                log,
                src,
            )
        )
        cert = tmp / f"{name}-certs" / "apiserver.crt"
        wait_until(f"{name} serving", lambda: cert.exists() and self._up(), 60)
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        self.session.verify = str(cert)  # the generated self-signed serving certificate
        self.session.cert = (str(creds.cert_file), str(creds.key_file))

    def _up(self) -> bool:
        try:
            requests.get(f"https://127.0.0.1:{self.port}/healthz", verify=False, timeout=2)
        except requests.RequestException:
            return False
        return True

    def read(self, path: str) -> bytes:
        response = self.session.get(f"https://127.0.0.1:{self.port}{GROUP}/{path}", timeout=30)
        response.raise_for_status()
        return response.content

    def rss_mib(self) -> tuple[float, float]:
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def timed(call: Any, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


Walls = dict[str, dict[str, float]]
"""Per metric, each measurement's median in seconds (and ``shards``: queries sent)."""


async def refresh_walls(url: str, rounds: int = 3) -> Walls:
    """Each rule's refresh on its own, median of ``rounds``, seconds, alternating in one
    loop so that all see the same machine load:

    - ``sharded``: the refresh as ``serve`` runs it (default --prometheus-max-query-shards,
      after one warm-up refresh that measured the answers' sizes), and ``unsharded``: the
      same with the cap at 1 (one query per rule or family);
    - ``floor``: Prometheus' own evaluation of the rule's queries, ``count(<query>)``
      (concurrently, as the refresh sends them), whose answer is one number: a refresh
      cannot be faster than that;
    - the unsharded parts: the queries with decoding, and the snapshot build; then the
      same two the way the transport did before (gzip-compressed answers,
      ``custom_query``'s ``json``, a PromSample per series).

    A server-family rule sends one query per family, concurrently.
    """
    catalogue = build_catalogue({}, "<bench>", {})
    # serve's refresh client (its threads: room for every shard), with a longer deadline.
    client = PrometheusClient(
        TransportOptions.from_settings(PrometheusSettings(url=url, timeout=60))
    )
    # Before: gzip-compressed answers (requests' default), decoded by custom_query's json.
    before = PrometheusClient(TransportOptions(url=url, timeout=60, compression=True))
    loop = asyncio.get_running_loop()

    async def old_query(expr: str) -> Any:
        result = await loop.run_in_executor(None, before._connect.custom_query, expr)
        return transport._vector(result)

    async def timed_async(call: Any) -> float:
        started = time.perf_counter()
        await call()
        return time.perf_counter() - started

    walls: Walls = {}
    for rule in prometheus_rules(catalogue):
        sharded = PrometheusSource(client, [rule])
        unsharded = PrometheusSource(client, [rule], max_query_shards=1)
        await sharded.refresh_once()  # learns the answers' sizes: the next one splits
        await unsharded.refresh_once()
        exprs = (
            [expr for _, expr in rule.queries()] if isinstance(rule, FamilyRule) else [rule.query()]
        )

        async def floor(exprs: list[str] = exprs) -> None:
            await asyncio.gather(*(client.query(f"count({expr})") for expr in exprs))

        seen: dict[str, list[float]] = {}
        ways = {"unsharded": unsharded.refresh_once, "sharded": sharded.refresh_once}
        for round_ in range(rounds):
            # Each goes first in every other round: the first after the heavy queries
            # below would otherwise always pay for what they left Prometheus to do.
            for name in sorted(ways, reverse=bool(round_ % 2)):
                seen.setdefault(name, []).append(await timed_async(ways[name]))
            seen.setdefault("floor", []).append(await timed_async(floor))
            for name, query in (("", client.query), ("old_", old_query)):
                started = time.perf_counter()
                vectors = await asyncio.gather(*(query(expr) for expr in exprs))
                query_wall = time.perf_counter() - started
                started = time.perf_counter()
                if isinstance(rule, FamilyRule):
                    snapshot.build_families(rule, vectors, time.time(), 45.0)
                else:
                    snapshot.build(rule, vectors[0], time.time(), 45.0)
                seen.setdefault(f"{name}build", []).append(time.perf_counter() - started)
                seen.setdefault(f"{name}query", []).append(query_wall)
                del vectors
        walls[rule.metric] = {name: statistics.median(times) for name, times in seen.items()}
        walls[rule.metric]["shards"] = sharded._planner.planned(rule)
        walls[rule.metric]["queries"] = len(exprs)
    client.close()
    before.close()
    return walls


def run_layout(
    layout: str, replicas: int, runs: int, baseline: Path | None = None, refresh_rounds: int = 3
) -> None:
    namespaces = parse_layout(layout)
    total = sum(size for _, size in namespaces)
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        (tmp / "pods.json").write_text(json.dumps(pod_list(layout)))
        fleet = stack.enter_context(
            subprocess.Popen(
                [sys.executable, __file__, "fleet", layout],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
        stack.callback(fleet.terminate)
        assert fleet.stdout is not None
        targets = json.loads(fleet.stdout.readline())
        prom = stack.enter_context(PrometheusServer(targets, scrape_interval=SCRAPE))
        prom.wait_for(
            "count(rate(inference_duration_seconds_count[2m]) > 0)",
            timeout=300,
            predicate=lambda r: bool(r) and float(r[0]["value"][1]) >= total,
        )
        walls = asyncio.run(refresh_walls(prom.url, refresh_rounds))
        adapters = [Replica(stack, tmp, f"replica-{i}", prom.url) for i in range(replicas)]
        if baseline is not None:  # last: the reads below are timed on adapters[0]
            adapters.append(Replica(stack, tmp, "baseline", prom.url, baseline))
        ns, size = namespaces[0]
        path = f"namespaces/{ns}/pods/*/inference_latency_p95"
        for adapter in adapters:  # every value served, from the first refresh on
            for other, other_size in namespaces:
                for metric in ("inference_latency_p95", "inference_queue_depth"):
                    wait_until(
                        f"{other} {metric} served",
                        lambda a=adapter, o=other, m=metric, s=other_size: (
                            len(json.loads(a.read(f"namespaces/{o}/pods/*/{m}"))["items"]) == s
                        ),
                        120,
                    )
        expr = (
            "histogram_quantile(0.95, sum by (namespace, pod, le) "
            f'(rate(inference_duration_seconds_bucket{{namespace="{ns}"}}[2m])))'
        )
        prom_session = requests.Session()
        prom_session.trust_env = False

        def promql() -> None:
            response = prom_session.get(f"{prom.url}/api/v1/query", params={"query": expr})
            response.raise_for_status()
            assert len(response.json()["data"]["result"]) == size

        first = adapters[0]
        read_times: list[float] = []
        prom_times: list[float] = []
        for _ in range(5):  # alternate, so both see the same machine load
            read_times += timed(lambda: first.read(path), runs)
            prom_times += timed(promql, max(3, runs // 10))
        read, direct = statistics.median(read_times), statistics.median(prom_times)
        print(f"\nlayout {layout}: {total:,} pods; read: {size:,} pods of namespace {ns}")
        print(
            f"  adapter read  p50 {read * 1000:8.3f} ms  p99 {p99(read_times) * 1000:8.3f} ms"
            f"  ({len(read_times)} reads, HTTPS keep-alive, client certificate)"
        )
        print(
            f"  direct PromQL p50 {direct * 1000:8.3f} ms  p99 {p99(prom_times) * 1000:8.3f} ms"
            f"  ({len(prom_times)} queries, HTTP keep-alive)"
        )
        print(f"  ratio read / PromQL (p50): {read / direct:.3f}")
        for metric, w in walls.items():
            print(
                f"  refresh wall {metric}: {w['sharded'] * 1000:.0f} ms in {w['shards']:.0f}"
                f" queries vs {w['unsharded'] * 1000:.0f} ms in {w['queries']:.0f} unsharded"
                f" (ratio {w['sharded'] / w['unsharded']:.2f}); Prometheus floor, count() of the"
                f" queries: {w['floor'] * 1000:.0f} ms (refresh / floor {w['sharded'] / w['floor']:.2f})"
            )
            print(
                f"    unsharded parts: queries + decoding {w['query'] * 1000:.0f} ms, snapshot"
                f" build {w['build'] * 1000:.0f} ms; decoded as before:"
                f" {w['old_query'] * 1000:.0f} + {w['old_build'] * 1000:.0f} ms"
            )
        # RSS over one refresh interval and more (the answer in flight counts while it lasts).
        samples: list[list[float]] = [[] for _ in adapters]
        for _ in range(34):
            for adapter, seen in zip(adapters, samples, strict=True):
                seen.append(adapter.rss_mib()[0])
            time.sleep(0.5)
        for i, (adapter, seen) in enumerate(zip(adapters, samples, strict=True)):
            hwm = adapter.rss_mib()[1]
            print(
                f"  replica {i} ({adapter.src}) RSS over 17 s: min {min(seen):.1f},"
                f" median {statistics.median(seen):.1f}, max {max(seen):.1f} MiB"
                f" (peak ever {hwm:.1f} MiB), every value served"
            )
        if replicas > 1:
            compare_replicas(adapters[:replicas], path)


def compare_replicas(adapters: list[Replica], path: str) -> None:
    """Bodies of the same read from each replica: equal bytes, or equal but for the
    sample timestamps (each replica evaluates its queries when it refreshes)."""
    same = values_same = 0
    attempts = 20
    stamps: list[set[str]] = []
    for _ in range(attempts):
        bodies = [adapter.read(path) for adapter in adapters]
        if all(body == bodies[0] for body in bodies):
            same += 1
            continue
        items = [json.loads(body)["items"] for body in bodies]
        stamps = [{item.pop("timestamp") for item in got} for got in items]
        values_same += all(got == items[0] for got in items)
        time.sleep(0.5)
    print(
        f"  replicas: {same}/{attempts} reads byte-identical across {len(adapters)} replicas;"
        f" {values_same} more identical but for the sample timestamps"
    )
    if stamps:
        print(f"  (the replicas' sample timestamps then: {stamps})")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "fleet":
        fleet_main(sys.argv[2])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--layout", action="append", help="N or KxN (repeatable)")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run `serve` from this tree (e.g. `git archive` of an older commit): its RSS",
    )
    parser.add_argument("--runs", type=int, default=100, help="adapter reads per round (5 rounds)")
    parser.add_argument(
        "--refresh-rounds", type=int, default=3, help="refreshes per rule and way (medians)"
    )
    args = parser.parse_args()
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    for layout in args.layout or ["100", "1000"]:
        run_layout(layout, args.replicas, args.runs, args.baseline_src, args.refresh_rounds)


if __name__ == "__main__":
    main()
