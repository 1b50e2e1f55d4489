"""Start-up failures: a StartupError is one clear log line and exit 2; a bug keeps its traceback.

The adapter runs as a process (``python -m adapter serve``) with ``--log-level error``,
so stderr holds exactly what an operator would read.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from adapter.demo.stack import free_port
from tests.fakes.kube_api import FakeKubeServer

PROMETHEUS = ["--prometheus-url", "http://127.0.0.1:9"]  # never contacted: start-up fails first


def serve(*sources: str) -> list[str]:
    """``serve`` on a free loopback port, logging errors only, with ``sources`` (pods, CA)."""
    port = str(free_port())
    return ["serve", "--bind-address", "127.0.0.1", "--secure-port", port, "--log-level", "error", *sources]  # fmt: skip


def standalone(pods_file: Path, client_ca: Path) -> list[str]:
    return serve("--pods-file", str(pods_file), "--client-ca-file", str(client_ca))


def run(args: list[str], prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = f"{prelude}\nfrom adapter.cli import main\nraise SystemExit(main({args!r}))"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def pods_file(tmp_path: Path) -> Path:
    path = tmp_path / "pods.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "PodList", "items": []}))
    return path


@pytest.fixture
def client_ca(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_bytes(trustme.CA().cert_pem.bytes())
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("malformed-pods-file", "cannot start: {tmp}/bad.json: "),
        (
            "no-prometheus-url",
            "cannot start: metrics inference_latency_p95, inference_queue_depth, "
            "inference_kv_cache_utilization, inference_requests_running come from Prometheus: "
            "set --prometheus-url (or drop them with includeDefaults: false in the rules file)",
        ),
        (
            "unusable-client-ca",
            "cannot start: cannot use the CA files of the flags: Unable to load PEM",
        ),
    ],
)
def test_a_startup_error_is_one_line_and_exit_2(
    case: str, expected: str, pods_file: Path, client_ca: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "PodList", "items": [{"metadata": {}}]}')
    args = {
        "malformed-pods-file": [*standalone(bad, client_ca), *PROMETHEUS],
        "no-prometheus-url": standalone(pods_file, client_ca),
        "unusable-client-ca": [*standalone(pods_file, pods_file), *PROMETHEUS],
    }[case]

    done = run(args)

    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    entry = json.loads(lines[0])
    assert (entry["level"], entry["logger"]) == ("error", "adapter.app")
    assert entry["msg"].startswith(expected.format(tmp=tmp_path)), entry["msg"]
    assert "exc" not in entry


def test_a_taken_port_is_a_startup_error(pods_file: Path, client_ca: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = standalone(pods_file, client_ca)
        args[args.index("--secure-port") + 1] = str(port)

        done = run([*args, *PROMETHEUS])

    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    entry = json.loads(line)
    assert (
        entry["msg"] == f"cannot start: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_an_unexpected_exception_keeps_its_traceback(pods_file: Path, client_ca: Path) -> None:
    """A ValueError from a bug is not a start-up error: it is never reported as one."""
    prelude = (
        "from adapter.kube.podsfile import PodsFileIndex\n"
        "def load(cls, path):\n"
        "    raise ValueError('a bug, not a setting')\n"
        "PodsFileIndex.load = classmethod(load)"
    )

    done = run([*standalone(pods_file, client_ca), *PROMETHEUS], prelude)

    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.rstrip().endswith("ValueError: a bug, not a setting")
    assert "cannot start" not in done.stderr


async def test_an_unreadable_trust_configmap_is_a_startup_error(tmp_path: Path) -> None:
    """Without --authentication-tolerate-lookup-failure, a ConfigMap that cannot be read
    stops the start: the lifetimes already started are ended, one line is logged."""
    async with FakeKubeServer() as fake:  # no auth routes: listing ConfigMaps is a 404
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "adapter",
            *serve("--kubeconfig", str(kubeconfig)),
            *PROMETHEUS,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 120)

    assert process.returncode == 2, stderr
    [line] = stderr.decode().splitlines()
    assert json.loads(line)["msg"] == (
        "cannot start: cannot read kube-system/extension-apiserver-authentication "
        "(--authentication-tolerate-lookup-failure starts without it): "
        "not found"
    )
