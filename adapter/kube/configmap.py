"""One ConfigMap, listed then watched, each change handed to a callback.

``ConfigMapWatch`` is a ``Reflector`` target over ``configmaps`` with
``fieldSelector=metadata.name=<name>``: the loop's semantics (resume, 410
relist, backoff) are the reflector's. ``on_change`` receives the ConfigMap's
``data`` (string values), or None when it is absent or deleted; a ``ValueError``
or ``OSError`` from it (data it cannot use) is logged and the ConfigMap relisted
after a pause, so a fixed ConfigMap is picked up without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from adapter.kube.backoff import Backoff
from adapter.kube.errors import KubeError, ObjectRejected
from adapter.kube.listwatch import JSONObject, ListWatchAPI, Resource
from adapter.kube.reflector import Reflector, Sleep

log = logging.getLogger(__name__)

OnChange = Callable[[Mapping[str, str] | None], object]


class ConfigMapWatch:
    """Keeps ``on_change`` fed with ConfigMap ``namespace/name``; ``running()`` runs it."""

    def __init__(
        self,
        api: ListWatchAPI,
        namespace: str,
        name: str,
        on_change: OnChange,
        *,
        watch_timeout: int = 300,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
        task_name: str = "configmap-watch",
    ) -> None:
        self._where = f"{namespace}/{name}"
        self._name = name
        self._on_change = on_change
        resource = Resource("configmaps", namespace, field_selector=f"metadata.name={name}")
        self.reflector = Reflector(
            api,
            resource,
            self,
            what=f"ConfigMap {self._where}",
            name=task_name,
            watch_timeout=watch_timeout,
            backoff=backoff or Backoff(0.5, 30.0),
            sleep=sleep,
        )

    async def start(self, *, tolerate_failure: bool = False) -> None:
        """The first list (its KubeError is raised unless ``tolerate_failure``), then the
        watch in a named task until ``stop()``."""
        try:
            await self.reflector.list_once()
        except KubeError as e:
            if not tolerate_failure:
                raise
            log.error("cannot read %s, continuing: %s", self._where, e)
        self.reflector.start(resume=True)

    async def stop(self) -> None:
        await self.reflector.stop()

    @contextlib.asynccontextmanager
    async def running(self, *, tolerate_failure: bool = False) -> AsyncIterator[None]:
        """``start()`` on entry, ``stop()`` on exit."""
        await self.start(tolerate_failure=tolerate_failure)
        try:
            yield
        finally:
            await self.stop()

    # -- ReflectorTarget --------------------------------------------------------------

    async def replace(self, items: AsyncIterator[JSONObject]) -> None:
        found = [item async for item in items]
        named = [obj for obj in found if (obj.get("metadata") or {}).get("name") == self._name]
        self._deliver(_data(named[0]) if named else None)

    def apply(self, kind: str, obj: JSONObject) -> None:
        self._deliver(None if kind == "DELETED" else _data(obj))

    def _deliver(self, data: Mapping[str, str] | None) -> None:
        try:
            self._on_change(data)
        except (ValueError, OSError) as e:
            raise ObjectRejected(f"ConfigMap {self._where}: {e}") from e


def _data(obj: Mapping[str, Any]) -> Mapping[str, str]:
    data = obj.get("data") or {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, Mapping) else {}
