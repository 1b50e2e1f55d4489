"""RSS of the adapter per idle TLS connection, and after they close (loopback, bounded).

    .venv/bin/python bench/bench_connections.py [--connections 1000] [--src DIR] [--extra '...']

Starts ``inference-metrics-adapter serve`` (standalone: a pods file, a
self-signed certificate, no Prometheus) from ``--src`` (default: this
checkout; point it at an exported older commit to compare), then opens
``--connections`` TLS connections to it that complete the handshake without a
client certificate and send nothing, as an attacker would. Reports the
adapter's RSS (``/proc/<pid>/status``) before, with the connections open, and
5 s after they are closed, plus how many connections the server kept (it may
close some: the connection cap, the request-header deadline).

``--extra`` is passed to ``serve`` (e.g. ``--request-header-timeout 5m`` so the
idle connections live long enough to be measured, ``--max-connections 5000``).
Everything runs on 127.0.0.1 and ends within a couple of minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shlex
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import trustme
import yaml

from adapter.demo.stack import serve_command

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def pods_file(path: Path, count: int = 20) -> None:
    items = [
        {
            "metadata": {"name": f"p-{i}", "namespace": "ml", "uid": f"u{i}", "labels": {"a": "b"}},
            "spec": {"nodeName": "n1"},
            "status": {
                "phase": "Running",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "lastTransitionTime": "2020-01-01T00:00:00Z",
                    }
                ],
            },
        }
        for i in range(count)
    ]
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "PodList", "items": items}))


def start(src: Path, tmp: Path, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    pods_file(tmp / "pods.yaml")
    trustme.CA().cert_pem.write_to_path(str(tmp / "client-ca.pem"))
    log = (tmp / "adapter.log").open("wb")
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.Popen(
        [
            *serve_command(port),
            "--cert-dir",
            str(tmp / "certs"),
            "--pods-file",
            str(tmp / "pods.yaml"),
            "--client-ca-file",
            str(tmp / "client-ca.pem"),
            "--prometheus-url",
            "http://127.0.0.1:9",
            "--prometheus-refresh-interval",
            "1h",
            "--log-level",
            "warning",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=src,
    )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit((tmp / "adapter.log").read_text())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("adapter did not start") from None
            time.sleep(0.2)


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_idle(port: int, count: int) -> list[Conn]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conns: list[Conn] = []
    sem = asyncio.Semaphore(50)

    async def one() -> None:
        async with sem:
            try:
                conns.append(
                    await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", port, ssl=context), 30
                    )
                )
            except (OSError, TimeoutError, ssl.SSLError):
                return

    await asyncio.gather(*(one() for _ in range(count)))
    return conns


def still_open(conns: list[Conn]) -> int:
    return sum(
        1 for reader, writer in conns if not reader.at_eof() and not writer.transport.is_closing()
    )


async def measure(port: int, pid: int, count: int) -> dict[str, float]:
    await asyncio.sleep(2)
    before = rss_mib(pid)
    conns = await open_idle(port, count)
    await asyncio.sleep(2)
    during = rss_mib(pid)
    kept = still_open(conns)
    for _, writer in conns:
        writer.transport.abort()
    await asyncio.sleep(5)
    after = rss_mib(pid)
    return {
        "opened": len(conns),
        "kept": kept,
        "before": before,
        "during": during,
        "after": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--src", type=Path, default=ROOT)
    parser.add_argument("--extra", default="")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.connections + 256)), hard)
    )
    with tempfile.TemporaryDirectory(prefix="bench-conn-") as tmp:
        port = free_port()
        proc = start(args.src.resolve(), Path(tmp), port, shlex.split(args.extra))
        try:
            result = asyncio.run(measure(port, proc.pid, args.connections))
        finally:
            proc.terminate()
            proc.wait(30)
    per = (result["during"] - result["before"]) * 1024 / max(1, result["kept"])
    print(
        f"src={args.src} extra={args.extra!r}\n"
        f"connections opened {result['opened']:.0f}, kept open by the server {result['kept']:.0f}\n"
        f"RSS before {result['before']:.1f} MiB, with them open {result['during']:.1f} MiB "
        f"({per:.1f} KiB per kept connection), 5 s after closing {result['after']:.1f} MiB"
    )


if __name__ == "__main__":
    main()
