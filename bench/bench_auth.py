"""Latency added by authentication + authorization, at ~100 req/s over loopback TLS.

Scenarios (one keep-alive connection, requests paced at --rate):
  no-auth      the same app without the auth middleware (baseline)
  x509-hit     client certificate, SubjectAccessReview cached
  x509-miss    client certificate, a new metric each request: one SAR per request
  token-hit    bearer token, TokenReview and SAR cached
  token-miss   a new token each request: one TokenReview + one SAR per request

The fake Kubernetes API is a loopback aiohttp server (plain HTTP), so "miss"
numbers are a floor: a real API server adds its own latency.

    .venv/bin/python bench/bench_auth.py --rate 100 --requests 300

Recorded 2026-11-22, 2 shared cores, Python 3.11, aiohttp 3.14, TLS 1.3 keep-alive,
300 requests at 100 req/s (p50 / p95 ms; added = p50 minus no-auth):
  no-auth     0.89 / 1.09
  x509-hit    1.24 / 1.72   +0.35 ms  (x1.39)
  token-hit   1.15 / 1.72   +0.25 ms  (x1.28)
  x509-miss   3.53 / 8.22   +2.63 ms  (x3.95)  one SAR to the loopback fake
  token-miss  5.38 / 9.89   +4.49 ms  (x6.02)  one TokenReview + one SAR
Most of a miss is the kubernetes.aio client (pydantic model validation + aiohttp).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import trustme
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.api.middleware import auth_middleware
from adapter.api.tls import ServingTLS
from adapter.auth.authenticator import Authenticator
from adapter.auth.authorizer import DelegatingAuthorizer
from adapter.auth.tokens import TokenAuthenticator
from adapter.auth.trust import TrustConfig, TrustState
from adapter.kube.k8s import Configuration, KubeClient
from adapter.kube.reviews import KubeReviews
from tests.fakes.kube_auth_api import KubeAuthState, serve_auth_api

PATH = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/%2A/"


async def handler(_request: web.Request) -> web.Response:
    return web.json_response({"kind": "MetricValueList", "items": []})


async def serve(app: web.Application, tls: ServingTLS) -> tuple[web.AppRunner, str]:
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context)
    await site.start()
    return runner, f"https://127.0.0.1:{runner.addresses[0][1]}"


async def paced(session: aiohttp.ClientSession, urls, headers, rate: float) -> list[float]:  # type: ignore[no-untyped-def]
    latencies = []
    interval = 1.0 / rate
    start = time.perf_counter()
    for i, (url, header) in enumerate(zip(urls, headers, strict=True)):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.perf_counter()
        async with session.get(url, headers=header) as r:
            await r.read()
            assert r.status == 200, r.status
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies


def summary(name: str, ms: list[float]) -> dict[str, float | str]:
    ms = sorted(ms)
    return {
        "scenario": name,
        "p50_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[int(len(ms) * 0.95) - 1], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


async def main(rate: float, n: int) -> list[dict[str, float | str]]:
    server_ca, client_ca = trustme.CA(), trustme.CA()
    tmp = Path(tempfile.mkdtemp())
    leaf = server_ca.issue_cert("127.0.0.1")
    (tmp / "c").write_bytes(leaf.cert_chain_pems[0].bytes())
    (tmp / "k").write_bytes(leaf.private_key_pem.bytes())
    tls = ServingTLS(tmp / "c", tmp / "k", None)
    trust = TrustState()
    trust.subscribe(lambda c: tls.set_client_cas(c.client_ca_pem, c.requestheader_ca_pem))
    trust.apply(TrustConfig(client_ca_pem=client_ca.cert_pem.bytes()))
    fake = KubeAuthState()
    fake.rules.append(lambda spec: True)
    tokens = [f"token-{i}" for i in range(n + 1)]
    for t in tokens:
        fake.tokens[t] = {"username": "system:serviceaccount:kube-system:horizontal-pod-autoscaler"}
    token_ctx = ssl.create_default_context()
    server_ca.configure_trust(token_ctx)
    ctx = ssl.create_default_context()
    server_ca.configure_trust(ctx)
    client_ca.issue_cert("bench", common_name="bench").configure_cert(ctx)
    results = []
    async with serve_auth_api(fake) as kube_url:
        api_client = KubeClient(Configuration(host=kube_url))
        kube = KubeReviews(api_client)
        authn = Authenticator(trust, TokenAuthenticator(kube))
        authz = DelegatingAuthorizer(kube)
        plain_runner, plain_url = await serve(web.Application(), tls)
        auth_runner, auth_url = await serve(
            web.Application(middlewares=[auth_middleware(authn, authz)]), tls
        )
        scenarios: dict[str, tuple[list[str], list[dict[str, str]]]] = {
            "no-auth": ([plain_url + PATH + "m"] * n, [{}] * n),
            "x509-hit": ([auth_url + PATH + "m"] * n, [{}] * n),
            "x509-miss": ([auth_url + PATH + f"m{i}" for i in range(n)], [{}] * n),
            "token-hit": (
                [auth_url + PATH + "m"] * n,
                [{"Authorization": f"Bearer {tokens[n]}"}] * n,
            ),
            "token-miss": (
                [auth_url + PATH + f"t{i}" for i in range(n)],
                [{"Authorization": f"Bearer {tokens[i]}"} for i in range(n)],
            ),
        }
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as with_cert,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=token_ctx)) as no_cert,
        ):
            for name, (warm_urls, warm_headers) in scenarios.items():
                session = no_cert if name.startswith("token") else with_cert
                await paced(session, warm_urls[:20], warm_headers[:20], rate)  # fill caches
                urls, headers = warm_urls, warm_headers
                if name.endswith("miss"):
                    urls = [u + "x" for u in urls]
                    if name == "token-miss":
                        headers = [{"Authorization": f"Bearer {t}x"} for t in tokens[:n]]
                        for t in tokens[:n]:
                            fake.tokens[t + "x"] = fake.tokens[t]
                results.append(summary(name, await paced(session, urls, headers, rate)))
        await plain_runner.cleanup()
        await auth_runner.cleanup()
        await api_client.close()
    base = float(results[0]["p50_ms"])
    for r in results:
        r["p50_ratio_vs_no_auth"] = round(float(r["p50_ms"]) / base, 2)
        r["p50_added_ms"] = round(float(r["p50_ms"]) - base, 3)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    for row in asyncio.run(main(args.rate, args.requests)):
        print(json.dumps(row))
