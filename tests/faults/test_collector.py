"""The GPU collector killed, or hung (SIGSTOP): GPU values go (never 0) and come back."""

from __future__ import annotations

import asyncio
import signal
import urllib.request

import pytest

from tests.faults.stack import GPU, Reader, Stack, Watch

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(180)]


async def gpu_omitted(reader: Reader) -> bool:
    status, values = await reader.values(GPU)
    return status == 200 and values == {}


async def pulls(reader: Reader) -> float:
    return await reader.metric("adapter_gpu_pull_duration_seconds_count")


async def collector_answers(stack: Stack) -> None:
    def probe() -> None:
        url = f"http://127.0.0.1:{stack.collector.port}/snapshot"
        with urllib.request.urlopen(url, timeout=5) as r:
            if b"llm-1" not in r.read():
                raise OSError("no values yet")

    deadline = asyncio.get_running_loop().time() + 60
    while True:
        try:
            await asyncio.to_thread(probe)
            return
        except OSError:
            assert asyncio.get_running_loop().time() < deadline, "collector did not come back"
            await asyncio.sleep(0.2)


async def back_within_one_pull(reader: Reader) -> None:
    before = await pulls(reader)
    await reader.until(reader.gpu_served, "gpu utilization served again")
    assert await pulls(reader) - before <= 2


async def test_collector_killed_then_restarted(stack: Stack, reader: Reader) -> None:
    async with Watch(reader) as watch:
        await asyncio.to_thread(stack.collector.kill)
        await reader.until(lambda: gpu_omitted(reader), "gpu values omitted")
        stack.collector.start()
        await collector_answers(stack)
        await back_within_one_pull(reader)
    watch.assert_clean()


async def test_collector_hung_then_continued(stack: Stack, reader: Reader) -> None:
    async with Watch(reader) as watch:
        stack.collector.signal(signal.SIGSTOP)
        try:
            await reader.until(lambda: gpu_omitted(reader), "gpu values omitted")
        finally:
            stack.collector.signal(signal.SIGCONT)
        await collector_answers(stack)
        await back_within_one_pull(reader)
    watch.assert_clean()
