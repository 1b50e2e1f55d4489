"""Prometheus killed, hung (SIGSTOP), slow, answering errors, answering NaN.

Throughout: discovery and /readyz answer 200 and no value is served as 0 (the
Watch). After the repair: values are back within one refresh of Prometheus
answering again (counted in refreshes, not seconds).
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.faults.stack import GENEROUS, QUEUE, Reader, Stack, Watch

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(240)]

FRESH = "timestamp(inference_queue_depth) > time() - 3"


async def prometheus_answers(stack: Stack) -> None:
    await asyncio.to_thread(stack.prometheus.wait_for, FRESH, GENEROUS, lambda rows: len(rows) >= 2)


async def back_within_one_refresh(reader: Reader) -> None:
    """Called once Prometheus answers again: the next refresh serves the values.

    One refresh may already be in flight (started before the repair), so the
    second one to succeed after this point must serve. Each poll reads the
    count of successful refreshes *before* the values: a poll that started after
    two had succeeded must see the values. (Counting at the poll that first sees
    them would blame a slow poller on a busy machine for refreshes that happened
    while it waited; counting failed queries too would blame Prometheus' slow
    restart under load, when a query times out, on the adapter.)
    """
    before = await reader.refreshes()
    timeline: list[tuple[float, dict[str, str]]] = []

    async def served() -> bool:
        completed = await reader.refreshes()
        status, values = await reader.values(QUEUE)
        timeline.append((completed - before, values))
        return status == 200 and set(values) == {"llm-0", "llm-1"}

    await reader.until(served, "queue depth served again")
    late = [(n, values) for n, values in timeline if n >= 2 and set(values) != {"llm-0", "llm-1"}]
    assert not late, (before, timeline)


async def omitted_not_zero(reader: Reader) -> None:
    async def omitted() -> bool:
        status, values = await reader.values(QUEUE)
        return status == 200 and values == {}

    await reader.until(omitted, "the values omitted once stale")


async def test_prometheus_killed_then_restarted(stack: Stack, reader: Reader) -> None:
    async with Watch(reader) as watch:
        process = stack.prometheus._process
        assert process is not None
        process.kill()
        await asyncio.to_thread(process.wait, 30)
        await omitted_not_zero(reader)

        async def logged() -> bool:
            return "no values left to serve (the last ones expired)" in stack.log_text()

        await reader.until(logged, "the log says nothing is served any more")
        await asyncio.to_thread(stack.prometheus.start)
        await prometheus_answers(stack)
        await back_within_one_refresh(reader)
    watch.assert_clean()


async def test_prometheus_hung_with_a_selector_flood(stack: Stack, reader: Reader) -> None:
    """The finding: with Prometheus hung, a few hundred reads each carrying a
    different metricLabelSelector filled the in-flight limit and discovery
    answered 429 for as long as the hang lasted."""
    ok = f"{QUEUE}&metricLabelSelector=job%3Dtargets"
    assert (await reader.values(ok))[1].keys() == {"llm-0", "llm-1"}
    async with Watch(reader) as watch:
        stack.prometheus_signal(signal.SIGSTOP)
        try:
            discovery_before = watch.discovery_ok
            flood = [
                reader.get(f"{QUEUE}&metricLabelSelector=instance%21%3Dnot-{i}") for i in range(300)
            ]
            statuses = [status for status, _ in await asyncio.gather(*flood)]
            assert set(statuses) <= {429, 503}, sorted(set(statuses))
            assert statuses.count(503) > 0
            # Fail fast: once known failing, a new selector is refused without a query.
            sent = stack.proxy.requests
            status, body = await reader.get(f"{QUEUE}&metricLabelSelector=instance%3Dnew")
            assert (status, body["reason"]) == (503, "ServiceUnavailable")
            assert body["message"].startswith("Prometheus is not answering")
            assert stack.proxy.requests == sent

            async def discovery_answered_during_the_hang() -> bool:
                return watch.discovery_ok > discovery_before + 3

            await reader.until(discovery_answered_during_the_hang, "discovery during the hang")
            await omitted_not_zero(reader)
        finally:
            stack.prometheus_signal(signal.SIGCONT)
        await prometheus_answers(stack)
        await back_within_one_refresh(reader)

        async def selector_back() -> bool:
            return (await reader.get(f"{QUEUE}&metricLabelSelector=instance%3Dnew"))[0] == 200

        await reader.until(selector_back, "selector reads answered again")
    watch.assert_clean()


@pytest.mark.parametrize("mode", ["error", "nan", "slow"])
async def test_prometheus_misbehaving(stack: Stack, reader: Reader, mode: str) -> None:
    async with Watch(reader) as watch:
        stack.proxy.set(mode)
        try:
            if mode == "slow":
                # 1.5 s answers within the 2 s timeout: still served (the Watch checks
                # the values), selector reads past their 1 s deadline are 503, not 500.
                status, _ = await reader.get(f"{QUEUE}&metricLabelSelector=instance%21%3Dslow")
                assert status == 503
                before = watch.reads

                async def read_while_slow() -> bool:
                    return watch.reads > before + 10

                await reader.until(read_while_slow, "reads while slow")
                assert "timed out" in stack.log_text()
            else:
                await omitted_not_zero(reader)
        finally:
            stack.proxy.set("pass")
        await back_within_one_refresh(reader)
    watch.assert_clean()
    if mode == "error":
        assert "failed; keeping the last values of 2 pods" in stack.log_text()
