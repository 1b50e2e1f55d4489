"""The HTTP edge under floods: idle connections, slowloris, rules reloads under load."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl

import aiohttp
import pytest
import yaml

from tests.faults.stack import QUEUE, RULES, G, Reader, Stack, Watch

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(180)]


async def test_idle_and_slowloris_floods(stack: Stack, reader: Reader) -> None:
    """150 TLS connections that send nothing and 40 that send their head a byte at
    a time, against a cap of 200: reads, discovery and readiness go on, and the
    request-header deadline (2 s) closes the flood."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    writers: list[asyncio.StreamWriter] = []
    closed_before = await reader.metric(
        "adapter_connections_closed_by_server_total", {"reason": "header_timeout"}
    )

    async def idle() -> None:
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", stack.port, ssl=context), 30
            )
            writers.append(writer)

    async def slowloris() -> None:
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", stack.port, ssl=context), 30
            )
            writers.append(writer)
            for byte in b"GET /apis HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 200:
                if writer.transport.is_closing():
                    return
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)

    try:
        async with Watch(reader) as watch:
            flood = [asyncio.create_task(idle()) for _ in range(150)]
            flood += [asyncio.create_task(slowloris()) for _ in range(40)]
            await asyncio.gather(*flood)

            async def flood_closed() -> bool:
                closed = await reader.metric(
                    "adapter_connections_closed_by_server_total", {"reason": "header_timeout"}
                )
                return closed - closed_before >= 100

            await reader.until(flood_closed, "the flood closed by the request-header deadline")
            reads_during = watch.reads
            assert reads_during > 0
        watch.assert_clean()
        assert await reader.metric("adapter_connections_open") <= 200
    finally:
        for writer in writers:
            writer.close()


async def test_invalid_rules_reloaded_under_load_keep_the_old(stack: Stack, reader: Reader) -> None:
    async def load(stop: asyncio.Event, statuses: list[int | str]) -> None:
        while not stop.is_set():
            try:
                statuses.append((await reader.get(QUEUE))[0])
            except (aiohttp.ClientError, TimeoutError) as e:
                statuses.append(repr(e))

    stop, statuses = asyncio.Event(), list[int | str]()
    try:
        async with Watch(reader) as watch:
            workers = [asyncio.create_task(load(stop, statuses)) for _ in range(10)]
            stack.rules.write_text("metrics: [ {name: broken, source: nowhere\n")
            stack.adapter.send_signal(signal.SIGHUP)

            async def rejected() -> bool:
                return "rejected, still serving the previous rules" in stack.log_text()

            await reader.until(rejected, "the invalid rules rejected")
            extra = {
                **RULES,
                "metrics": [
                    *RULES["metrics"],
                    {
                        "name": "queue_again",
                        "source": "prometheus",
                        "resources": ["pods"],
                        "prometheus": {"gauge": "inference_queue_depth"},
                    },
                ],
            }
            stack.rules.write_text(yaml.safe_dump(extra))
            stack.adapter.send_signal(signal.SIGHUP)

            async def listed() -> bool:
                status, body = await reader.get(f"{G}")
                return status == 200 and any(
                    r["name"] == "pods/queue_again" for r in body["resources"]
                )

            await reader.until(listed, "the valid rules applied")
            stop.set()
            await asyncio.gather(*workers)
        watch.assert_clean()
        assert statuses
        assert set(statuses) == {200}
    finally:
        stop.set()
        stack.rules.write_text(yaml.safe_dump(RULES))
        stack.adapter.send_signal(signal.SIGHUP)
