"""Pod UID → name through a list of this node's pods, against a loopback fake API server."""

from typing import Any

from aiohttp import web

from collectors.gpu.model import PodUID
from collectors.gpu.podlookup import ApiServerPodLookup, pods_from_list
from tests.fakes.serving import serving

POD_LIST: dict[str, Any] = {
    "kind": "PodList",
    "items": [
        {
            "metadata": {"uid": "u1", "name": "web-1", "namespace": "ml"},
            "status": {
                "containerStatuses": [{"name": "server", "containerID": "containerd://abc"}]
            },
        },
        {"metadata": {"name": "no-uid", "namespace": "ml"}},
    ],
}


def test_pods_from_list() -> None:
    pods = pods_from_list(POD_LIST)
    assert list(pods) == ["u1"]
    assert (pods[PodUID("u1")].name, dict(pods[PodUID("u1")].containers)) == (
        "web-1",
        {"abc": "server"},
    )


async def test_refresh_lists_this_nodes_pods_with_the_token() -> None:
    seen: list[tuple[str | None, str | None]] = []

    async def pods(request: web.Request) -> web.Response:
        seen.append((request.query.get("fieldSelector"), request.headers.get("Authorization")))
        return web.json_response(POD_LIST)

    app = web.Application()
    app.router.add_get("/api/v1/pods", pods)
    async with serving(app) as url:
        lookup = ApiServerPodLookup(url, "gpu-node-1", token="t0k")
        try:
            assert lookup.lookup(PodUID("u1")) is None
            await lookup.refresh_once()
            ref = lookup.lookup(PodUID("u1"))
            assert ref is not None
            assert ref.name == "web-1"
            assert seen == [("spec.nodeName=gpu-node-1", "Bearer t0k")]
        finally:
            await lookup.close()
