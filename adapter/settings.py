"""Settings: one frozen dataclass tree. Defaults here, flags in ``adapter.cli``.

``validate()`` returns every problem at once, so a misconfigured Deployment
fails with the whole list instead of one error per restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from adapter.auth.config import AuthSettings


@dataclass(frozen=True)
class ServingSettings:
    bind_address: str = "0.0.0.0"  # noqa: S104  (in a pod the Service must reach us)
    """Address to listen on. Tests and the demo use 127.0.0.1."""
    secure_port: int = 6443
    """HTTPS port (the APIService's Service targets it)."""
    tls_cert_file: Path | None = None
    """Serving certificate (PEM). Without it, a self-signed one is generated."""
    tls_private_key_file: Path | None = None
    """Key of ``tls_cert_file``."""
    cert_dir: Path | None = None
    """Where a generated self-signed certificate is written (and reused from)."""
    shutdown_timeout: float = 20.0
    """Seconds to finish in-flight requests after SIGTERM."""
    extra_hosts: tuple[str, ...] = ()
    """Extra names for a generated self-signed certificate (e.g. the Service DNS name)."""
    max_connections: int = 1000
    """Open connections at most (README: "Connections and memory" says why this default).
    At the cap, a new connection replaces the oldest one that has not authenticated yet,
    or is closed at once when every connection has."""
    request_header_timeout: float = 10.0
    """Seconds from accepting a connection to its first complete request head (TLS
    handshake included). Later requests on an authenticated keep-alive connection
    are bounded by the idle timeout only."""


@dataclass(frozen=True)
class KubeSettings:
    kubeconfig: Path | None = None
    """Kubeconfig file; None means in-cluster credentials."""
    context: str | None = None
    """Kubeconfig context other than the current one."""
    pods_file: Path | None = None
    """Standalone mode: pods from this PodList instead of the Kubernetes API."""


@dataclass(frozen=True)
class PrometheusSettings:
    url: str | None = None
    """Base URL of a server speaking the Prometheus HTTP API (Prometheus, Thanos, Mimir, VM)."""
    bearer_token_file: Path | None = None
    """Token sent as ``Authorization: Bearer``; re-read when it changes."""
    ca_file: Path | None = None
    """CA bundle to verify the server."""
    client_cert_file: Path | None = None
    """Client certificate for mutual TLS."""
    client_key_file: Path | None = None
    """Key of ``client_cert_file``."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra HTTP headers (e.g. ``X-Scope-OrgID`` for Mimir)."""
    timeout: float = 10.0
    """Seconds per query (a deadline: no retries)."""
    insecure_skip_verify: bool = False
    """Skip server certificate verification (never in production)."""
    compression: bool = False
    """Ask for gzip-compressed answers (for a Prometheus across a slow link)."""
    refresh_interval: float = 15.0
    """Seconds between snapshots: one query per rule per interval."""
    stale_after: float | None = None
    """Serve the last snapshot of a failing rule this long; default 3 x refresh_interval."""
    selector_timeout: float = 3.0
    """Deadline of one metricLabelSelector query (answered while the client waits)."""
    selector_concurrency: int = 8
    """Distinct metricLabelSelector queries in flight at once; more get 429."""


@dataclass(frozen=True)
class GpuSettings:
    collector_urls: tuple[str, ...] = ()
    """Standalone mode: collector base URLs. In a cluster, collectors are found by label."""
    collector_selector: str = "app.kubernetes.io/name=gpu-collector"
    """Label selector of collector pods in the pod index."""
    collector_port: int = 9400
    """Port of the collectors' HTTP endpoint."""
    pull_interval: float = 5.0
    """Seconds between pulls of every collector's snapshot."""
    stale_after: float | None = None
    """Drop a node's values when its snapshot is older; default 3 x pull_interval."""
    timeout: float = 2.0
    """Seconds per collector pull."""


@dataclass(frozen=True)
class Settings:
    serving: ServingSettings = field(default_factory=ServingSettings)
    kube: KubeSettings = field(default_factory=KubeSettings)
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    gpu: GpuSettings = field(default_factory=GpuSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    config_file: Path | None = None
    """Rules file (YAML). None: the built-in mission metrics only."""
    presets: tuple[str, ...] = ()
    """``--preset``: the server families the built-ins read, in order (replaces the file's)."""
    config_poll_interval: float = 5.0
    """Seconds between checks of the rules file for changes (SIGHUP reloads at once)."""
    log_level: str = "info"

    def _limit_problems(self) -> list[str]:
        checks = (
            (self.serving.max_connections >= 1, "--max-connections must be at least 1"),
            (self.serving.request_header_timeout > 0, "--request-header-timeout must be positive"),
            (
                self.prometheus.selector_timeout > 0,
                "--prometheus-selector-timeout must be positive",
            ),
            (
                self.prometheus.selector_concurrency >= 1,
                "--prometheus-selector-concurrency must be at least 1",
            ),
        )
        return [problem for ok, problem in checks if not ok]

    def validate(self) -> list[str]:
        problems: list[str] = []
        serving = self.serving
        if not 0 < serving.secure_port < 65536:
            problems.append(f"--secure-port {serving.secure_port}: must be 1-65535")
        if (serving.tls_cert_file is None) != (serving.tls_private_key_file is None):
            problems.append("--tls-cert-file and --tls-private-key-file go together")
        if self.kube.pods_file is not None and self.kube.kubeconfig is not None:
            problems.append(
                "--pods-file (standalone) and --kubeconfig (cluster) exclude each other"
            )
        prom = self.prometheus
        if (prom.client_cert_file is None) != (prom.client_key_file is None):
            problems.append("--prometheus-client-cert and --prometheus-client-key go together")
        if prom.refresh_interval <= 0:
            problems.append("--prometheus-refresh-interval must be positive")
        if prom.stale_after is not None and prom.stale_after < prom.refresh_interval:
            problems.append("--prometheus-stale-after must be at least the refresh interval")
        problems.extend(self._limit_problems())
        if self.gpu.pull_interval <= 0:
            problems.append("--gpu-pull-interval must be positive")
        for path_name, path in (
            ("--config", self.config_file),
            ("--pods-file", self.kube.pods_file),
            ("--tls-cert-file", serving.tls_cert_file),
            ("--tls-private-key-file", serving.tls_private_key_file),
            ("--prometheus-ca-file", prom.ca_file),
            ("--prometheus-bearer-token-file", prom.bearer_token_file),
        ):
            if path is not None and not path.is_file():
                problems.append(f"{path_name} {path}: no such file")
        problems.extend(self.auth.validate())
        if self.log_level not in {"debug", "info", "warning", "error"}:
            problems.append(f"--log-level {self.log_level}: one of debug, info, warning, error")
        return problems
