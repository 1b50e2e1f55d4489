"""Settings validation: every message, from the flags that cause it, exactly and all at once.

Paths in the tables are written with ``{d}``: a directory holding the files ``ca.pem``,
``cert.pem``, ``key.pem``, ``pods.yaml`` and ``rules.yaml`` (and nothing named ``missing``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adapter import flags
from adapter.cli import main, parser, settings_from_args
from adapter.settings import AuthSettings, KubeSettings, Settings

FILES = ("ca.pem", "cert.pem", "key.pem", "pods.yaml", "rules.yaml")
STANDALONE = ["--pods-file", "{d}/pods.yaml", "--client-ca-file", "{d}/ca.pem"]

# fmt: off
VALIDATION = [
    # a valid configuration in each mode
    ([], []),
    (STANDALONE, []),
    ([
        "--tls-cert-file", "{d}/cert.pem", "--tls-private-key-file", "{d}/key.pem",
        "--kubeconfig", "{d}/ca.pem", "--config", "{d}/rules.yaml",
        "--prometheus-ca-file", "{d}/ca.pem", "--prometheus-bearer-token-file", "{d}/key.pem",
        "--prometheus-client-cert", "{d}/cert.pem", "--prometheus-client-key", "{d}/key.pem",
        "--prometheus-stale-after", "15s", "--requestheader-client-ca-file", "{d}/ca.pem",
        "--secure-port", "65535", "--max-connections", "1", "--max-requests-inflight", "1",
        "--max-selector-requests-inflight", "1", "--prometheus-selector-concurrency", "1",
        "--requestheader-username-headers", "X-User",
    ], []),
    # serving
    (["--secure-port", "0"], ["--secure-port 0: must be 1-65535"]),
    (["--secure-port", "65536"], ["--secure-port 65536: must be 1-65535"]),
    (["--tls-cert-file", "{d}/cert.pem"], ["--tls-cert-file and --tls-private-key-file go together"]),
    (["--tls-private-key-file", "{d}/key.pem"], ["--tls-cert-file and --tls-private-key-file go together"]),
    (["--max-connections", "0"], ["--max-connections must be at least 1"]),
    (["--request-header-timeout", "0s"], ["--request-header-timeout must be positive"]),
    (
        ["--tls-cert-file", "{d}/missing", "--tls-private-key-file", "{d}/missing"],
        ["--tls-cert-file {d}/missing: no such file", "--tls-private-key-file {d}/missing: no such file"],
    ),
    # pods
    (
        [*STANDALONE, "--kubeconfig", "{d}/ca.pem"],
        ["--pods-file (standalone) and --kubeconfig (cluster) exclude each other"],
    ),
    (
        ["--pods-file", "{d}/missing", "--client-ca-file", "{d}/ca.pem"],
        ["--pods-file {d}/missing: no such file"],
    ),
    # prometheus
    (["--prometheus-client-cert", "{d}/cert.pem"], ["--prometheus-client-cert and --prometheus-client-key go together"]),
    (["--prometheus-client-key", "{d}/key.pem"], ["--prometheus-client-cert and --prometheus-client-key go together"]),
    (["--prometheus-refresh-interval", "0s"], ["--prometheus-refresh-interval must be positive"]),
    (["--prometheus-stale-after", "14s"], ["--prometheus-stale-after must be at least the refresh interval"]),
    (
        ["--prometheus-refresh-interval", "1m", "--prometheus-stale-after", "59s"],
        ["--prometheus-stale-after must be at least the refresh interval"],
    ),
    (["--prometheus-selector-timeout", "0s"], ["--prometheus-selector-timeout must be positive"]),
    (["--prometheus-selector-concurrency", "0"], ["--prometheus-selector-concurrency must be at least 1"]),
    (["--prometheus-max-query-shards", "0"], ["--prometheus-max-query-shards must be within 1..16"]),
    (["--prometheus-max-query-shards", "17"], ["--prometheus-max-query-shards must be within 1..16"]),
    (["--prometheus-ca-file", "{d}/missing"], ["--prometheus-ca-file {d}/missing: no such file"]),
    (["--prometheus-bearer-token-file", "{d}/missing"], ["--prometheus-bearer-token-file {d}/missing: no such file"]),
    # gpu collectors
    (["--gpu-pull-interval", "0s"], ["--gpu-pull-interval must be positive"]),
    # authentication and authorization
    (["--client-ca-file", "{d}/missing"], ["--client-ca-file: {d}/missing is not a readable file"]),
    (["--client-ca-file", "{d}"], ["--client-ca-file: {d} is not a readable file"]),
    (
        ["--requestheader-client-ca-file", "{d}/missing"],
        ["--requestheader-client-ca-file: {d}/missing is not a readable file"],
    ),
    (["--max-requests-inflight", "0"], ["--max-requests-inflight must be at least 1"]),
    (["--max-selector-requests-inflight", "0"], ["--max-selector-requests-inflight must be at least 1"]),
    (
        ["--requestheader-client-ca-file", "{d}/ca.pem", "--requestheader-username-headers", ""],
        ["--requestheader-username-headers may not be empty"],
    ),
    (["--requestheader-username-headers", " , "], []),  # no front proxy: the headers are unused
    # rules
    (["--config", "{d}/missing"], ["--config {d}/missing: no such file"]),
    # across groups: standalone mode (kube) needs a client CA (auth)
    (["--pods-file", "{d}/pods.yaml"], ["--client-ca-file is required without a Kubernetes API (--pods-file)"]),
    (
        ["--pods-file", "{d}/pods.yaml", "--requestheader-client-ca-file", "{d}/ca.pem"],
        ["--client-ca-file is required without a Kubernetes API (--pods-file)"],
    ),
    # every problem at once, group by group, then across groups
    (
        [
            "--secure-port", "0", "--tls-cert-file", "{d}/missing", "--max-connections", "0",
            "--pods-file", "{d}/missing", "--kubeconfig", "{d}/ca.pem",
            "--prometheus-client-key", "{d}/key.pem", "--prometheus-refresh-interval", "0s",
            "--prometheus-ca-file", "{d}/missing", "--gpu-pull-interval", "0s",
            "--max-requests-inflight", "0", "--config", "{d}/missing",
        ],
        [
            "--secure-port 0: must be 1-65535",
            "--tls-cert-file and --tls-private-key-file go together",
            "--max-connections must be at least 1",
            "--tls-cert-file {d}/missing: no such file",
            "--pods-file (standalone) and --kubeconfig (cluster) exclude each other",
            "--pods-file {d}/missing: no such file",
            "--prometheus-client-cert and --prometheus-client-key go together",
            "--prometheus-refresh-interval must be positive",
            "--prometheus-ca-file {d}/missing: no such file",
            "--gpu-pull-interval must be positive",
            "--max-requests-inflight must be at least 1",
            "--client-ca-file is required without a Kubernetes API (--pods-file)",
            "--config {d}/missing: no such file",
        ],
    ),
]
# fmt: on

# Values no flag can give (durations are never negative, --log-level has choices), for
# settings built in code.
UNREACHABLE_BY_FLAGS = [
    (
        Settings(auth=AuthSettings(authentication_token_webhook_cache_ttl=-1.0)),
        ["--authentication-token-webhook-cache-ttl must not be negative"],
    ),
    (
        Settings(auth=AuthSettings(authorization_webhook_cache_authorized_ttl=-0.5)),
        ["--authorization-webhook-cache-authorized-ttl must not be negative"],
    ),
    (
        Settings(auth=AuthSettings(authorization_webhook_cache_unauthorized_ttl=-1.0)),
        ["--authorization-webhook-cache-unauthorized-ttl must not be negative"],
    ),
    (Settings(auth=AuthSettings(authentication_token_webhook_cache_ttl=0.0)), []),
    (Settings(log_level="verbose"), ["--log-level verbose: one of debug, info, warning, error"]),
]


@pytest.fixture
def d(tmp_path: Path) -> Path:
    for name in FILES:
        (tmp_path / name).write_text("x", encoding="utf-8")
    return tmp_path


def _fill(items: list[str], d: Path) -> list[str]:
    return [item.replace("{d}", str(d)) for item in items]


@pytest.mark.parametrize(("args", "messages"), VALIDATION)
def test_validation_reports_exactly_these_messages(
    d: Path, args: list[str], messages: list[str]
) -> None:
    settings = settings_from_args(parser().parse_args(["serve", *_fill(args, d)]))
    assert settings.validate() == _fill(messages, d)


@pytest.mark.parametrize(("settings", "messages"), UNREACHABLE_BY_FLAGS)
def test_validation_of_values_no_flag_can_give(settings: Settings, messages: list[str]) -> None:
    assert settings.validate() == messages


def test_every_flag_a_message_names_is_a_serve_flag() -> None:
    messages = [m for _, ms in [*VALIDATION, *UNREACHABLE_BY_FLAGS] for m in ms]
    named = {flag for message in messages for flag in re.findall(r"--[a-z-]+[a-z]", message)}
    assert named <= set(flags.names(Settings))


def test_serve_prints_every_problem_and_exits_2(
    d: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--secure-port", "0", "--pods-file", f"{d}/pods.yaml"]) == 2
    assert capsys.readouterr().err == (
        "inference-metrics-adapter: --secure-port 0: must be 1-65535\n"
        "inference-metrics-adapter: --client-ca-file is required without a Kubernetes API "
        "(--pods-file)\n"
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--log-level", "verbose"], "argument --log-level: invalid choice: 'verbose'"),
        (["--shutdown-timeout", "15"], "argument --shutdown-timeout: invalid duration '15'"),
        (["--prometheus-header", "X"], "argument --prometheus-header: expected 'Name: value'"),
        (["--secure-port", "https"], "argument --secure-port: invalid int value: 'https'"),
    ],
)
def test_unparseable_flags_exit_2_before_validation(
    args: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", *args])
    assert exited.value.code == 2
    assert f"inference-metrics-adapter serve: error: {error}" in capsys.readouterr().err


def test_standalone_is_computed_from_the_pods_file() -> None:
    assert not Settings().standalone
    assert Settings(kube=KubeSettings(pods_file=Path("pods.yaml"))).standalone
    assert settings_from_args(parser().parse_args(["serve", "--pods-file", "p"])).standalone
    assert not settings_from_args(parser().parse_args(["serve", "--kubeconfig", "k"])).standalone


@pytest.mark.parametrize(
    ("auth", "lookup"),
    [
        (AuthSettings(), True),
        (AuthSettings(authentication_skip_lookup=True), False),
        (AuthSettings(client_ca_file=Path("a")), True),
        (AuthSettings(requestheader_client_ca_file=Path("a")), True),
        (AuthSettings(client_ca_file=Path("a"), requestheader_client_ca_file=Path("b")), False),
    ],
)
def test_the_trust_configmap_is_read_unless_flags_make_it_moot(
    auth: AuthSettings, lookup: bool
) -> None:
    assert auth.lookup is lookup
