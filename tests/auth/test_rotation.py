"""Live rotation: CA bundles through the ConfigMap watch, the serving cert on disk."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest
import trustme

from adapter.api.tls import ServingTLS
from tests.auth.conftest import PKI, Server, write_serving_cert

METRIC = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ml/pods/%2A/m"


async def eventually(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_client_ca_rotation_through_the_configmap(server: Server, pki: PKI) -> None:
    server.fake.allow("alice")
    old = pki.client_ca.issue_cert("alice", common_name="alice")
    assert (await server.get(pki, METRIC, cert=old))[0] == 200
    await eventually(lambda: bool(server.fake.watchers))
    # Keep one connection open with the old certificate across the rotation.
    kept = server.session(pki, old)
    async with kept.get(server.url + METRIC) as r:
        assert r.status == 200
    new_ca = trustme.CA()
    generation = server.tls.generation
    server.fake.set_configmap(pki.configmap(client_ca=new_ca))
    await eventually(lambda: server.tls.generation > generation)
    new = new_ca.issue_cert("alice", common_name="alice")
    assert (await server.get(pki, METRIC, cert=new))[0] == 200
    with pytest.raises(aiohttp.ClientError):  # new handshakes reject the old CA
        await server.get(pki, METRIC, cert=old)
    async with kept.get(server.url + METRIC) as r:  # the open connection: no longer trusted
        assert r.status == 401
    assert server.fake.calls["list"] == 1  # no restart, no relist


async def test_watch_410_relists(server: Server, pki: PKI) -> None:
    await eventually(lambda: bool(server.fake.watchers))
    server.fake.expire_watches()
    await eventually(lambda: server.fake.calls["list"] == 2)


async def test_bad_configmap_keeps_the_last_trust(server: Server, pki: PKI) -> None:
    server.fake.allow("alice")
    await eventually(lambda: bool(server.fake.watchers))
    data = pki.configmap()
    data["requestheader-allowed-names"] = "not json"
    server.fake.set_configmap(data)
    await eventually(lambda: server.fake.calls["list"] >= 2)  # error -> relist, still bad
    cert = pki.client_ca.issue_cert("alice", common_name="alice")
    assert (await server.get(pki, METRIC, cert=cert))[0] == 200


async def test_serving_certificate_rotation_keeps_open_connections(
    server: Server, pki: PKI
) -> None:
    server.fake.allow("alice")
    cert = pki.client_ca.issue_cert("alice", common_name="alice")
    kept = server.session(pki, cert)
    async with kept.get(server.url + METRIC) as r:
        assert r.status == 200
    new_server_ca = trustme.CA()
    write_serving_cert(new_server_ca, server.cert_dir)
    assert server.tls.reload_once() is True
    assert server.tls.reload_once() is False
    ctx = ssl.create_default_context()
    new_server_ca.configure_trust(ctx)
    cert.configure_cert(ctx)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s,
        s.get(server.url + METRIC) as r,
    ):
        assert r.status == 200
    with pytest.raises(aiohttp.ClientError):  # a new handshake trusting only the old CA
        await server.get(pki, METRIC, cert=cert)
    async with kept.get(server.url + METRIC) as r:  # keep-alive connection still works
        assert r.status == 200


async def test_half_written_rotation_keeps_the_current_context(server: Server) -> None:
    current = server.tls.current
    (server.cert_dir / "tls.key").write_bytes(b"garbage")
    assert server.tls.reload_once() is False
    assert server.tls.current is current


def test_self_signed_is_written_and_reused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    hosts = ["localhost", "127.0.0.1", "adapter.inference-metrics.svc"]
    first = ServingTLS(None, None, tmp_path, hosts)
    pem = (tmp_path / "apiserver.crt").read_bytes()
    second = ServingTLS(None, None, tmp_path, hosts)
    assert (tmp_path / "apiserver.crt").read_bytes() == pem
    assert first.cert_file == second.cert_file
    ServingTLS(None, None, tmp_path, [*hosts, "other.example"])  # new SAN -> regenerated
    assert (tmp_path / "apiserver.crt").read_bytes() != pem
    ctx = first.context
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
