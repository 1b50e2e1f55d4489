"""Pods in memory, by key, namespace and node, and the read side (``PodLister``) over them.

The store is mutated by one writer (the list+watch loop, or a pods file read
once) and swapped whole on a relist; readers get tuples, a snapshot the writer
cannot change under their feet. Non-live pods (Succeeded/Failed, or with a
deletionTimestamp) are kept and marked; callers filter with ``PodInfo.live``.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from adapter.core.model import Namespace, NodeName, PodInfo, PodName, PodUID
from adapter.kube.podinfo import Key

_K = TypeVar("_K")
_I = TypeVar("_I")


class PodStore:
    """Pods by key, by namespace and by node; mutated only by the index's own loop."""

    __slots__ = ("by_key", "by_namespace", "by_node")

    def __init__(self) -> None:
        self.by_key: dict[Key, PodInfo] = {}
        self.by_namespace: dict[Namespace, dict[PodName, PodInfo]] = {}
        self.by_node: dict[NodeName, dict[Key, PodInfo]] = {}

    def put(self, pod: PodInfo) -> None:
        key = pod.key  # one tuple for both indexes that need one
        self.remove(key)
        self.by_key[key] = pod
        self.by_namespace.setdefault(pod.namespace, {})[pod.name] = pod
        if pod.node_name is not None:
            self.by_node.setdefault(pod.node_name, {})[key] = pod

    def remove(self, key: Key, uid: PodUID | None = None) -> None:
        """Forget ``key``; with ``uid``, only if it is still that pod."""
        old = self.by_key.get(key)
        if old is None or (uid is not None and old.uid != uid):
            return
        del self.by_key[key]
        _discard(self.by_namespace, old.namespace, old.name)
        if old.node_name is not None:
            _discard(self.by_node, old.node_name, key)


def _discard(index: dict[_K, dict[_I, PodInfo]], outer: _K, inner: _I) -> None:
    bucket = index.get(outer)
    if bucket is not None:
        bucket.pop(inner, None)
        if not bucket:
            del index[outer]


class StoredPods:
    """The read side (``PodLister``) over a ``PodStore`` that may be swapped whole."""

    def __init__(self) -> None:
        self._store = PodStore()
        self._synced = asyncio.Event()
        self._generation = 0

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    @property
    def generation(self) -> int:
        """Changes on every pod event applied and every relist (``VersionedPods``)."""
        return self._generation

    async def wait_synced(self) -> None:
        """Return once the first complete list is in (immediately for a file)."""
        await self._synced.wait()

    def get(self, namespace: Namespace, name: PodName) -> PodInfo | None:
        return self._store.by_key.get((namespace, name))

    def in_namespace(self, namespace: Namespace) -> tuple[PodInfo, ...]:
        return tuple(self._store.by_namespace.get(namespace, {}).values())

    def on_node(self, node: NodeName) -> tuple[PodInfo, ...]:
        return tuple(self._store.by_node.get(node, {}).values())

    def all(self) -> tuple[PodInfo, ...]:
        return tuple(self._store.by_key.values())

    def __len__(self) -> int:
        return len(self._store.by_key)

    def _replace(self, store: PodStore) -> None:
        self._store = store
        self._generation += 1
        self._synced.set()
