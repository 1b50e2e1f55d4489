"""The gpu-collector program: flags, no-NVML behaviour, a simulated run stopped by SIGTERM."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from collectors.gpu.cli import EXIT_NO_NVML, parse_settings, run
from collectors.gpu.model import NvmlUnavailableError
from collectors.gpu.nvml import NvmlDeviceReader

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "collectors/gpu/scenarios/demo-2gpu.yaml"


def nvml_present() -> bool:
    try:
        NvmlDeviceReader.open().close()
    except NvmlUnavailableError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_defaults_and_flags() -> None:
    settings = parse_settings(["--node-name", "n1"])
    assert (settings.host, settings.port, settings.interval_s, settings.window_s) == (
        "0.0.0.0",
        9400,
        1.0,
        10.0,
    )
    assert settings.on_no_nvml == "exit"
    settings = parse_settings(
        [
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "0.5",
            "--window",
            "5",
            "--on-no-nvml",
            "not-ready",
        ]
    )
    assert (
        settings.host,
        settings.port,
        settings.interval_s,
        settings.window_s,
        settings.on_no_nvml,
    ) == (
        "127.0.0.1",
        0,
        0.5,
        5.0,
        "not-ready",
    )


@pytest.mark.parametrize(
    "argv", [["--listen", "nope"], ["--interval", "0"], ["--interval", "5", "--window", "2"]]
)
def test_bad_flags_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_settings(argv)
    assert info.value.code == 2


@pytest.mark.skipif(nvml_present(), reason="NVML is present on this machine")
async def test_without_nvml_exits_non_zero_with_a_clear_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    code = await run(parse_settings(["--listen", "127.0.0.1:0", "--node-name", "n1"]))
    assert code == EXIT_NO_NVML
    assert "NVML is unavailable on this node" in caplog.text


@pytest.mark.skipif(nvml_present(), reason="NVML is present on this machine")
async def test_without_nvml_not_ready_mode_serves_not_ready() -> None:
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run(
            parse_settings(
                ["--listen", f"127.0.0.1:{port}", "--node-name", "n1", "--on-no-nvml", "not-ready"]
            ),
            stop,
        )
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(50):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        status = resp.status
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            assert status == 503
    finally:
        stop.set()
        assert await task == 0


def test_simulated_run_serves_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collectors.gpu",
            "--simulate",
            str(DEMO),
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "0.2",
            "--window",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        listening = json.loads(proc.stderr.readline())
        assert (listening["msg"], listening["simulated"]) == ("listening", True)
        port = listening["port"]

        async def snapshot() -> dict[str, object]:
            async with aiohttp.ClientSession() as session:
                for _ in range(50):
                    async with session.get(f"http://127.0.0.1:{port}/snapshot") as resp:
                        if resp.status == 200:
                            return dict(await resp.json())
                    await asyncio.sleep(0.1)
            raise AssertionError("never ready")

        body = asyncio.run(snapshot())
        assert body["simulated"] is True
        assert body["node"] == "sim-gpu-node-1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
