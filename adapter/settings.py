"""Settings: one frozen dataclass tree, with the defaults, the flags and their help.

Each field's docstring is its documentation and, when it starts with ``--name:``,
its command-line flag: ``adapter.flags`` reads the docstrings to add the flags,
their ``--help`` text and to read the values back, so a flag is declared once,
next to its field. A field whose docstring does not start with ``--`` has no flag.
How a flag's text becomes the value follows from the annotation (``bool``: a
switch; ``float``: a duration such as ``15s``; ``int``, ``str``, ``Path``); the
few that need more say so in ``field(metadata=...)`` with the constants below.

Each group validates itself; ``Settings.validate()`` adds the checks that span
groups and returns every problem at once, so a misconfigured Deployment fails
with the whole list instead of one error per restart.

This module imports nothing of ours: every layer may read settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "extension-apiserver-authentication"
"""Where kube-apiserver publishes the trust material for extension API servers."""

COMMA_SEPARATED: Final = MappingProxyType({"parse": "comma-separated"})
"""A ``tuple[str, ...]`` flag given once, as ``a,b,c`` (kube-apiserver's style)."""
REPEATABLE: Final = MappingProxyType({"parse": "repeatable"})
"""A ``tuple[str, ...]`` flag given once per value, in order."""
REPEATABLE_HEADER: Final = MappingProxyType({"parse": "header", "metavar": "'NAME: VALUE'"})
"""A ``tuple[tuple[str, str], ...]`` flag given once per ``Name: value`` header."""
LOG_LEVELS: Final = ("debug", "info", "warning", "error")


def _files_missing(files: tuple[tuple[str, Path | None], ...]) -> list[str]:
    missing = [(flag, path) for flag, path in files if path is not None and not path.is_file()]
    return [f"{flag} {path}: no such file" for flag, path in missing]


@dataclass(frozen=True)
class ServingSettings:
    """HTTPS serving."""

    bind_address: str = "0.0.0.0"  # noqa: S104  (in a pod the Service must reach us)
    """--bind-address: address to listen on. Tests and the demo use 127.0.0.1."""
    secure_port: int = 6443
    """--secure-port: HTTPS port (the APIService's Service targets it)."""
    tls_cert_file: Path | None = None
    """--tls-cert-file: serving certificate (PEM), reloaded when it changes. Without it,
    a self-signed one is generated."""
    tls_private_key_file: Path | None = None
    """--tls-private-key-file: key of --tls-cert-file."""
    cert_dir: Path | None = None
    """--cert-dir: where a generated self-signed certificate is written (and reused from)."""
    shutdown_timeout: float = 20.0
    """--shutdown-timeout: time to finish in-flight requests after SIGTERM."""
    extra_hosts: tuple[str, ...] = field(default=(), metadata=REPEATABLE)
    """--self-signed-host: extra DNS name for a generated self-signed certificate (e.g. the
    Service's); repeatable."""
    max_connections: int = 1000
    """--max-connections: open connections at most. At the cap, a new connection replaces
    the oldest one that has not authenticated yet, or is closed at once when every
    connection has (README: "Connections and memory" says why this default)."""
    request_header_timeout: float = 10.0
    """--request-header-timeout: from accepting a connection to its first complete request
    head, TLS handshake included. Later requests on an authenticated keep-alive connection
    are bounded by the idle timeout only."""

    def validate(self) -> list[str]:
        """This group's problems (empty when fine)."""
        problems: list[str] = []
        if not 0 < self.secure_port < 65536:
            problems.append(f"--secure-port {self.secure_port}: must be 1-65535")
        if (self.tls_cert_file is None) != (self.tls_private_key_file is None):
            problems.append("--tls-cert-file and --tls-private-key-file go together")
        if self.max_connections < 1:
            problems.append("--max-connections must be at least 1")
        if self.request_header_timeout <= 0:
            problems.append("--request-header-timeout must be positive")
        return problems + _files_missing(
            (
                ("--tls-cert-file", self.tls_cert_file),
                ("--tls-private-key-file", self.tls_private_key_file),
            )
        )


@dataclass(frozen=True)
class KubeSettings:
    """Pods: from the Kubernetes API, or from a file without one."""

    kubeconfig: Path | None = None
    """--kubeconfig: kubeconfig file; without it, the in-cluster service account."""
    context: str | None = None
    """--context: kubeconfig context other than the current one."""
    pods_file: Path | None = None
    """--pods-file: standalone mode: pods from this PodList (YAML or JSON) instead of the
    Kubernetes API."""

    @property
    def standalone(self) -> bool:
        """No Kubernetes API: pods from ``--pods-file``; client certificates only, every
        authenticated caller allowed."""
        return self.pods_file is not None

    def validate(self) -> list[str]:
        """This group's problems (empty when fine)."""
        problems: list[str] = []
        if self.pods_file is not None and self.kubeconfig is not None:
            problems.append(
                "--pods-file (standalone) and --kubeconfig (cluster) exclude each other"
            )
        return problems + _files_missing((("--pods-file", self.pods_file),))


@dataclass(frozen=True)
class PrometheusSettings:
    """Prometheus.

    Any server speaking its HTTP API; rules are queried once per refresh interval.
    """

    url: str | None = None
    """--prometheus-url: base URL of a server speaking the Prometheus HTTP API (Prometheus,
    Thanos, Mimir, VictoriaMetrics)."""
    bearer_token_file: Path | None = None
    """--prometheus-bearer-token-file: token sent as ``Authorization: Bearer``; re-read when
    it changes."""
    ca_file: Path | None = None
    """--prometheus-ca-file: CA bundle to verify the server."""
    client_cert_file: Path | None = None
    """--prometheus-client-cert: client certificate for mutual TLS."""
    client_key_file: Path | None = None
    """--prometheus-client-key: key of --prometheus-client-cert."""
    headers: tuple[tuple[str, str], ...] = field(default=(), metadata=REPEATABLE_HEADER)
    """--prometheus-header: extra HTTP header (e.g. ``X-Scope-OrgID: team`` for Mimir);
    repeatable."""
    timeout: float = 10.0
    """--prometheus-timeout: per refresh query: a deadline, nothing is retried."""
    insecure_skip_verify: bool = False
    """--prometheus-insecure-skip-verify: skip server certificate verification (never in
    production)."""
    compression: bool = False
    """--prometheus-compression: ask for gzip-compressed answers (for a Prometheus across a
    slow link; off by default: compressing a large answer costs Prometheus more time than a
    cluster network takes to carry it)."""
    refresh_interval: float = 15.0
    """--prometheus-refresh-interval: time between snapshots: one query per rule per
    interval."""
    stale_after: float | None = None
    """--prometheus-stale-after: serve the last snapshot of a failing rule this long;
    default 3 x --prometheus-refresh-interval."""
    selector_timeout: float = 3.0
    """--prometheus-selector-timeout: deadline of one metricLabelSelector query (answered
    while the client waits)."""
    selector_concurrency: int = 8
    """--prometheus-selector-concurrency: distinct metricLabelSelector queries in flight at
    once; more get 429."""
    max_query_shards: int = 4
    """--prometheus-max-query-shards: split a refresh query whose last answer was large into
    up to this many queries sent at once, by the pod name's last character (one per 20,000
    series; 1: never split), so decoding the first answers overlaps Prometheus evaluating
    the others. Measured at 10,000 pods (the p95 histogram query, 180,000 series, 2 cores):
    one query 2.5 to 2.7 s, 2 shards 1.8 to 2.4 s, 4 shards 1.7 to 2.0 s, 8 shards 1.7 to
    2.1 s: more than 4 only adds queries."""

    def validate(self) -> list[str]:
        """This group's problems (empty when fine)."""
        problems: list[str] = []
        if (self.client_cert_file is None) != (self.client_key_file is None):
            problems.append("--prometheus-client-cert and --prometheus-client-key go together")
        if self.refresh_interval <= 0:
            problems.append("--prometheus-refresh-interval must be positive")
        if self.stale_after is not None and self.stale_after < self.refresh_interval:
            problems.append("--prometheus-stale-after must be at least the refresh interval")
        if self.selector_timeout <= 0:
            problems.append("--prometheus-selector-timeout must be positive")
        if self.selector_concurrency < 1:
            problems.append("--prometheus-selector-concurrency must be at least 1")
        if not 1 <= self.max_query_shards <= 16:
            problems.append("--prometheus-max-query-shards must be within 1..16")
        return problems + _files_missing(
            (
                ("--prometheus-ca-file", self.ca_file),
                ("--prometheus-bearer-token-file", self.bearer_token_file),
            )
        )


@dataclass(frozen=True)
class GpuSettings:
    """GPU collectors.

    Each node's collector serves a snapshot the adapter pulls every pull interval.
    """

    collector_urls: tuple[str, ...] = field(default=(), metadata=REPEATABLE)
    """--gpu-collector-url: standalone mode: a collector's base URL; repeatable. In a
    cluster, collectors are found by label."""
    collector_selector: str = "app.kubernetes.io/name=gpu-collector"
    """--gpu-collector-selector: label selector of collector pods in the pod index."""
    collector_port: int = 9400
    """--gpu-collector-port: port of the collectors' HTTP endpoint."""
    pull_interval: float = 5.0
    """--gpu-pull-interval: time between pulls of every collector's snapshot."""
    stale_after: float | None = None
    """--gpu-stale-after: drop a node's values when its snapshot is older; default
    3 x --gpu-pull-interval."""
    timeout: float = 2.0
    """--gpu-timeout: deadline of one collector pull."""

    def validate(self) -> list[str]:
        """This group's problems (empty when fine)."""
        if self.pull_interval <= 0:
            return ["--gpu-pull-interval must be positive"]
        return []


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Authentication and authorization (names as kube-apiserver's)."""

    client_ca_file: Path | None = None
    """--client-ca-file: CA bundle for client certificates (user = CN, groups = O);
    default: the trust ConfigMap's."""
    requestheader_client_ca_file: Path | None = None
    """--requestheader-client-ca-file: CA of the front proxy (the aggregator); default: the
    trust ConfigMap's."""
    requestheader_allowed_names: tuple[str, ...] = field(default=(), metadata=COMMA_SEPARATED)
    """--requestheader-allowed-names: front-proxy certificate CNs, comma-separated; empty
    allows any."""
    requestheader_username_headers: tuple[str, ...] = field(
        default=("X-Remote-User",), metadata=COMMA_SEPARATED
    )
    """--requestheader-username-headers: headers naming the user, comma-separated."""
    requestheader_group_headers: tuple[str, ...] = field(
        default=("X-Remote-Group",), metadata=COMMA_SEPARATED
    )
    """--requestheader-group-headers: headers naming the groups, comma-separated."""
    requestheader_extra_headers_prefix: tuple[str, ...] = field(
        default=("X-Remote-Extra-",), metadata=COMMA_SEPARATED
    )
    """--requestheader-extra-headers-prefix: prefixes of headers carrying extra user
    attributes, comma-separated."""
    requestheader_uid_headers: tuple[str, ...] = field(
        default=("X-Remote-Uid",), metadata=COMMA_SEPARATED
    )
    """--requestheader-uid-headers: headers naming the user's UID, comma-separated."""
    authentication_skip_lookup: bool = False
    """--authentication-skip-lookup: do not read the kube-system ConfigMap
    extension-apiserver-authentication."""
    authentication_tolerate_lookup_failure: bool = False
    """--authentication-tolerate-lookup-failure: start even if the ConfigMap cannot be
    read."""
    authentication_token_webhook_cache_ttl: float = 10.0
    """--authentication-token-webhook-cache-ttl: how long TokenReview results are kept."""
    api_audiences: tuple[str, ...] = field(default=(), metadata=COMMA_SEPARATED)
    """--api-audiences: audiences asked of TokenReview, comma-separated; empty means the API
    server's default."""
    authorization_webhook_cache_authorized_ttl: float = 10.0
    """--authorization-webhook-cache-authorized-ttl: how long SubjectAccessReview allows
    are kept."""
    authorization_webhook_cache_unauthorized_ttl: float = 10.0
    """--authorization-webhook-cache-unauthorized-ttl: how long SubjectAccessReview denials
    are kept."""
    authorization_always_allow_paths: tuple[str, ...] = field(
        default=("/healthz", "/readyz", "/livez"), metadata=COMMA_SEPARATED
    )
    """--authorization-always-allow-paths: exact paths served without authentication or
    authorization, comma-separated."""
    max_requests_inflight: int = 400
    """--max-requests-inflight: concurrent requests beyond this get 429 (probes excepted)."""
    max_selector_requests_inflight: int = 100
    """--max-selector-requests-inflight: a separate budget for metric reads with a
    metricLabelSelector (they may wait on Prometheus), so they never starve the rest."""
    configmap_namespace: str = CONFIGMAP_NAMESPACE
    """Namespace of the trust ConfigMap (kube-apiserver's choice; no flag)."""
    configmap_name: str = CONFIGMAP_NAME
    """Name of the trust ConfigMap (kube-apiserver's choice; no flag)."""

    @property
    def lookup(self) -> bool:
        """Whether a cluster-mode adapter reads the trust ConfigMap at all (standalone,
        there is no API to read it from)."""
        return not (
            self.authentication_skip_lookup
            or (self.client_ca_file and self.requestheader_client_ca_file)
        )

    def validate(self) -> list[str]:
        """This group's problems (empty when fine)."""
        errors: list[str] = []
        for flag, path in (
            ("--client-ca-file", self.client_ca_file),
            ("--requestheader-client-ca-file", self.requestheader_client_ca_file),
        ):
            if path is not None and not path.is_file():
                errors.append(f"{flag}: {path} is not a readable file")
        for flag, ttl in (
            (
                "--authentication-token-webhook-cache-ttl",
                self.authentication_token_webhook_cache_ttl,
            ),
            (
                "--authorization-webhook-cache-authorized-ttl",
                self.authorization_webhook_cache_authorized_ttl,
            ),
            (
                "--authorization-webhook-cache-unauthorized-ttl",
                self.authorization_webhook_cache_unauthorized_ttl,
            ),
        ):
            if ttl < 0:
                errors.append(f"{flag} must not be negative")
        if self.max_requests_inflight < 1:
            errors.append("--max-requests-inflight must be at least 1")
        if self.max_selector_requests_inflight < 1:
            errors.append("--max-selector-requests-inflight must be at least 1")
        if not self.requestheader_username_headers and self.requestheader_client_ca_file:
            errors.append("--requestheader-username-headers may not be empty")
        return errors


@dataclass(frozen=True)
class Settings:
    """Rules and logging.

    The root of the tree: one field per group, then the settings of no group (the
    first line above titles their flags in ``--help``).
    """

    serving: ServingSettings = field(default_factory=ServingSettings)
    """The HTTPS listener: address, certificate, connection limits."""
    kube: KubeSettings = field(default_factory=KubeSettings)
    """Where pods come from: the Kubernetes API, or a file (standalone)."""
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    """The Prometheus HTTP API the snapshot source queries."""
    gpu: GpuSettings = field(default_factory=GpuSettings)
    """The GPU collectors the GPU source pulls."""
    auth: AuthSettings = field(default_factory=AuthSettings)
    """Who may call, as kube-apiserver delegates it."""
    config_file: Path | None = None
    """--config: rules file (YAML), reloaded on change and on SIGHUP; without it, the
    built-in metrics only."""
    presets: tuple[str, ...] = field(default=(), metadata=REPEATABLE | {"metavar": "FAMILY"})
    """--preset: read the built-ins only from this server family (vllm, sglang,
    trtllm-serve, triton-trtllm, triton, tgi, nim, knative, generic); repeatable, in order;
    replaces the rules file's presets."""
    config_poll_interval: float = 5.0
    """Seconds between checks of the rules file for changes (SIGHUP reloads at once)."""
    log_level: str = field(default="info", metadata={"choices": LOG_LEVELS})
    """--log-level: JSON logs on stderr at this level and above; one access-log line per
    request at info."""

    @property
    def standalone(self) -> bool:
        """No Kubernetes API (``--pods-file``): see ``KubeSettings.standalone``."""
        return self.kube.standalone

    def validate(self) -> list[str]:
        """Every problem at once, group by group, then those spanning groups (empty when
        fine)."""
        problems = [
            *self.serving.validate(),
            *self.kube.validate(),
            *self.prometheus.validate(),
            *self.gpu.validate(),
            *self.auth.validate(),
        ]
        if self.standalone and self.auth.client_ca_file is None:
            problems.append("--client-ca-file is required without a Kubernetes API (--pods-file)")
        problems.extend(_files_missing((("--config", self.config_file),)))
        if self.log_level not in LOG_LEVELS:
            problems.append(f"--log-level {self.log_level}: one of debug, info, warning, error")
        return problems
