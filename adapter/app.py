"""Composition root: the one place that wires concrete classes together.

``build_app`` assembles the aiohttp application from already-built parts (tests
pass fakes). ``serve`` builds the real parts from Settings with each package's
own constructors (pod index, sources, TLS, auth), closes every client it opened
on its exit stack, runs the server and shuts it down gracefully on SIGTERM.
Source-specific knowledge (rules-file checks, rules, clients) lives in the
source packages; only the choice of which parts to build is made here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from adapter.api import handlers
from adapter.api.connections import (
    ConnectionGuard,
    GuardedSite,
    connection_marks,
    limit_tls_read_buffer,
)
from adapter.api.logs import edge_logger
from adapter.api.middleware import (
    USER,
    access_log_middleware,
    auth_middleware,
    chain,
    inflight_limit_middleware,
)
from adapter.api.state import (
    CATALOGUE,
    EXPLAINER,
    READINESS,
    REGISTRY,
    RESOLVER,
    TELEMETRY,
    ReadinessCheck,
)
from adapter.api.telemetry import Telemetry
from adapter.api.tls import ServingTLS
from adapter.auth.authenticator import Authenticator
from adapter.auth.authorizer import Authorizer, DelegatingAuthorizer, StandaloneAuthorizer
from adapter.auth.tokens import TokenAuthenticator
from adapter.auth.trust import TrustState
from adapter.auth.trustsources import TrustLoader
from adapter.core.catalogue import Catalogue
from adapter.core.errors import StartupError
from adapter.core.explain import Diagnoser, Explainer
from adapter.core.periodic import every
from adapter.core.ports import Clock, PodLister, Source
from adapter.core.resolver import Resolver
from adapter.kube import credentials as kube_credentials
from adapter.kube.configmap import ConfigMapWatch
from adapter.kube.errors import KubeError
from adapter.kube.k8s import KubeClient
from adapter.kube.listwatch import KubeListWatch
from adapter.kube.podindex import PodIndex
from adapter.kube.podsfile import PodsFileIndex
from adapter.kube.reviews import KubeReviews
from adapter.memory import trim_memory, tune_malloc
from adapter.rulesfile import CatalogueHolder, ConfigError
from adapter.settings import Settings
from adapter.sources.gpu.discovery import discovery_from_settings
from adapter.sources.gpu.source import GpuSource
from adapter.sources.prometheus import catalogue as prom_catalogue
from adapter.sources.prometheus.diagnose import PrometheusDiagnoser
from adapter.sources.prometheus.source import PrometheusSource

log = logging.getLogger(__name__)

# aiohttp server limits: request line and header sizes (bytes), header count, and the
# keep-alive timeout, which in aiohttp 3.14 also bounds how long a client may take to
# send a complete request head (slow clients, slowloris).
SERVER_LIMITS: dict[str, Any] = {
    "max_line_size": 8190,
    "max_field_size": 8190,
    "max_headers": 64,
    "keepalive_timeout": 60.0,
}


@dataclass
class Parts:
    """Everything the HTTP app needs, already constructed."""

    catalogue: Callable[[], Catalogue]
    pods: PodLister
    sources: Mapping[str, Source]
    clock: Clock = time.time
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    # The request path, outermost first, as ``adapter.api.middleware.chain`` orders it.
    middlewares: Sequence[Middleware] = field(default_factory=chain)
    readiness: list[ReadinessCheck] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=lambda: dict(SERVER_LIMITS))
    cleanup_ctx: list[Callable[[web.Application], AsyncIterator[None]]] = field(
        default_factory=list
    )
    # Seconds between recomputations of changed cached answers (None: only on read).
    warm_interval: float | None = None
    # Sources that can say why a pod has no value (``?explain=true``), by source name.
    diagnosers: Mapping[str, Diagnoser] = field(default_factory=dict)


def build_app(parts: Parts) -> web.Application:
    """The aiohttp application over ``parts``; no I/O happens here."""
    telemetry = Telemetry(parts.registry, parts.clock)
    app = web.Application(
        middlewares=parts.middlewares,
        client_max_size=64 * 1024,  # we only serve GETs: no body worth more
        # aiohttp's own errors (requests its parser refuses) are logged without a
        # traceback and rate-limited: a client cannot flood the log (adapter.api.logs).
        handler_args={"logger": edge_logger(), **parts.limits},
    )
    app[CATALOGUE] = parts.catalogue
    app[TELEMETRY] = telemetry
    app[REGISTRY] = parts.registry
    app[READINESS] = [_pod_index_ready(parts.pods), *parts.readiness]
    resolver = Resolver(parts.catalogue, parts.pods, parts.sources, parts.clock, telemetry)
    app[RESOLVER] = resolver
    app[EXPLAINER] = Explainer(
        parts.catalogue, parts.pods, parts.sources, parts.diagnosers, parts.clock
    )
    app.cleanup_ctx.extend(parts.cleanup_ctx)
    if parts.warm_interval is not None:
        interval = parts.warm_interval
        app.cleanup_ctx.append(
            background(
                "read-cache-warm",
                lambda: every(
                    interval,
                    lambda: resolver.warm(handlers.render_metric_value_list),
                    what="read cache warm-up",
                ),
            )
        )
    handlers.add_routes(app)
    return app


def _pod_index_ready(pods: PodLister) -> ReadinessCheck:
    def check() -> tuple[str, bool]:
        return ("pod-index", pods.synced)

    return check


def background(
    name: str, run: Callable[[], Any]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry running ``run()`` as a named task for the app's lifetime."""

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run(), name=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return lifetime


async def run_until_signalled(
    app: web.Application,
    *,
    ssl_context: Any,
    host: str,
    port: int,
    shutdown_timeout: float,
    guard: ConnectionGuard,
    on_hup: Callable[[], object] | None = None,
    started: Callable[[int], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT: then stop accepting, finish in-flight requests, exit.

    Connections are accepted through ``guard`` (adapter.api.connections): capped,
    and closed when no request head arrives within its deadline. Raises StartupError
    when the address cannot be listened on.
    """
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, access_log=None)
    try:
        await runner.setup()  # the app's lifetimes start here (a StartupError may stop them)
        site = GuardedSite(runner, host, port, ssl_context=ssl_context, guard=guard)
        try:
            await site.start()
        except OSError as e:  # the port is taken, or the address is not ours
            why = os.strerror(e.errno) if e.errno else str(e)
            raise StartupError(f"cannot listen on {host}:{port}: {why}") from e
    except BaseException:
        await runner.cleanup()  # end the lifetimes that did start
        raise
    bound = site.port
    log.info("serving custom.metrics.k8s.io on https://%s:%d", host, bound)
    if started is not None:
        started(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_hup is not None:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await stop.wait()
        log.info("shutting down: no new connections, finishing in-flight requests")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("stopped")


# -- the real thing ------------------------------------------------------------------------


def catalogue_holder(path: Path | None, presets: tuple[str, ...] | None = None) -> CatalogueHolder:
    """The live catalogue (each source's blocks read by the source). Raises ConfigError.

    ``presets`` (``--preset``) replaces the rules file's ``presets`` when given.
    """
    return CatalogueHolder(path, presets)


def _prometheus_source(
    settings: Settings,
    holder: CatalogueHolder,
    registry: CollectorRegistry,
    stack: contextlib.AsyncExitStack,
) -> PrometheusSource | None:
    """The Prometheus source following the live rules (None without ``--prometheus-url``)."""
    if settings.prometheus.url is None:
        needing = [spec.name for spec in holder() if spec.source == "prometheus"]
        if needing:
            raise StartupError(
                f"metrics {', '.join(needing)} come from Prometheus: set --prometheus-url "
                "(or drop them with includeDefaults: false in the rules file)"
            )
        return None
    source = PrometheusSource.from_settings(
        settings.prometheus,
        prom_catalogue.rules_of(holder()),
        registry=registry,
        after_refresh=trim_memory,  # a refresh frees the previous snapshots and its answers
    )
    stack.callback(source.close)
    holder.listeners.append(
        lambda catalogue: source.update_rules(prom_catalogue.rules_of(catalogue))
    )
    return source


@dataclass
class AuthParts:
    budget: Middleware
    auth: Middleware
    lifetimes: list[Callable[[web.Application], AsyncIterator[None]]]


def _auth(settings: Settings, tls: ServingTLS, api_client: KubeClient | None) -> AuthParts:
    """Authentication and authorization as k8s.io/apiserver delegates them (protocol.md section 7).

    Cluster mode: front-proxy and client certificates from the trust ConfigMap
    (watched, applied live to the TLS context), bearer tokens by TokenReview,
    every request authorized by SubjectAccessReview. Standalone mode: client
    certificates from --client-ca-file only, every authenticated caller allowed.
    """
    auth = settings.auth
    trust = TrustState()
    trust.subscribe(lambda c: tls.set_client_cas(c.client_ca_pem, c.requestheader_ca_pem))
    loader = TrustLoader(auth, trust)
    try:
        loader.refresh_once()  # the flag files
    except (OSError, ValueError) as e:
        raise StartupError(f"cannot use the CA files of the flags: {e}") from e
    lifetimes = [
        background(
            "trust-files",
            lambda: every(30.0, loader.refresh_once, what="trust files reload", immediately=False),
        )
    ]
    authorizer: Authorizer
    if api_client is None:
        authenticator = Authenticator(trust)
        authorizer = StandaloneAuthorizer()
    else:
        kube = KubeReviews(api_client)
        tokens = TokenAuthenticator(
            kube, audiences=auth.api_audiences, ttl=auth.authentication_token_webhook_cache_ttl
        )
        authenticator = Authenticator(trust, tokens)
        authorizer = DelegatingAuthorizer(
            kube,
            allow_ttl=auth.authorization_webhook_cache_authorized_ttl,
            deny_ttl=auth.authorization_webhook_cache_unauthorized_ttl,
            always_allow_paths=frozenset(auth.authorization_always_allow_paths),
        )
        if auth.lookup:
            watcher = ConfigMapWatch(
                KubeListWatch(api_client, request_timeout=10.0),
                auth.configmap_namespace,
                auth.configmap_name,
                loader.set_configmap,
                task_name="trust-configmap-watch",
            )
            tolerate = auth.authentication_tolerate_lookup_failure

            async def trust_configmap(_app: web.Application) -> AsyncIterator[None]:
                try:
                    await watcher.start(tolerate_failure=tolerate)
                except KubeError as e:
                    where = f"{auth.configmap_namespace}/{auth.configmap_name}"
                    raise StartupError(
                        f"cannot read {where} (--authentication-tolerate-lookup-failure "
                        f"starts without it): {e}"
                    ) from e
                try:
                    yield
                finally:
                    await watcher.stop()

            lifetimes.append(trust_configmap)
    return AuthParts(
        budget=inflight_limit_middleware(
            auth.max_requests_inflight, auth.max_selector_requests_inflight
        ),
        auth=auth_middleware(
            authenticator, authorizer, always_allow_paths=auth.authorization_always_allow_paths
        ),
        lifetimes=lifetimes,
    )


async def _pod_lister(
    settings: Settings, stack: contextlib.AsyncExitStack
) -> tuple[PodIndex | PodsFileIndex, KubeClient | None]:
    """The pod index, and the API client it uses (None in standalone mode)."""
    if settings.kube.pods_file is not None:
        pods = PodsFileIndex.load(settings.kube.pods_file)
        log.info("standalone mode: %d pods from %s", len(pods), settings.kube.pods_file)
        return pods, None
    kubeconfig = None if settings.kube.kubeconfig is None else str(settings.kube.kubeconfig)
    api_client = await kube_credentials.connect(kubeconfig, context=settings.kube.context)
    stack.push_async_callback(api_client.close)
    return PodIndex(KubeListWatch(api_client)), api_client


def _gpu_source(
    settings: Settings,
    pods: PodLister,
    standalone: bool,
    registry: CollectorRegistry,
    stack: contextlib.AsyncExitStack,
    *,
    needed: bool = True,
) -> GpuSource:
    """The GPU source: collectors from ``--gpu-collector-url``, or found by label in a cluster.

    ``needed``: a metric of the rules reads it (else no warning about missing
    collectors: gpu_utilization may come from dcgm-exporter)."""
    try:
        discovery = discovery_from_settings(
            settings.gpu, pods, standalone=standalone, warn_if_empty=needed
        )
    except ValueError as e:
        raise StartupError(f"GPU collectors: {e}") from e
    source = GpuSource.from_settings(settings.gpu, discovery, registry=registry)
    stack.push_async_callback(source.close)
    return source


async def serve(settings: Settings, started: Callable[[int], None] | None = None) -> int:
    """Run the adapter until SIGTERM. Returns the process exit code.

    A ``StartupError`` (the settings or a file cannot be used) is logged as one
    line, ``cannot start: ...`` (the rules file's problems, one per line), and
    gives 2; any other exception is a bug and propagates with its traceback.
    """
    try:
        return await _serve(settings, started)
    except ConfigError as e:
        log.error("invalid rules file:\n%s", e)
        return 2
    except StartupError as e:
        log.error("cannot start: %s", e)
        return 2


async def _serve(settings: Settings, started: Callable[[int], None] | None) -> int:
    holder = catalogue_holder(settings.config_file, settings.presets or None)
    registry = CollectorRegistry(auto_describe=True)
    async with contextlib.AsyncExitStack() as stack:
        pods, api_client = await _pod_lister(settings, stack)
        sources: dict[str, Source] = {}
        prometheus = _prometheus_source(settings, holder, registry, stack)
        tls = ServingTLS(
            settings.serving.tls_cert_file,
            settings.serving.tls_private_key_file,
            settings.serving.cert_dir,
            hosts=("localhost", "127.0.0.1", *settings.serving.extra_hosts),
        )
        auth = _auth(settings, tls, api_client)
        gpu = _gpu_source(
            settings,
            pods,
            api_client is None,
            registry,
            stack,
            needed=any(spec.source == "gpu" for spec in holder()),
        )
        tasks: list[Callable[[web.Application], AsyncIterator[None]]] = [
            *auth.lifetimes,
            tls.cleanup_ctx(),
            background(
                "rules-reloader",
                lambda: every(
                    settings.config_poll_interval,
                    holder.reload_once,
                    what="rules file reload",
                    immediately=False,
                ),
            ),
        ]
        if isinstance(pods, PodIndex):
            tasks.append(background("pod-index", pods.run))
        sources["gpu"] = gpu
        tasks.append(background("gpu-pull", gpu.run))
        diagnosers: dict[str, Diagnoser] = {}
        if prometheus is not None:
            sources["prometheus"] = prometheus
            diagnosers["prometheus"] = PrometheusDiagnoser(prometheus)
            tasks.append(background("prometheus-refresh", prometheus.run))
        guard = ConnectionGuard(
            settings.serving.max_connections,
            settings.serving.request_header_timeout,
            registry,
        )
        parts = Parts(
            catalogue=holder,
            pods=pods,
            sources=sources,
            registry=registry,
            middlewares=chain(
                connection_marks=connection_marks(guard, lambda request: USER in request),
                access_log=access_log_middleware(),
                budget=auth.budget,
                auth=auth.auth,
            ),
            cleanup_ctx=tasks,
            warm_interval=1.0,
            diagnosers=diagnosers,
        )
        app = build_app(parts)
        limit_tls_read_buffer()
        tune_gc()
        tune_malloc()
        await run_until_signalled(
            app,
            ssl_context=tls.context,
            host=settings.serving.bind_address,
            port=settings.serving.secure_port,
            shutdown_timeout=settings.serving.shutdown_timeout,
            guard=guard,
            on_hup=lambda: holder.reload_once(force=True),
            started=started,
        )
    return 0


def tune_gc() -> None:
    """Fewer, cheaper garbage collections on the request path.

    A metric read allocates a few objects per pod; with CPython's default gen-0
    threshold (700) a 1,000-pod read triggers several collections, and the
    occasional full one walks the whole pod index. Objects alive at start-up
    are frozen out of collection and the gen-0 threshold is raised.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
