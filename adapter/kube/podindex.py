"""The live pod index: every pod the adapter may serve, kept current by list+watch.

``PodIndex`` lists all pods (paginated), then watches from the list's
resourceVersion, as client-go's reflector does: events are applied in order,
bookmarks only advance the resourceVersion, a closed or dropped watch resumes
from the last resourceVersion after a backoff, and 410 Gone (HTTP or a watch
ERROR event) relists and swaps the whole index at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from adapter.core.model import PodUID
from adapter.kube.backoff import Backoff
from adapter.kube.errors import (
    KubeAPIError,
    KubeUnavailable,
    PodFormatError,
    ResourceExpired,
    error_from_status,
)
from adapter.kube.listwatch import JSONObject, PodsAPI
from adapter.kube.podinfo import pod_from_k8s, pod_key
from adapter.kube.podstore import PodStore, StoredPods

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[object]]


class PodIndex(StoredPods):
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
        api: PodsAPI,
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
        self._api = api
        self._selection: dict[str, str | None] = {
            "namespace": namespace,
            "label_selector": label_selector,
            "field_selector": field_selector,
        }
        self._page_size = page_size
        self._watch_timeout = watch_timeout
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._name = name
        self._rv: str | None = None
        self._events = 0  # applied so far: a failure after progress restarts the backoff
        self._task: asyncio.Task[None] | None = None

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion the next watch starts from (None before the first list)."""
        return self._rv

    async def list_once(self) -> None:
        """One complete LIST, all pages; swaps the whole index at once and marks it synced.

        A continue token that expires between pages (410) restarts the list once.
        Raises KubeAPIError (or a subclass) when the list cannot be completed; the
        index is then left as it was.
        """
        try:
            store, rv = await self._list_all()
        except ResourceExpired as e:
            log.info("pod list expired between pages (%s); listing again", e)
            store, rv = await self._list_all()
        self._replace(store)
        self._rv = rv
        log.info("pod index listed %d pods at resourceVersion %s", len(store.by_key), rv)

    async def watch_once(self) -> int:
        """One WATCH from ``resource_version`` until the server ends it.

        Returns the number of events applied (bookmarks included). Raises
        ResourceExpired when the resourceVersion is too old (relist), KubeUnavailable
        when the connection drops, KubeAPIError for any other error.
        """
        rv = self._rv
        if rv is None:
            raise RuntimeError("watch_once() needs a resourceVersion: call list_once() first")
        applied = 0
        events = self._api.watch_pods(
            **self._selection, resource_version=rv, timeout_seconds=self._watch_timeout
        )
        async with contextlib.aclosing(events):
            async for event in events:
                self._apply(event)
                applied += 1
                self._events += 1
        return applied

    async def run(self) -> None:
        """List, then watch forever; never returns, ends only when cancelled.

        Failures are logged and retried after a backoff (a resume from the last
        resourceVersion, or a relist after 410 Gone or an unexpected error).
        """
        must_list = True
        while True:
            progress = self._events
            try:
                if must_list:
                    await self.list_once()
                    must_list = False
                    self._backoff.reset()
                if await self.watch_once():
                    self._backoff.reset()
                    continue  # a watch that ends after doing work resumes at once
            except ResourceExpired as e:
                what = "list" if must_list else f"watch from resourceVersion {self._rv}"
                log.info("pod %s expired (%s); relisting", what, e)
                if not must_list:  # a list that expires retries after a pause, not at once
                    must_list = True
                    continue
            except KubeUnavailable as e:
                if self._events != progress:
                    self._backoff.reset()
                log.warning("pod %s failed, retrying: %s", "list" if must_list else "watch", e)
            except KubeAPIError as e:
                log.warning("pod list/watch refused (%s); relisting after a pause", e)
                must_list = True
            except Exception:
                log.exception("pod index step failed unexpectedly; relisting after a pause")
                must_list = True
            await self._sleep(self._backoff.next())

    def start(self) -> asyncio.Task[None]:
        """Run ``run()`` as a task named after the index; ``stop()`` ends it."""
        if self._task is not None and not self._task.done():
            raise RuntimeError(f"{self._name} is already running")
        self._task = asyncio.create_task(self.run(), name=self._name)
        return self._task

    async def stop(self) -> None:
        """Cancel the task ``start()`` made and wait for it to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _list_all(self) -> tuple[PodStore, str]:
        store = PodStore()
        token: str | None = None
        while True:
            page = await self._api.list_pods(
                **self._selection, limit=self._page_size, continue_token=token
            )
            for item in page.get("items") or ():
                _put(store, item)
            meta = page.get("metadata") or {}
            rv, token = meta.get("resourceVersion"), meta.get("continue") or None
            if not token:
                break
        if not isinstance(rv, str) or not rv:
            raise KubeAPIError("the API server sent a pod list without a resourceVersion")
        return store, rv

    def _apply(self, event: JSONObject) -> None:
        kind, obj = event.get("type"), event["object"]
        if kind == "ERROR":
            raise error_from_status(None, obj)
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self._generation += 1
        if kind in ("ADDED", "MODIFIED"):
            _put(self._store, obj)
        elif kind == "DELETED":
            with contextlib.suppress(PodFormatError):
                uid = obj.get("metadata", {}).get("uid")
                self._store.remove(pod_key(obj), PodUID(uid) if uid else None)
        elif kind != "BOOKMARK":
            log.warning("ignoring a pod watch event of unknown type %r", kind)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if isinstance(rv, str) and rv:
            self._rv = rv


def _put(store: PodStore, obj: JSONObject) -> None:
    """Add or replace one pod; one the API server sent malformed is dropped, not kept stale."""
    try:
        store.put(pod_from_k8s(obj))
    except PodFormatError as e:
        log.warning("dropping a pod the API server sent malformed: %s", e)
        with contextlib.suppress(PodFormatError):
            store.remove(pod_key(obj))
