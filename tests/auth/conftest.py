"""A real TLS server on 127.0.0.1 with the auth middlewares, the fake auth API and trustme PKI."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.typedefs import Handler

from adapter.api.middleware import (
    AUTHN_METHOD,
    AUTHZ_SOURCE,
    USER,
    access_log_middleware,
    auth_middleware,
    inflight_limit_middleware,
)
from adapter.api.target import request_target
from adapter.api.tls import ServingTLS
from adapter.auth.authenticator import Authenticator
from adapter.auth.authorizer import Authorizer, DelegatingAuthorizer
from adapter.auth.tokens import TokenAuthenticator
from adapter.auth.trust import TrustState
from adapter.auth.trustsources import TrustLoader
from adapter.core.errors import AdapterError
from adapter.kube.backoff import Backoff
from adapter.kube.configmap import ConfigMapWatch
from adapter.kube.k8s import Configuration, KubeClient
from adapter.kube.listwatch import KubeListWatch
from adapter.kube.reviews import KubeReviews
from adapter.settings import AuthSettings
from tests.fakes.clock import FakeClock
from tests.fakes.kube_auth_api import KubeAuthState, authentication_data, serve_auth_api


@dataclass
class PKI:
    server_ca: trustme.CA = field(default_factory=trustme.CA)
    client_ca: trustme.CA = field(default_factory=trustme.CA)
    proxy_ca: trustme.CA = field(default_factory=trustme.CA)
    unknown_ca: trustme.CA = field(default_factory=trustme.CA)

    def configmap(self, client_ca: trustme.CA | None = None) -> dict[str, str]:
        return {
            **authentication_data(
                self.proxy_ca.cert_pem.bytes().decode(),
                (client_ca or self.client_ca).cert_pem.bytes().decode(),
            ),
            "requestheader-uid-headers": '["X-Remote-Uid"]',
        }


@pytest.fixture(scope="session")
def pki() -> PKI:
    return PKI()


def client_ssl(pki: PKI, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    pki.server_ca.configure_trust(ctx)
    if cert is not None:
        cert.configure_cert(ctx)
    return ctx


@web.middleware
async def render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stand-in for adapter.api.middleware.errors: AdapterError -> Status JSON."""
    try:
        return await handler(request)
    except AdapterError as e:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": e.message,
            "reason": e.reason,
            "code": e.code,
        }
        return web.json_response(body, status=e.code)


async def echo(request: web.Request) -> web.Response:
    """Stand-in for the real handlers: says who was let in, and how."""
    user = request.get(USER)
    return web.json_response(
        {
            "user": user.name if user else None,
            "groups": list(user.groups) if user else [],
            "extra": {k: list(v) for k, v in user.extra.items()} if user else {},
            "uid": user.uid if user else "",
            "authn": request.get(AUTHN_METHOD),
            "authz": request.get(AUTHZ_SOURCE),
        }
    )


def build_app(
    authenticator: Authenticator, authorizer: Authorizer, max_inflight: int = 50
) -> web.Application:
    app = web.Application(
        middlewares=[
            access_log_middleware(),
            render_errors,
            request_target,
            inflight_limit_middleware(max_inflight),
            auth_middleware(authenticator, authorizer),
        ]
    )
    app.router.add_get("/{tail:.*}", echo)
    return app


@dataclass
class Server:
    url: str
    tls: ServingTLS
    trust: TrustState
    loader: TrustLoader
    watcher: ConfigMapWatch
    authorizer: DelegatingAuthorizer
    tokens: TokenAuthenticator
    fake: KubeAuthState
    clock: FakeClock
    cert_dir: Path
    kube_url: str
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    def session(self, pki: PKI, cert: trustme.LeafCert | None = None) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=client_ssl(pki, cert))
        s = aiohttp.ClientSession(connector=connector)
        self.sessions.append(s)
        return s

    async def get(
        self,
        pki: PKI,
        path: str,
        cert: trustme.LeafCert | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        async with self.session(pki, cert) as s, s.get(self.url + path, headers=headers) as r:
            return r.status, await r.json(content_type=None)


def write_serving_cert(ca: trustme.CA, directory: Path) -> tuple[Path, Path]:
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = directory / "tls.crt", directory / "tls.key"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return cert, key


@pytest.fixture
async def server(pki: PKI, tmp_path: Path) -> AsyncIterator[Server]:
    fake = KubeAuthState(configmap_data=pki.configmap())
    clock = FakeClock(1000.0)
    cert_file, key_file = write_serving_cert(pki.server_ca, tmp_path)
    async with serve_auth_api(fake) as kube_url:
        api_client = KubeClient(Configuration(host=kube_url))
        kube = KubeReviews(api_client)
        tls = ServingTLS(cert_file, key_file, None)
        trust = TrustState()
        trust.subscribe(lambda c: tls.set_client_cas(c.client_ca_pem, c.requestheader_ca_pem))
        settings = AuthSettings()
        loader = TrustLoader(settings, trust)
        watcher = ConfigMapWatch(
            KubeListWatch(api_client, request_timeout=10.0),
            settings.configmap_namespace,
            settings.configmap_name,
            loader.set_configmap,
            watch_timeout=30,
            backoff=Backoff(0.01, 0.01),
        )
        tokens = TokenAuthenticator(kube, clock=clock)
        authorizer = DelegatingAuthorizer(kube, clock=clock)
        app = build_app(Authenticator(trust, tokens), authorizer)
        runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context)
        await site.start()
        port = runner.addresses[0][1]
        srv = Server(
            f"https://127.0.0.1:{port}",
            tls,
            trust,
            loader,
            watcher,
            authorizer,
            tokens,
            fake,
            clock,
            tmp_path,
            kube_url,
        )
        try:
            async with watcher.running():
                yield srv
        finally:
            for s in srv.sessions:
                await s.close()
            await runner.cleanup()
            await api_client.close()


LeafFactory = Callable[..., trustme.LeafCert]
