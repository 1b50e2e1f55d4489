"""A fake kubelet PodResources gRPC server on a unix socket, speaking our hand-written codec."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import grpc.aio

from collectors.gpu.podresources import (
    PodResources,
    decode_list_request,
    encode_list_response,
)


class FakePodResourcesServer:
    """``v1.PodResourcesLister/List`` answering ``pods``; ``fail_with`` makes it abort instead."""

    def __init__(self, pods: Sequence[PodResources] = ()) -> None:
        self.pods = list(pods)
        self.fail_with: grpc.StatusCode | None = None
        self.calls = 0
        self._server: grpc.aio.Server | None = None

    async def _list(self, _request: None, context: grpc.aio.ServicerContext) -> list[PodResources]:
        self.calls += 1
        if self.fail_with is not None:
            await context.abort(self.fail_with, "fake failure")
        return self.pods

    async def start(self, socket_path: str) -> None:
        handler = grpc.method_handlers_generic_handler(
            "v1.PodResourcesLister",
            {
                "List": grpc.unary_unary_rpc_method_handler(
                    self._list,
                    request_deserializer=decode_list_request,
                    response_serializer=encode_list_response,
                )
            },
        )
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((handler,))
        self._server.add_insecure_port(f"unix:{socket_path}")
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
