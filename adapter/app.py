"""Composition root: the one place that wires concrete classes together.

``build_app`` assembles the aiohttp application from already-built parts (tests
pass fakes). ``serve`` builds the real parts from Settings (pod index, sources,
TLS, auth), runs the server and shuts it down gracefully on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from kubernetes.aio.client import ApiClient
from prometheus_client import CollectorRegistry

from adapter.api import handlers, middleware
from adapter.api.auth_middleware import (
    USER,
    access_log_middleware,
    auth_middleware,
    inflight_limit_middleware,
)
from adapter.api.connections import (
    ConnectionGuard,
    GuardedSite,
    connection_marks,
    limit_tls_read_buffer,
    trim_memory,
    tune_malloc,
)
from adapter.api.logs import edge_logger
from adapter.api.state import (
    CATALOGUE,
    EXPLAINER,
    READINESS,
    REGISTRY,
    RESOLVER,
    TELEMETRY,
    ReadinessCheck,
)
from adapter.api.target import request_target
from adapter.api.telemetry import Telemetry
from adapter.api.tls import ServingTLS, TLSConfigError
from adapter.auth.authenticator import Authenticator
from adapter.auth.authorizer import Authorizer, DelegatingAuthorizer, StandaloneAuthorizer
from adapter.auth.config import ConfigMapWatcher, TrustLoader
from adapter.auth.kube import KubeAuthClient
from adapter.auth.tokens import TokenAuthenticator
from adapter.auth.trust import TrustState
from adapter.config import CatalogueHolder, ConfigError
from adapter.core.catalogue import Catalogue, MetricSpec
from adapter.core.explain import Diagnoser, Explainer
from adapter.core.periodic import every
from adapter.core.ports import Clock, PodLister, Source
from adapter.core.resolver import Resolver
from adapter.kube import credentials as kube_credentials
from adapter.kube.errors import KubeConfigError, PodsFileError
from adapter.kube.listwatch import KubePodsAPI
from adapter.kube.pods import PodIndex, PodsFileIndex
from adapter.settings import Settings
from adapter.sources.gpu.discovery import CollectorDiscovery, PodDiscovery, StaticDiscovery
from adapter.sources.gpu.source import GpuSource
from adapter.sources.prometheus.diagnose import PrometheusDiagnoser
from adapter.sources.prometheus.rules import (
    FamilyRule,
    PrometheusRule,
    PromLabels,
    RuleError,
    parse_prometheus_block,
    parse_rule,
)
from adapter.sources.prometheus.source import PrometheusSource
from adapter.sources.prometheus.transport import PrometheusClient, TransportOptions

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
    # Auth and access-log middlewares go here, innermost last (see adapter.api.middleware).
    auth_middlewares: Sequence[Middleware] = ()
    outer_middlewares: Sequence[Middleware] = ()
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
        middlewares=[
            middleware.observe,
            *parts.outer_middlewares,
            middleware.errors,
            request_target,
            *parts.auth_middlewares,
        ],
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
    and closed when no request head arrives within its deadline.
    """
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, access_log=None)
    await runner.setup()
    site = GuardedSite(runner, host, port, ssl_context=ssl_context, guard=guard)
    await site.start()
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


# -- rules file ---------------------------------------------------------------------------


def _strip(prefix: str, problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(path.removeprefix(prefix).lstrip("."), message) for path, message in problems]


def _prometheus_block(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    try:
        parse_prometheus_block(raw)
    except RuleError as e:
        return _strip("prometheus", e.problems)
    return []


def _prometheus_metric(spec: MetricSpec, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
    try:
        labels = parse_prometheus_block(settings)
    except RuleError:
        labels = PromLabels()  # the block's own problems are reported once, by _prometheus_block
    try:
        parse_rule(spec, labels)
    except RuleError as e:
        return _strip("prometheus", e.problems)
    return []


def _gpu_block(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(key), "unknown key (the gpu source takes no options)") for key in raw]


def _gpu_metric(spec: MetricSpec, _settings: Mapping[str, Any]) -> list[tuple[str, str]]:
    return _gpu_block(spec.options)


def catalogue_holder(path: Path | None, presets: tuple[str, ...] | None = None) -> CatalogueHolder:
    """The live catalogue with every source's validators registered. Raises ConfigError.

    ``presets`` (``--preset``) replaces the rules file's ``presets`` when given.
    """
    return CatalogueHolder(
        path,
        metric_validators={"prometheus": _prometheus_metric, "gpu": _gpu_metric},
        block_validators={"prometheus": _prometheus_block, "gpu": _gpu_block},
        presets=presets,
    )


# -- the real thing ------------------------------------------------------------------------


class StartupError(Exception):
    """The adapter cannot start with these settings (the message says why)."""


def prometheus_rules(catalogue: Catalogue) -> list[PrometheusRule]:
    labels = parse_prometheus_block(catalogue.source_settings.get("prometheus", {}))
    return [parse_rule(spec, labels) for spec in catalogue if spec.source == "prometheus"]


def prometheus_queries(catalogue: Catalogue) -> dict[str, tuple[tuple[str, str], ...]]:
    """Per Prometheus metric, ``(family, PromQL)`` for each query a refresh sends.

    Rules without families send one query, labelled with their form.
    """
    result: dict[str, tuple[tuple[str, str], ...]] = {}
    for rule in prometheus_rules(catalogue):
        if isinstance(rule, FamilyRule):
            result[rule.metric] = rule.queries()
        else:
            form = type(rule).__name__.removesuffix("Rule").lower()
            result[rule.metric] = ((form, rule.query()),)
    return result


async def family_winners(
    catalogue: Catalogue, url: str, query_timeout: float
) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """One refresh of the catalogue's Prometheus rules: per metric, the pods each family won.

    A metric whose queries failed is left out (the refresh logs why).
    """
    client = PrometheusClient(TransportOptions(url=url, timeout=query_timeout))
    try:
        source = PrometheusSource(client, prometheus_rules(catalogue))
        await source.refresh_once()
        return {
            str(metric): {
                family: [(str(ns), str(pod)) for ns, pod in pods]
                for family, pods in snap.by_family().items()
            }
            for metric, snap in source.snapshot.items()
        }
    finally:
        client.close()


def _prometheus_source(
    settings: Settings, holder: CatalogueHolder, registry: CollectorRegistry
) -> PrometheusSource | None:
    prom = settings.prometheus
    if prom.url is None:
        needing = [spec.name for spec in holder() if spec.source == "prometheus"]
        if needing:
            raise StartupError(
                f"metrics {', '.join(needing)} come from Prometheus: set --prometheus-url "
                "(or drop them with includeDefaults: false in the rules file)"
            )
        return None
    options = TransportOptions(
        url=prom.url,
        bearer_token_file=_str(prom.bearer_token_file),
        ca_file=_str(prom.ca_file),
        cert_file=_str(prom.client_cert_file),
        key_file=_str(prom.client_key_file),
        headers=dict(prom.headers),
        timeout=prom.timeout,
        insecure_skip_verify=prom.insecure_skip_verify,
        compression=prom.compression,
    )
    # metricLabelSelector queries get their own threads and a short deadline: a hung
    # Prometheus cannot make them wait behind the refresh, nor the refresh behind them.
    selector_options = dataclasses.replace(
        options,
        timeout=min(prom.timeout, prom.selector_timeout),
        max_concurrency=prom.selector_concurrency,
    )
    source = PrometheusSource(
        PrometheusClient(options),
        prometheus_rules(holder()),
        refresh_interval=prom.refresh_interval,
        staleness=prom.stale_after,
        registry=registry,
        selector_api=PrometheusClient(selector_options),
        selector_concurrency=prom.selector_concurrency,
        after_refresh=trim_memory,  # a refresh frees the previous snapshots and its answers
    )
    holder.listeners.append(lambda catalogue: source.update_rules(prometheus_rules(catalogue)))
    return source


def _gpu_source(
    settings: Settings, pods: PodLister, standalone: bool, registry: CollectorRegistry
) -> GpuSource:
    gpu = settings.gpu
    discovery: CollectorDiscovery
    if standalone or gpu.collector_urls:
        discovery = StaticDiscovery(gpu.collector_urls)
        if not gpu.collector_urls:
            log.warning("no --gpu-collector-url given: gpu_utilization will have no values")
    else:
        discovery = PodDiscovery(pods, gpu.collector_selector, gpu.collector_port)
    return GpuSource(
        discovery,
        pull_interval=gpu.pull_interval,
        staleness=gpu.stale_after,
        timeout=gpu.timeout,
        registry=registry,
    )


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


@dataclass
class AuthParts:
    middlewares: list[Middleware]
    lifetimes: list[Callable[[web.Application], AsyncIterator[None]]]


def _auth(settings: Settings, tls: ServingTLS, api_client: ApiClient | None) -> AuthParts:
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
    loader.refresh_once()  # flag files; raises on unreadable material (startup error)
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
        kube = KubeAuthClient(api_client)
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
            watcher = ConfigMapWatcher(kube, loader, auth)
            tolerate = auth.authentication_tolerate_lookup_failure

            async def trust_configmap(_app: web.Application) -> AsyncIterator[None]:
                async with watcher.running(tolerate_failure=tolerate):
                    yield

            lifetimes.append(trust_configmap)
    middlewares = [
        inflight_limit_middleware(auth.max_requests_inflight, auth.max_selector_requests_inflight),
        auth_middleware(
            authenticator, authorizer, always_allow_paths=auth.authorization_always_allow_paths
        ),
    ]
    return AuthParts(middlewares, lifetimes)


async def _pod_lister(
    settings: Settings, stack: contextlib.AsyncExitStack
) -> tuple[PodIndex | PodsFileIndex, ApiClient | None]:
    """The pod index, and the API client it uses (None in standalone mode)."""
    if settings.kube.pods_file is not None:
        pods = PodsFileIndex.load(settings.kube.pods_file)
        log.info("standalone mode: %d pods from %s", len(pods), settings.kube.pods_file)
        return pods, None
    kubeconfig = _str(settings.kube.kubeconfig)
    api_client = await kube_credentials.connect(kubeconfig, context=settings.kube.context)
    stack.push_async_callback(api_client.close)
    return PodIndex(KubePodsAPI(api_client)), api_client


async def serve(settings: Settings, started: Callable[[int], None] | None = None) -> int:
    """Run the adapter until SIGTERM. Returns the process exit code."""
    try:
        holder = catalogue_holder(settings.config_file, settings.presets or None)
    except ConfigError as e:
        log.error("invalid rules file:\n%s", e)
        return 2
    registry = CollectorRegistry(auto_describe=True)
    async with contextlib.AsyncExitStack() as stack:
        try:
            pods, api_client = await _pod_lister(settings, stack)
            sources: dict[str, Source] = {}
            prometheus = _prometheus_source(settings, holder, registry)
            tls = ServingTLS(
                settings.serving.tls_cert_file,
                settings.serving.tls_private_key_file,
                settings.serving.cert_dir,
                hosts=("localhost", "127.0.0.1", *settings.serving.extra_hosts),
            )
            auth = _auth(settings, tls, api_client)
            gpu = _gpu_source(settings, pods, api_client is None, registry)
            stack.push_async_callback(gpu.close)
        except (StartupError, KubeConfigError, PodsFileError, TLSConfigError, RuleError) as e:
            log.error("cannot start: %s", e)
            return 2
        except (OSError, ValueError) as e:  # unreadable CA files, bad collector URLs
            log.error("cannot start: %s", e)
            return 2
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
            auth_middlewares=auth.middlewares,
            outer_middlewares=[
                connection_marks(guard, lambda request: USER in request),
                access_log_middleware(),
            ],
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
