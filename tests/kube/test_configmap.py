"""ConfigMapWatch: one ConfigMap through the shared reflector, each version handed to a callback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from adapter.kube.backoff import Backoff
from adapter.kube.configmap import ConfigMapWatch
from adapter.kube.k8s import Configuration, KubeClient
from adapter.kube.listwatch import KubeListWatch
from tests.fakes.kube_auth_api import CM_NAME, CM_NAMESPACE, KubeAuthState, serve_auth_api


async def eventually(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_versions_deletion_and_rejected_data() -> None:
    state = KubeAuthState(configmap_data={"k": "v1"})
    seen: list[Mapping[str, str] | None] = []
    sleeps: list[float] = []

    def on_change(data: Mapping[str, str] | None) -> None:
        if data is not None and data.get("k") == "bad":
            raise ValueError("k must not be bad")
        seen.append(data)

    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        await asyncio.sleep(0)

    async with serve_auth_api(state) as url:
        api_client = KubeClient(Configuration(host=url))
        watch = ConfigMapWatch(
            KubeListWatch(api_client),
            CM_NAMESPACE,
            CM_NAME,
            on_change,
            backoff=Backoff(0.5, 4.0, rng=lambda: 0.5),
            sleep=sleep,
        )
        try:
            async with watch.running():
                assert seen == [{"k": "v1"}]
                await eventually(lambda: bool(state.watchers))
                state.set_configmap({"k": "v2"})
                await eventually(lambda: len(seen) == 2)
                state.set_configmap(None)
                await eventually(lambda: len(seen) == 3)
                state.set_configmap({"k": "bad"})  # rejected: relisted after one pause
                await eventually(lambda: state.calls["list"] >= 2)
                state.set_configmap({"k": "v3"})
                await eventually(lambda: seen[-1] == {"k": "v3"})
        finally:
            await api_client.close()

    assert seen[:3] == [{"k": "v1"}, {"k": "v2"}, None]
    assert sleeps[0] == 0.5
    assert state.calls["list"] >= 2
