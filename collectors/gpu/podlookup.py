"""Pod UID → namespace/name for this node's pods (the shared-GPU path of the join).

``ApiServerPodLookup`` lists the node's pods through the Kubernetes API
(``GET /api/v1/pods?fieldSelector=spec.nodeName=<node>``) every ``period_s`` with the in-cluster
service-account credentials, and keeps UID → ``PodRef`` (with container id → name from
``status.containerStatuses[].containerID``). A relist rather than a watch: the map is small, a
list per 15 s is cheap for the API server, and a pod that started within the period is named on
the next list (until then its processes count as unattributed, never as someone else's).
``refresh_once()`` is the step tests call. Reads are lock-free (the dict is replaced whole).

``NoPodLookup`` is the fallback outside a cluster: exclusive GPUs are still attributed through
PodResources, shared ones are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from collectors.gpu.model import ContainerName, Namespace, PodName, PodRef, PodUID

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class NoPodLookup:
    def lookup(self, uid: PodUID) -> PodRef | None:
        return None


def pods_from_list(body: Mapping[str, Any]) -> dict[PodUID, PodRef]:
    """UID → PodRef from a ``PodList`` JSON body; items without uid/name are skipped."""
    out: dict[PodUID, PodRef] = {}
    for item in body.get("items") or []:
        meta = item.get("metadata") or {}
        uid, name, namespace = meta.get("uid"), meta.get("name"), meta.get("namespace")
        if not (uid and name and namespace):
            continue
        containers: dict[str, ContainerName] = {}
        status = item.get("status") or {}
        for cs in (status.get("containerStatuses") or []) + (
            status.get("initContainerStatuses") or []
        ):
            cid = cs.get("containerID") or ""
            if "://" in cid and cs.get("name"):
                containers[cid.split("://", 1)[1]] = ContainerName(cs["name"])
        out[PodUID(uid)] = PodRef(Namespace(namespace), PodName(name), PodUID(uid), containers)
    return out


class ApiServerPodLookup:
    def __init__(
        self,
        base_url: str,
        node: str,
        *,
        token: str | None = None,
        ssl_context: ssl.SSLContext | bool = True,
        period_s: float = 15.0,
        timeout_s: float = 5.0,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/api/v1/pods"
        self._node = node
        self._token = token
        self._ssl = ssl_context
        self._period_s = period_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._pods: dict[PodUID, PodRef] = {}
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def in_cluster(cls, node: str, root: Path = SERVICE_ACCOUNT) -> ApiServerPodLookup | None:
        host, port = (
            os.environ.get("KUBERNETES_SERVICE_HOST"),
            os.environ.get("KUBERNETES_SERVICE_PORT"),
        )
        if not host or not port or not (root / "token").exists():
            return None
        context = ssl.create_default_context(cafile=str(root / "ca.crt"))
        host = f"[{host}]" if ":" in host else host
        return cls(
            f"https://{host}:{port}",
            node,
            token=(root / "token").read_text().strip(),
            ssl_context=context,
        )

    def lookup(self, uid: PodUID) -> PodRef | None:
        return self._pods.get(uid)

    async def refresh_once(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        params = {"fieldSelector": f"spec.nodeName={self._node}"}
        async with self._session.get(
            self._url, params=params, headers=headers, ssl=self._ssl
        ) as resp:
            resp.raise_for_status()
            self._pods = pods_from_list(await resp.json())

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh_once()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("listing this node's pods failed: %s", exc)
            await asyncio.sleep(self._period_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gpu-collector-pod-lookup")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
