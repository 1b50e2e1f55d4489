"""The live pod index: every pod the adapter may serve, kept current by list+watch.

``PodIndex`` is the ``PodLister`` a ``Reflector`` (``adapter.kube.reflector``)
keeps current: the list swaps the whole index at once, watch events are applied
in order. The loop's semantics (pagination, bookmarks, resume, 410 relist,
backoff) are the reflector's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from adapter.core.model import PodUID
from adapter.kube.backoff import Backoff
from adapter.kube.errors import PodFormatError
from adapter.kube.listwatch import JSONObject, ListWatchAPI, Resource
from adapter.kube.podinfo import pod_from_k8s, pod_key
from adapter.kube.podstore import PodStore, StoredPods
from adapter.kube.reflector import Reflector, RunsInATask, Sleep

log = logging.getLogger(__name__)

__all__ = ["PodIndex", "Sleep"]


class PodIndex(StoredPods, RunsInATask):
    """All pods (or those matching the selectors), kept current by list+watch.

    ``run()`` is the long-running loop (``start()``/``stop()`` or ``async with``
    run it as a named task); ``list_once()`` and ``watch_once()`` are its steps,
    public so tests drive them one at a time. Only the loop mutates the index.

    ``namespace`` limits the index to one namespace; ``label_selector`` and
    ``field_selector`` (e.g. ``spec.nodeName=gpu-node-1``) are passed to the API
    server verbatim. ``watch_timeout`` is the server-side ``timeoutSeconds`` of a
    watch; ``sleep`` is what backoff delays are slept with.
    """

    def __init__(
        self,
        api: ListWatchAPI,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        watch_timeout: int = 300,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
        name: str = "pod-index",
    ) -> None:
        super().__init__()
        resource = Resource("pods", namespace, label_selector, field_selector)
        self._reflector = Reflector(
            api,
            resource,
            self,
            what="pod index",
            name=name,
            page_size=page_size,
            watch_timeout=watch_timeout,
            backoff=backoff,
            sleep=sleep,
        )

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion the next watch starts from (None before the first list)."""
        return self._reflector.resource_version

    async def list_once(self) -> None:
        """One complete LIST, all pages; swaps the whole index at once and marks it synced.

        Raises KubeAPIError (or a subclass) when the list cannot be completed; the
        index is then left as it was (``Reflector.list_once``).
        """
        await self._reflector.list_once()

    async def watch_once(self) -> int:
        """One WATCH until the server ends it; the events applied (``Reflector.watch_once``)."""
        return await self._reflector.watch_once()

    async def run(self) -> None:
        """List, then watch forever; ends only when cancelled (``Reflector.run``)."""
        await self._reflector.run()

    def start(self) -> asyncio.Task[None]:
        """Run ``run()`` as a task named after the index; ``stop()`` ends it."""
        return self._reflector.start()

    async def stop(self) -> None:
        """Cancel the task ``start()`` made and wait for it to end."""
        await self._reflector.stop()

    # -- ReflectorTarget --------------------------------------------------------------

    async def replace(self, items: AsyncIterator[JSONObject]) -> None:
        store = PodStore()
        async for item in items:
            _put(store, item)
        self._replace(store)

    def apply(self, kind: str, obj: JSONObject) -> None:
        self._generation += 1
        if kind == "DELETED":
            with contextlib.suppress(PodFormatError):
                uid = obj.get("metadata", {}).get("uid")
                self._store.remove(pod_key(obj), PodUID(uid) if uid else None)
        else:
            _put(self._store, obj)


def _put(store: PodStore, obj: JSONObject) -> None:
    """Add or replace one pod; one the API server sent malformed is dropped, not kept stale."""
    try:
        store.put(pod_from_k8s(obj))
    except PodFormatError as e:
        log.warning("dropping a pod the API server sent malformed: %s", e)
        with contextlib.suppress(PodFormatError):
            store.remove(pod_key(obj))
