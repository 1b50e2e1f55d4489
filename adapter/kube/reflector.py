"""List, then watch, any resource, as client-go's reflector does: the one loop of ``adapter.kube``.

A ``Reflector`` keeps a ``ReflectorTarget`` (the pod index, the trust
ConfigMap's consumer) current: it lists every page and hands the items to
``target.replace`` (one swap), then watches from the list's resourceVersion and
hands each ADDED/MODIFIED/DELETED event to ``target.apply`` in order. Bookmarks
only advance the resourceVersion; a closed or dropped watch resumes from the
last resourceVersion after a backoff; 410 Gone (HTTP or a watch ERROR event)
relists at once; any other refusal, or an object the target rejects
(``ObjectRejected``), relists after a pause.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self

from adapter.kube.backoff import Backoff
from adapter.kube.errors import (
    KubeAPIError,
    KubeUnavailable,
    ObjectRejected,
    ResourceExpired,
    error_from_status,
)
from adapter.kube.listwatch import JSONObject, ListWatchAPI, Resource

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[object]]


class ReflectorTarget(Protocol):
    """What a reflector keeps current; called only from the reflector's own loop."""

    async def replace(self, items: AsyncIterator[JSONObject]) -> None:
        """The complete list, page by page; swap it in whole once ``items`` is exhausted.

        ``items`` raises (a KubeAPIError) when the list cannot be completed: then
        keep what was there.
        """
        ...

    def apply(self, kind: str, obj: JSONObject) -> None:
        """One ADDED, MODIFIED or DELETED event (bookmarks and errors never come here)."""
        ...


class RunsInATask(abc.ABC):
    """``async with`` runs the object's loop: ``start()`` on entry, ``stop()`` on exit."""

    @abc.abstractmethod
    def start(self) -> asyncio.Task[None]:
        """Run the loop as a named task."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Cancel that task and wait for it to end."""

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


class Reflector(RunsInATask):
    """List+watch ``resource`` into ``target``; ``run()`` is the loop, the rest its steps.

    ``list_once()`` and ``watch_once()`` are public so tests drive them one at a
    time; ``start()``/``stop()`` or ``async with`` run ``run()`` as a task named
    ``name``. ``what`` names the resource in log lines. ``watch_timeout`` is the
    server-side ``timeoutSeconds`` of a watch; ``sleep`` is what backoff delays
    are slept with.
    """

    def __init__(
        self,
        api: ListWatchAPI,
        resource: Resource,
        target: ReflectorTarget,
        *,
        what: str,
        name: str,
        page_size: int = 500,
        watch_timeout: int = 300,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._api = api
        self._resource = resource
        self._target = target
        self._what = what
        self._name = name
        self._page_size = page_size
        self._watch_timeout = watch_timeout
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._rv: str | None = None
        self._events = 0  # applied so far: a failure after progress restarts the backoff
        self._task: asyncio.Task[None] | None = None

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion the next watch starts from (None before the first list)."""
        return self._rv

    async def list_once(self) -> None:
        """One complete LIST, all pages, handed to the target as one swap.

        A continue token that expires between pages (410) restarts the list once.
        Raises KubeAPIError (or a subclass) when the list cannot be completed; the
        target is then left as it was.
        """
        counted: list[int] = []
        try:
            rv = await self._list_into_target(counted)
        except ResourceExpired as e:
            log.info("%s list expired between pages (%s); listing again", self._what, e)
            counted.clear()
            rv = await self._list_into_target(counted)
        self._rv = rv
        log.info(
            "%s listed %d %s at resourceVersion %s",
            self._what,
            sum(counted),
            self._resource.plural,
            rv,
        )

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
        events = self._api.watch(
            resource=self._resource, resource_version=rv, timeout_seconds=self._watch_timeout
        )
        async with contextlib.aclosing(events):
            async for event in events:
                self._apply(event)
                applied += 1
                self._events += 1
        return applied

    async def run(self, *, resume: bool = False) -> None:
        """List, then watch forever; never returns, ends only when cancelled.

        ``resume``: start with a watch from the last list's resourceVersion when
        there is one (the caller listed already). Failures are logged and retried
        after a backoff (a resume from the last resourceVersion, or a relist after
        410 Gone, a refusal, a rejected object or an unexpected error).
        """
        must_list = not (resume and self._rv is not None)
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
                log.info("%s %s expired (%s); relisting", self._what, what, e)
                if not must_list:  # a list that expires retries after a pause, not at once
                    must_list = True
                    continue
            except KubeUnavailable as e:
                if self._events != progress:
                    self._backoff.reset()
                step = "list" if must_list else "watch"
                log.warning("%s %s failed, retrying: %s", self._what, step, e)
            except (KubeAPIError, ObjectRejected) as e:
                log.warning("%s list/watch refused (%s); relisting after a pause", self._what, e)
                must_list = True
            except Exception:
                log.exception("%s step failed unexpectedly; relisting after a pause", self._what)
                must_list = True
            await self._sleep(self._backoff.next())

    def start(self, *, resume: bool = False) -> asyncio.Task[None]:
        """Run ``run()`` as a task named ``name``; ``stop()`` ends it."""
        if self._task is not None and not self._task.done():
            raise RuntimeError(f"{self._name} is already running")
        self._task = asyncio.create_task(self.run(resume=resume), name=self._name)
        return self._task

    async def stop(self) -> None:
        """Cancel the task ``start()`` made and wait for it to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def _list_into_target(self, counted: list[int]) -> str:
        found: list[str] = []
        await self._target.replace(self._pages(found, counted))
        if not found:  # the target stopped reading early: it must consume every page
            raise RuntimeError(f"{self._what}: the target did not read the whole list")
        return found[0]

    async def _pages(self, found: list[str], counted: list[int]) -> AsyncIterator[JSONObject]:
        token: str | None = None
        while True:
            page = await self._api.list(
                resource=self._resource, limit=self._page_size, continue_token=token
            )
            items = page.get("items") or ()
            counted.append(len(items))
            for item in items:
                yield item
            meta = page.get("metadata") or {}
            rv, token = meta.get("resourceVersion"), meta.get("continue") or None
            if not token:
                break
        if not isinstance(rv, str) or not rv:
            raise KubeAPIError(
                f"the API server sent a {self._resource.plural} list without a resourceVersion"
            )
        found.append(rv)

    def _apply(self, event: JSONObject) -> None:
        kind, obj = event.get("type"), event["object"]
        if kind == "ERROR":
            raise error_from_status(None, obj)
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self._target.apply(str(kind), obj)
        elif kind != "BOOKMARK":
            log.warning("ignoring a %s watch event of unknown type %r", self._what, kind)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if isinstance(rv, str) and rv:
            self._rv = rv
