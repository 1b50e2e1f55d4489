"""The pod index: every pod the adapter may serve, in memory, kept current by list+watch.

This module is the one place that knows the Pod wire format (``pod_from_k8s``).
Two implementations of ``adapter.core.ports.PodLister`` share one storage:

- ``PodIndex`` lists all pods (paginated), then watches from the list's
  resourceVersion, as client-go's reflector does: events are applied in order,
  bookmarks only advance the resourceVersion, a closed or dropped watch resumes
  from the last resourceVersion after a backoff, and 410 Gone (HTTP or a watch
  ERROR event) relists and swaps the whole index at once.
- ``PodsFileIndex`` holds the pods of a ``--pods-file`` (standalone mode).

Non-live pods (Succeeded/Failed, or with a deletionTimestamp) are kept and marked;
callers filter with ``PodInfo.live``. Readers get tuples: a snapshot that the
watch loop cannot change under their feet.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from sys import intern
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import yaml

from adapter.core.model import Namespace, NodeName, OwnerRef, PodInfo, PodName, PodUID
from adapter.core.ports import PodLister
from adapter.kube.errors import (
    KubeAPIError,
    KubeUnavailable,
    PodFormatError,
    PodsFileError,
    ResourceExpired,
    error_from_status,
)
from adapter.kube.listwatch import JSONObject, PodsAPI

log = logging.getLogger(__name__)

Key = tuple[Namespace, PodName]
Sleep = Callable[[float], Awaitable[object]]
_K = TypeVar("_K")
_I = TypeVar("_I")

# ---------------------------------------------------------------------------- wire format


def pod_from_k8s(obj: Mapping[str, Any]) -> PodInfo:
    """The ``PodInfo`` of a Pod object as the API serves it (a JSON dict).

    Reads metadata (namespace, name, uid, labels, controller ownerReference,
    deletionTimestamp), spec.nodeName and status (phase, podIP, startTime, the
    Ready condition and its lastTransitionTime). Times become Unix seconds.
    Raises PodFormatError when namespace, name or uid is missing or a field has
    the wrong type.
    """
    meta = _mapping(obj, "metadata")
    spec = _mapping(obj, "spec")
    status = _mapping(obj, "status")
    ready, ready_since = _ready(status)
    return PodInfo(
        namespace=Namespace(intern(_required(meta, "namespace"))),
        name=PodName(_required(meta, "name")),
        uid=PodUID(_required(meta, "uid")),
        labels=_labels(meta),
        phase=_optional(status, "phase") or "Pending",
        ready=ready,
        start_time=_unix_time(status.get("startTime"), "status.startTime"),
        ready_since=ready_since,
        node_name=NodeName(intern(node)) if (node := _optional(spec, "nodeName")) else None,
        pod_ip=_optional(status, "podIP") or None,
        owner=_controller(meta),
        deleting=meta.get("deletionTimestamp") is not None,
    )


def pod_key(obj: Mapping[str, Any]) -> Key:
    """(namespace, name) of a Pod object, without converting the rest."""
    meta = _mapping(obj, "metadata")
    return (Namespace(_required(meta, "namespace")), PodName(_required(meta, "name")))


def _mapping(obj: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = obj.get(field)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PodFormatError(f"{field} is not an object")
    return value


def _optional(obj: Mapping[str, Any], field: str) -> str | None:
    value = obj.get(field)
    if value is not None and not isinstance(value, str):
        raise PodFormatError(f"{field} is not a string")
    return value


def _required(meta: Mapping[str, Any], field: str) -> str:
    value = _optional(meta, field)
    if not value:
        raise PodFormatError(f"metadata.{field} is missing")
    return value


def _labels(meta: Mapping[str, Any]) -> dict[str, str]:
    """The labels, keys and values interned: across a fleet they repeat, pod after pod."""
    labels = _mapping(meta, "labels")
    for key, value in labels.items():
        if not isinstance(value, str):
            raise PodFormatError(f"label {key!r} is not a string")
    return {intern(key): intern(value) for key, value in labels.items()}


def _ready(status: Mapping[str, Any]) -> tuple[bool, float | None]:
    conditions = status.get("conditions") or []
    if not isinstance(conditions, list):
        raise PodFormatError("status.conditions is not a list")
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            if condition.get("status") != "True":
                return False, None
            since = condition.get("lastTransitionTime")
            return True, _unix_time(since, "Ready lastTransitionTime")
    return False, None


def _controller(meta: Mapping[str, Any]) -> OwnerRef | None:
    refs = meta.get("ownerReferences") or []
    if not isinstance(refs, list):
        raise PodFormatError("metadata.ownerReferences is not a list")
    for ref in refs:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return _owner(
                str(ref.get("apiVersion", "")), str(ref.get("kind", "")), str(ref.get("name", ""))
            )
    return None


@functools.lru_cache(maxsize=4096)
def _owner(api_version: str, kind: str, name: str) -> OwnerRef:
    """One shared OwnerRef per controller: a ReplicaSet's pods all point to the same one."""
    return OwnerRef(api_version=intern(api_version), kind=intern(kind), name=intern(name))


def _unix_time(value: object, field: str) -> float | None:
    """RFC 3339 (``2024-05-01T12:00:00Z``, fractions, offsets) to Unix seconds.

    Also takes a ``datetime``: YAML loaders turn unquoted timestamps into those.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as e:
            raise PodFormatError(f"{field} is not an RFC 3339 time: {value!r}") from e
    if not isinstance(value, datetime):
        raise PodFormatError(f"{field} is not a time")
    if value.tzinfo is None:  # Kubernetes times are UTC
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


# ---------------------------------------------------------------------------- storage


class _Store:
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


class _Pods:
    """The read side (``PodLister``) over a ``_Store`` that may be swapped whole."""

    def __init__(self) -> None:
        self._store = _Store()
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

    def _replace(self, store: _Store) -> None:
        self._store = store
        self._generation += 1
        self._synced.set()


# ---------------------------------------------------------------------------- list + watch


class Backoff:
    """Exponential delays with jitter: ``initial``, times ``factor``, capped at ``maximum``.

    ``reset()`` after a success. ``rng`` returns floats in [0, 1); injected for tests.
    """

    def __init__(
        self,
        initial: float = 0.8,
        maximum: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._initial, self._maximum, self._factor = initial, maximum, factor
        self._jitter, self._rng = jitter, rng
        self._next = initial

    def next(self) -> float:
        """The delay to sleep now; each call grows the following one."""
        delay = self._next
        self._next = min(self._maximum, self._next * self._factor)
        return delay * (1.0 + self._jitter * (2.0 * self._rng() - 1.0))

    def reset(self) -> None:
        self._next = self._initial


class PodIndex(_Pods):
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

    async def _list_all(self) -> tuple[_Store, str]:
        store = _Store()
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


def _put(store: _Store, obj: JSONObject) -> None:
    """Add or replace one pod; one the API server sent malformed is dropped, not kept stale."""
    try:
        store.put(pod_from_k8s(obj))
    except PodFormatError as e:
        log.warning("dropping a pod the API server sent malformed: %s", e)
        with contextlib.suppress(PodFormatError):
            store.remove(pod_key(obj))


# ---------------------------------------------------------------------------- pods file


class PodsFileIndex(_Pods):
    """A fixed set of pods, synced from the start: standalone mode and tests.

    ``PodsFileIndex.load(path)`` reads a ``--pods-file``; the constructor takes
    ``PodInfo`` values directly (a ready-made ``PodLister`` for tests).
    """

    def __init__(self, pods: Iterable[PodInfo] = ()) -> None:
        super().__init__()
        store = _Store()
        for pod in pods:
            store.put(pod)
        self._replace(store)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PodsFileIndex:
        """Raises PodsFileError naming the file and what is wrong with it."""
        return cls(load_pods_file(path))


def load_pods_file(path: str | os.PathLike[str]) -> list[PodInfo]:
    """The pods of a YAML or JSON file: a PodList (or ``kind: List``), one Pod, a
    plain list of Pods, or several YAML documents of any of those.

    A pod without a namespace is in ``default``; one without a uid gets a stable
    made-up one. Raises PodsFileError (file, reason) on anything else.
    """
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise PodsFileError(name, f"cannot read it: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise PodsFileError(name, "it is not UTF-8 text") from e
    pods: dict[Key, PodInfo] = {}
    for number, obj in enumerate(_pod_objects(name, _documents(name, text)), start=1):
        try:
            pod = pod_from_k8s(_with_file_defaults(obj))
        except PodFormatError as e:
            raise PodsFileError(name, f"pod #{number}: {e}") from e
        if pod.key in pods:
            raise PodsFileError(name, f"pod {pod.namespace}/{pod.name} appears twice")
        pods[pod.key] = pod
    return list(pods.values())


def _documents(name: str, text: str) -> list[object]:
    if text.lstrip().startswith(("{", "[")):
        with contextlib.suppress(ValueError):  # not JSON: YAML flow style, YAML decides
            return [json.loads(text)]
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as e:
        raise PodsFileError(name, f"it is neither JSON nor YAML: {e}") from e
    if not documents:
        raise PodsFileError(name, "it is empty")
    return documents


def _pod_objects(name: str, documents: list[object]) -> list[Mapping[str, Any]]:
    objects: list[Mapping[str, Any]] = []
    for document in documents:
        if isinstance(document, list):
            items: object = document
        elif isinstance(document, Mapping) and (
            "items" in document or str(document.get("kind", "")).endswith("List")
        ):
            items = document.get("items") or []
        elif isinstance(document, Mapping):
            items = [document]
        else:
            raise PodsFileError(name, "expected a Pod, a PodList or a list of Pods")
        if not isinstance(items, list):
            raise PodsFileError(name, "items is not a list")
        for item in items:
            if not isinstance(item, Mapping):
                raise PodsFileError(name, "a list item is not an object")
            if (kind := item.get("kind", "Pod")) != "Pod":
                raise PodsFileError(name, f"found a {kind}; only Pods are accepted")
            objects.append(item)
    return objects


def _with_file_defaults(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(obj.get("metadata"), Mapping):
        return obj  # pod_from_k8s says what is missing
    meta = dict(obj["metadata"])
    meta.setdefault("namespace", "default")
    if not meta.get("uid") and isinstance(meta.get("name"), str):
        made_up = uuid.uuid5(uuid.NAMESPACE_URL, f"pods-file:{meta['namespace']}/{meta['name']}")
        meta["uid"] = str(made_up)
    return {**obj, "metadata": meta}


if TYPE_CHECKING:  # both satisfy the port; mypy checks it here rather than at the wiring

    def _pod_listers(index: PodIndex, file_index: PodsFileIndex) -> tuple[PodLister, PodLister]:
        return index, file_index
