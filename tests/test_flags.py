"""Flags from settings: names, groups, help lines, values read back, and the README's table."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import fnmatch
import re
import sys
from pathlib import Path

import pytest

from adapter import flags
from adapter.cli import parser, settings_from_args
from adapter.settings import (
    COMMA_SEPARATED,
    REPEATABLE,
    AuthSettings,
    GpuSettings,
    KubeSettings,
    PrometheusSettings,
    ServingSettings,
    Settings,
)

ROOT = Path(__file__).parents[1]

# The flags of ``serve`` as ``--help`` groups them: these names are an interface
# (deploy/ manifests and users' Deployments pass them).
SERVE_GROUPS = {
    "HTTPS serving": [
        "--bind-address", "--secure-port", "--tls-cert-file", "--tls-private-key-file",
        "--cert-dir", "--shutdown-timeout", "--self-signed-host", "--max-connections",
        "--request-header-timeout",
    ],
    "Pods: from the Kubernetes API, or from a file without one": [
        "--kubeconfig", "--context", "--pods-file",
    ],
    "Prometheus": [
        "--prometheus-url", "--prometheus-bearer-token-file", "--prometheus-ca-file",
        "--prometheus-client-cert", "--prometheus-client-key", "--prometheus-header",
        "--prometheus-timeout", "--prometheus-insecure-skip-verify", "--prometheus-compression",
        "--prometheus-refresh-interval", "--prometheus-stale-after",
        "--prometheus-selector-timeout", "--prometheus-selector-concurrency",
        "--prometheus-max-query-shards",
    ],
    "GPU collectors": [
        "--gpu-collector-url", "--gpu-collector-selector", "--gpu-collector-port",
        "--gpu-pull-interval", "--gpu-stale-after", "--gpu-timeout",
    ],
    "Authentication and authorization (names as kube-apiserver's)": [
        "--client-ca-file", "--requestheader-client-ca-file", "--requestheader-allowed-names",
        "--requestheader-username-headers", "--requestheader-group-headers",
        "--requestheader-extra-headers-prefix", "--requestheader-uid-headers",
        "--authentication-skip-lookup", "--authentication-tolerate-lookup-failure",
        "--authentication-token-webhook-cache-ttl", "--api-audiences",
        "--authorization-webhook-cache-authorized-ttl",
        "--authorization-webhook-cache-unauthorized-ttl", "--authorization-always-allow-paths",
        "--max-requests-inflight", "--max-selector-requests-inflight",
    ],
    "Rules and logging": ["--config", "--preset", "--log-level"],
}  # fmt: skip


@pytest.fixture(autouse=True)
def _columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """argparse wraps help to the terminal's width: make it the same everywhere."""
    monkeypatch.setenv("COLUMNS", "80")


def _subcommands(root: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in root._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _help(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_every_flag_of_every_subcommand_has_a_help_line() -> None:
    root = parser()
    without = [
        f"{name} {action.option_strings or action.dest}"
        for name, sub in [("", root), *_subcommands(root).items()]
        for action in sub._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert without == []
    (sub,) = [a for a in root._actions if isinstance(a, argparse._SubParsersAction)]
    assert [c.dest for c in sub._choices_actions if not c.help] == []
    assert sorted(c.dest for c in sub._choices_actions) == sorted(_subcommands(root))


def test_serve_help_groups_the_flags_by_settings_group(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help("serve", capsys=capsys)
    sections: dict[str, list[str]] = {}
    for line in text.split("\n\n")[1:]:
        title, _, body = line.partition(":\n")
        sections[title] = re.findall(r"^  (--[a-z-]+)", body, flags=re.MULTILINE)
    assert sections == {"options": [], **SERVE_GROUPS}
    assert flags.names(Settings) == [f for group in SERVE_GROUPS.values() for f in group]


@pytest.mark.parametrize(
    ("flag", "line"),
    [
        ("--secure-port", "--secure-port N HTTPS port (the APIService's Service targets "),
        ("--shutdown-timeout", "--shutdown-timeout DURATION"),
        ("--tls-cert-file", "--tls-cert-file FILE serving certificate (PEM), reloaded"),
        ("--cert-dir", "--cert-dir DIR where a generated self-signed certificate"),
        ("--prometheus-header", "--prometheus-header 'NAME: VALUE'"),
        ("--log-level", "--log-level {debug,info,warning,error}"),
        ("--preset", "--preset FAMILY read the built-ins only from this server family"),
    ],
)
def test_help_shows_a_metavar_by_kind(
    flag: str, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert f" {line}" in " ".join(_help("serve", capsys=capsys).split())


def test_help_lines_end_with_the_default_as_a_user_writes_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = " ".join(_help("serve", capsys=capsys).split())
    for expected in (
        "--shutdown-timeout DURATION time to finish in-flight requests after SIGTERM. "
        "(default: 20s) ",
        "(default: /healthz,/readyz,/livez) ",
        "token sent as 'Authorization: Bearer'; re-read when it changes. --prometheus-ca-file",
        "--cert-dir DIR where a generated self-signed certificate is written (and reused "
        "from). --shutdown-timeout",
    ):
        assert expected in text


def test_every_settings_field_has_a_docstring() -> None:
    missing = [
        f"{cls.__name__}.{field.name}"
        for cls in flags.tree(Settings)
        for field in dataclasses.fields(cls)
        if not flags.docstring(cls, field.name)
    ]
    assert missing == []
    assert flags.tree(Settings) == [
        ServingSettings,
        KubeSettings,
        PrometheusSettings,
        GpuSettings,
        AuthSettings,
        Settings,
    ]


def test_fields_without_a_flag_are_the_documented_ones() -> None:
    assert [
        f"{cls.__name__}.{field.name}"
        for cls in flags.tree(Settings)
        for field in dataclasses.fields(cls)
        if flags.flag(cls, field) is None and flags.group_of(field) is None
    ] == [
        "AuthSettings.configmap_namespace",
        "AuthSettings.configmap_name",
        "Settings.config_poll_interval",
    ]


def test_serve_without_flags_gives_the_default_settings() -> None:
    assert settings_from_args(parser().parse_args(["serve"])) == Settings()


def test_every_serve_flag_reaches_its_field() -> None:
    argv = [
        "serve",
        "--bind-address=127.0.0.1", "--secure-port=8443", "--tls-cert-file=c.pem",
        "--tls-private-key-file=k.pem", "--cert-dir=certs", "--shutdown-timeout=1m",
        "--self-signed-host=a.svc", "--self-signed-host=b.svc", "--max-connections=5",
        "--request-header-timeout=500ms",
        "--kubeconfig=kc", "--context=kind", "--pods-file=pods.yaml",
        "--prometheus-url=http://p:9090", "--prometheus-bearer-token-file=t",
        "--prometheus-ca-file=pca", "--prometheus-client-cert=pc", "--prometheus-client-key=pk",
        "--prometheus-header=X-Scope-OrgID: team", "--prometheus-header", " A :b:c ",
        "--prometheus-timeout=2s", "--prometheus-insecure-skip-verify", "--prometheus-compression",
        "--prometheus-refresh-interval=30s", "--prometheus-stale-after=2m",
        "--prometheus-selector-timeout=1s", "--prometheus-selector-concurrency=2",
        "--prometheus-max-query-shards=8",
        "--gpu-collector-url=http://n1:9400", "--gpu-collector-url=http://n2:9400",
        "--gpu-collector-selector=app=c", "--gpu-collector-port=9500", "--gpu-pull-interval=1s",
        "--gpu-stale-after=10s", "--gpu-timeout=750ms",
        "--client-ca-file=ca", "--requestheader-client-ca-file=rca",
        "--requestheader-allowed-names=front-proxy, aggregator,",
        "--requestheader-username-headers=X-U", "--requestheader-group-headers=X-G,X-G2",
        "--requestheader-extra-headers-prefix=X-E-", "--requestheader-uid-headers=",
        "--authentication-skip-lookup", "--authentication-tolerate-lookup-failure",
        "--authentication-token-webhook-cache-ttl=1m", "--api-audiences=a,b",
        "--authorization-webhook-cache-authorized-ttl=5s",
        "--authorization-webhook-cache-unauthorized-ttl=0s",
        "--authorization-always-allow-paths=/livez", "--max-requests-inflight=7",
        "--max-selector-requests-inflight=3",
        "--config=rules.yaml", "--preset=vllm", "--preset=tgi", "--log-level=debug",
    ]  # fmt: skip
    assert settings_from_args(parser().parse_args(argv)) == Settings(
        serving=ServingSettings(
            bind_address="127.0.0.1",
            secure_port=8443,
            tls_cert_file=Path("c.pem"),
            tls_private_key_file=Path("k.pem"),
            cert_dir=Path("certs"),
            shutdown_timeout=60.0,
            extra_hosts=("a.svc", "b.svc"),
            max_connections=5,
            request_header_timeout=0.5,
        ),
        kube=KubeSettings(kubeconfig=Path("kc"), context="kind", pods_file=Path("pods.yaml")),
        prometheus=PrometheusSettings(
            url="http://p:9090",
            bearer_token_file=Path("t"),
            ca_file=Path("pca"),
            client_cert_file=Path("pc"),
            client_key_file=Path("pk"),
            headers=(("X-Scope-OrgID", "team"), ("A", "b:c")),
            timeout=2.0,
            insecure_skip_verify=True,
            compression=True,
            refresh_interval=30.0,
            stale_after=120.0,
            selector_timeout=1.0,
            selector_concurrency=2,
            max_query_shards=8,
        ),
        gpu=GpuSettings(
            collector_urls=("http://n1:9400", "http://n2:9400"),
            collector_selector="app=c",
            collector_port=9500,
            pull_interval=1.0,
            stale_after=10.0,
            timeout=0.75,
        ),
        auth=AuthSettings(
            client_ca_file=Path("ca"),
            requestheader_client_ca_file=Path("rca"),
            requestheader_allowed_names=("front-proxy", "aggregator"),
            requestheader_username_headers=("X-U",),
            requestheader_group_headers=("X-G", "X-G2"),
            requestheader_extra_headers_prefix=("X-E-",),
            requestheader_uid_headers=(),
            authentication_skip_lookup=True,
            authentication_tolerate_lookup_failure=True,
            authentication_token_webhook_cache_ttl=60.0,
            api_audiences=("a", "b"),
            authorization_webhook_cache_authorized_ttl=5.0,
            authorization_webhook_cache_unauthorized_ttl=0.0,
            authorization_always_allow_paths=("/livez",),
            max_requests_inflight=7,
            max_selector_requests_inflight=3,
        ),
        config_file=Path("rules.yaml"),
        presets=("vllm", "tgi"),
        log_level="debug",
    )


def test_parsed_arguments_keep_the_flag_names() -> None:
    """Attributes of the parsed arguments are named after the flags (manifest tests read them)."""
    args = parser().parse_args(["serve", "--self-signed-host", "h", "--preset", "tgi"])
    assert args.self_signed_host == ["h"]
    assert args.preset == ["tgi"]
    assert args.prometheus_url is None
    assert args.secure_port == 6443


def test_check_config_shares_the_preset_flag_of_serve(
    capsys: pytest.CaptureFixture[str],
) -> None:
    entry = re.compile(r"\n  --preset FAMILY .*?(?=\n  \S|\n\n)", re.DOTALL)
    serve = entry.findall(_help("serve", capsys=capsys))
    assert serve == entry.findall(_help("check-config", capsys=capsys))
    assert len(serve) == 1
    assert "replaces the rules file's presets." in " ".join(serve[0].split())


def test_settings_imports_nothing_of_ours() -> None:
    """Only the standard library: every layer may read settings."""
    tree = ast.parse((ROOT / "adapter" / "settings.py").read_text(encoding="utf-8"))
    imported = {
        (node.module or ".") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert {name.split(".")[0] for name in imported} <= sys.stdlib_module_names | {"__future__"}
    assert "dataclasses" in imported


def _readme_serve_rows() -> list[tuple[list[str], list[str]]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### `inference-metrics-adapter serve`\n", 1)[1].split("\n#", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert table[:2] == ["| flag | default | meaning |", "|---|---|---|"]
    rows = []
    for line in table[2:]:
        flag_cell, default_cell, _meaning = line.strip("|").split(" | ")
        rows.append((re.findall(r"`(--[a-z*-]+)", flag_cell), default_cell.split(", ")))
    return rows


def test_the_readme_table_lists_every_serve_flag_once() -> None:
    names = flags.names(Settings)
    listed = [
        name for patterns, _ in _readme_serve_rows() for p in patterns
        for name in fnmatch.filter(names, p)
    ]  # fmt: skip
    assert sorted(listed) == sorted(names)


def test_the_readme_table_states_the_defaults_the_flags_have() -> None:
    by_name = {f.name: f for cls in flags.tree(Settings) for f in flags.flags(cls)}
    checked = 0
    for patterns, defaults in _readme_serve_rows():
        names = [name for p in patterns for name in fnmatch.filter(list(by_name), p)]
        stated = defaults * len(names) if len(defaults) == 1 else defaults
        assert len(stated) == len(names), (patterns, defaults)
        for name, default in zip(names, stated, strict=True):
            if default in {"—", "off"}:
                assert by_name[name].default_text() is None, name
                checked += 1
            elif default.startswith("`"):
                assert f"`{by_name[name].default_text()}`" == default, name
                checked += 1
    assert checked == 38


# The plumbing on a small tree of its own: what a docstring and an annotation declare.


@dataclasses.dataclass(frozen=True)
class _Inner:
    """Inner group.

    Not part of the title.
    """

    wait: float | None = None
    """--inner-wait: how long, 100% of it
    (spread over two lines)."""
    names: tuple[str, ...] = dataclasses.field(default=("a", "b"), metadata=COMMA_SEPARATED)
    """--inner-names: names."""
    hidden: int = 3
    """No flag: the docstring does not start with --."""


@dataclasses.dataclass(frozen=True)
class _Outer:
    """Outer."""

    inner: _Inner = dataclasses.field(default_factory=_Inner)
    """The inner group."""
    on: bool = False
    """--on: a switch."""
    urls: tuple[str, ...] = dataclasses.field(default=(), metadata=REPEATABLE)
    """--url: repeatable."""
    undocumented: int = 1


@dataclasses.dataclass(frozen=True)
class _SwitchOnByDefault:
    """Bad."""

    on: bool = True
    """--on: cannot be turned off."""


@dataclasses.dataclass(frozen=True)
class _TupleWithoutMetadata:
    """Bad."""

    items: tuple[str, ...] = ()
    """--items: comma-separated or repeated?"""


def _toy_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy")
    flags.add_flags(p, _Outer)
    return p


def test_docstrings_declare_flags_and_the_rest_keeps_its_default() -> None:
    assert flags.names(_Outer) == ["--inner-wait", "--inner-names", "--on", "--url"]
    assert flags.tree(_Outer) == [_Inner, _Outer]
    assert flags.from_args(_Outer, _toy_parser().parse_args([])) == _Outer()
    args = _toy_parser().parse_args(
        ["--inner-wait", "1m30s", "--inner-names", "x", "--on", "--url", "u", "--url", "v"]
    )
    assert flags.from_args(_Outer, args) == _Outer(
        inner=_Inner(wait=90.0, names=("x",)), on=True, urls=("u", "v")
    )


def test_help_is_the_docstring_on_one_line_with_the_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        _toy_parser().parse_args(["--help"])
    assert capsys.readouterr().out.split("\n\n")[1:] == [
        "options:\n  -h, --help            show this help message and exit",
        "Inner group:\n"
        "  --inner-wait DURATION\n"
        "                        how long, 100% of it (spread over two lines).\n"
        "  --inner-names NAMES   names. (default: a,b)",
        "Outer:\n  --on                  a switch.\n  --url URL             repeatable.\n",
    ]


@pytest.mark.parametrize(
    ("cls", "error"),
    [
        (_SwitchOnByDefault, "--on: a switch must default to False"),
        (_TupleWithoutMetadata, "--items: no reader for 'tuple[str, ...]'; say it in metadata"),
    ],
)
def test_a_flag_the_annotation_cannot_read_is_refused(cls: type, error: str) -> None:
    with pytest.raises(TypeError, match=re.escape(error)):
        flags.add_flags(argparse.ArgumentParser(), cls)


def test_a_field_without_a_flag_cannot_be_shared() -> None:
    with pytest.raises(TypeError, match=r"^_Inner.hidden has no flag$"):
        flags.add_flag(argparse.ArgumentParser(), _Inner, "hidden")
