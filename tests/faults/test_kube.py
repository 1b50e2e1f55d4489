"""The Kubernetes API fake dropping watches, answering 410, 429 and 500.

The pod index re-lists and re-watches; /readyz stays 200 (the index stays
synced on its last complete list), values keep being served, and a pod change
made after the faults is seen.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.stack import QUEUE, Reader, Stack, Watch

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(180)]


def relabel_now(stack: Stack, name: str, app: str) -> None:
    """Run in the fake's loop (``stack.kube.call``)."""

    def change(pod: dict[str, Any]) -> None:
        pod["metadata"]["labels"]["app"] = app

    stack.kube.server.state.modify_pod("ml", name, change)


async def test_watch_drops_410_429_500_then_a_change_is_seen(stack: Stack, reader: Reader) -> None:
    state = stack.kube.server.state
    try:
        async with Watch(reader) as watch:
            watches = stack.kube.call(lambda: len(state.watch_requests))
            stack.kube.call(state.fail_next, 500, on="watch", times=1)
            stack.kube.call(state.drop_watches)

            async def rewatched() -> bool:
                return stack.kube.call(lambda: len(state.watch_requests)) >= watches + 2

            await reader.until(rewatched, "watching again after a drop and a 500")
            lists = stack.kube.call(lambda: len(state.list_requests))

            def gap() -> None:
                """In one step of the fake's loop, so no watch sees the change: the
                watch ends, llm-1 is relabelled, history is compacted past the
                adapter's resourceVersion (its resumed watch gets 410), and the
                first re-list is refused with 429."""
                state.fail_next(429, on="list", times=1, reason="TooManyRequests")
                state.end_watches()
                relabel_now(stack, "llm-1", "other")
                state.compact()

            stack.kube.call(gap)

            async def only_llm_0() -> bool:
                status, values = await reader.values(QUEUE)
                return status == 200 and set(values) == {"llm-0"}

            await reader.until(only_llm_0, "the relabelled pod left the answer after a re-list")
            assert stack.kube.call(lambda: len(state.list_requests)) >= lists + 2
        watch.assert_clean()
    finally:
        stack.kube.call(relabel_now, stack, "llm-1", "llm")
    await reader.until(reader.queue_served, "the pod back in the answer")
