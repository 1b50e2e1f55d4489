"""A loopback fake of the Kubernetes API server, faithful to the pods list/watch wire format.

What it does like the real one:
- a cluster-wide, monotonically increasing resourceVersion and an event log, so a
  watch from an old resourceVersion replays what happened since;
- ``compact(rv)``: a watch from before ``rv`` gets an ERROR event carrying a 410
  ``Expired`` Status (over HTTP 200, as the apiserver does), a continue token or
  an ``Exact`` list from before it gets HTTP 410;
- consistent paginated lists (``limit``/``continue`` serve one snapshot);
- ``labelSelector`` (=, ==, !=, in, notin, exists, !exists) and ``fieldSelector``
  (``spec.nodeName``, ``metadata.name``, ``metadata.namespace``, ``status.phase``),
  with watch events turned into ADDED/DELETED when a pod enters or leaves them;
- ``allowWatchBookmarks`` bookmarks on demand, ``timeoutSeconds``;
- list items without kind/apiVersion, watch objects with them.

Tests drive it through ``FakeKubeState`` (``server.state``): add/update/delete
pods, ``compact``, ``bookmark``, ``drop_watches``, ``end_watches``, ``fail_next``;
and read back ``requests`` (every request, with its query) to check what a client did.

Extending: ``FakeKubeServer(extensions=[install])`` calls ``install(app)`` before the
app starts; ``server.app`` is the ``web.Application`` and ``STATE`` its typed key.
Another module (TokenReview, SubjectAccessReview, ConfigMaps) adds routes that way.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml
from aiohttp import web

JSON = dict[str, Any]
Extension = Callable[[web.Application], None]

DEFAULT_TIME = "2024-05-01T12:00:00Z"
_ENDED = object()  # queue sentinel: end the watch cleanly
_DROPPED = object()  # queue sentinel: cut the connection


# ---------------------------------------------------------------------------- selectors


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "exists":
            return value is not None
        if self.op == "!exists":
            return value is None
        if self.op in ("=", "in"):
            return value in self.values
        return value not in self.values  # "!=", "notin"


_SET_RE = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(!?)\s*([\w./-]+)\s*$")


class BadRequest(ValueError):
    pass


def parse_label_selector(text: str) -> list[_Requirement]:
    """Requirements of a labelSelector; raises BadRequest like the apiserver's 400."""
    parts: list[str] = []
    depth, current = 0, ""
    for char in text:  # split on commas outside parentheses
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    requirements = []
    for part in (p for p in parts if p.strip()):
        if m := _SET_RE.match(part):
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            requirements.append(_Requirement(m.group(1), m.group(2), values))
        elif m := _EQ_RE.match(part):
            op = "!=" if m.group(2) == "!=" else "="
            requirements.append(_Requirement(m.group(1), op, frozenset({m.group(3)})))
        elif m := _EXISTS_RE.match(part):
            requirements.append(_Requirement(m.group(2), "!exists" if m.group(1) else "exists"))
        else:
            raise BadRequest(f"unable to parse requirement: {part.strip()!r}")
    return requirements


_FIELDS: dict[str, Callable[[JSON], str]] = {
    "metadata.name": lambda p: p["metadata"].get("name", ""),
    "metadata.namespace": lambda p: p["metadata"].get("namespace", ""),
    "spec.nodeName": lambda p: (p.get("spec") or {}).get("nodeName", ""),
    "status.phase": lambda p: (p.get("status") or {}).get("phase", ""),
}


def parse_field_selector(text: str) -> list[tuple[str, bool, str]]:
    """(field, equal, value) triples; unknown fields are a 400 as in the apiserver."""
    terms = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        m = re.match(r"^([\w.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise BadRequest(f"invalid selector: {part!r}")
        if m.group(1) not in _FIELDS:
            raise BadRequest(f'field label not supported: "{m.group(1)}"')
        terms.append((m.group(1), m.group(2) != "!=", m.group(3)))
    return terms


@dataclass(frozen=True)
class _Filter:
    namespace: str | None
    labels: list[_Requirement]
    fields: list[tuple[str, bool, str]]

    @classmethod
    def of(cls, request: web.Request) -> _Filter:
        return cls(
            namespace=request.match_info.get("namespace"),
            labels=parse_label_selector(request.query.get("labelSelector", "")),
            fields=parse_field_selector(request.query.get("fieldSelector", "")),
        )

    def matches(self, pod: JSON | None) -> bool:
        if pod is None:
            return False
        if self.namespace is not None and pod["metadata"].get("namespace") != self.namespace:
            return False
        labels = pod["metadata"].get("labels") or {}
        if not all(r.matches(labels) for r in self.labels):
            return False
        return all((_FIELDS[f](pod) == v) == eq for f, eq, v in self.fields)


# ---------------------------------------------------------------------------- state


@dataclass(frozen=True)
class Event:
    """One change, as stored in the log: the object after it and (for MODIFIED) before."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    obj: JSON
    old: JSON | None = None

    def seen_through(self, flt: _Filter) -> tuple[str, JSON] | None:
        """The event a watch with ``flt`` receives, if any (enter/leave become ADDED/DELETED)."""
        now, before = flt.matches(self.obj), flt.matches(self.old)
        if self.type == "MODIFIED":
            if now and before:
                return ("MODIFIED", self.obj)
            if now or before:
                return ("ADDED" if now else "DELETED", self.obj)
            return None
        return (self.type, self.obj) if now else None


@dataclass(frozen=True)
class RequestRecord:
    """A request the fake answered (pods endpoints only)."""

    method: str
    path: str
    query: Mapping[str, str]
    authorization: str | None

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")

    @property
    def resource_version(self) -> str | None:
        return self.query.get("resourceVersion")


@dataclass
class _Fault:
    status: int
    reason: str
    message: str
    on: str  # "list", "watch" or "any"
    times: int


@dataclass(eq=False)
class _Watcher:
    filter: _Filter
    bookmarks: bool
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)


def status_body(code: int, reason: str, message: str) -> JSON:
    """A ``Status`` failure object, as the apiserver writes it."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class FakeKubeState:
    """The cluster's pods, their history and the knobs tests turn."""

    def __init__(self, *, start_rv: int = 1000) -> None:
        self.rv = start_rv
        self.compacted = 0  # watches/lists from before this resourceVersion get 410
        self.pods: dict[tuple[str, str], JSON] = {}
        self.events: list[Event] = []
        self.requests: list[RequestRecord] = []
        self.watch_gone_as_http = False  # answer a too-old watch with HTTP 410, not an event
        self._watchers: set[_Watcher] = set()
        self._snapshots: dict[int, list[JSON]] = {}
        self._faults: list[_Fault] = []
        self._changed = asyncio.Event()

    # -- mutations -----------------------------------------------------------

    def add_pod(self, pod: Mapping[str, Any]) -> JSON:
        """Create a pod (namespace ``default``, a uid, a creationTimestamp if missing)."""
        obj = copy.deepcopy(dict(pod))
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        key = (meta["namespace"], meta["name"])
        if key in self.pods:
            raise ValueError(f'pods "{key[1]}" already exists in {key[0]}')
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", DEFAULT_TIME)
        return self._record("ADDED", obj, None)

    def update_pod(self, pod: Mapping[str, Any]) -> JSON:
        """Replace a pod with ``pod`` (its uid and creationTimestamp are kept)."""
        obj = copy.deepcopy(dict(pod))
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        old = self.pods[(meta["namespace"], meta["name"])]
        meta["uid"] = old["metadata"]["uid"]
        meta.setdefault("creationTimestamp", old["metadata"].get("creationTimestamp"))
        return self._record("MODIFIED", obj, old)

    def modify_pod(self, namespace: str, name: str, change: Callable[[JSON], object]) -> JSON:
        """Update a pod by calling ``change`` on a copy of it."""
        obj = copy.deepcopy(self.pods[(namespace, name)])
        change(obj)
        return self.update_pod(obj)

    def delete_pod(self, namespace: str, name: str) -> JSON:
        """Remove a pod at once (as after its grace period); DELETED carries its last state."""
        old = self.pods[(namespace, name)]
        return self._record("DELETED", copy.deepcopy(old), None)

    def _record(self, kind: str, obj: JSON, old: JSON | None) -> JSON:
        self.rv += 1
        obj.setdefault("kind", "Pod")
        obj.setdefault("apiVersion", "v1")
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if kind == "DELETED":
            del self.pods[key]
        else:
            self.pods[key] = obj  # stored objects are never mutated afterwards
        event = Event(self.rv, kind, obj, old)
        self.events.append(event)
        for watcher in self._watchers:
            if seen := event.seen_through(watcher.filter):
                watcher.queue.put_nowait({"type": seen[0], "object": seen[1]})
        return copy.deepcopy(obj)

    def compact(self, rv: int | None = None) -> None:
        """Forget history before ``rv`` (default: now): older watches and continues get 410."""
        self.compacted = self.rv if rv is None else rv
        self.events = [e for e in self.events if e.rv > self.compacted]
        self._snapshots = {k: v for k, v in self._snapshots.items() if k >= self.compacted}

    def bookmark(self) -> int:
        """Send a BOOKMARK at the current resourceVersion to watches that allow them."""
        event = {
            "type": "BOOKMARK",
            "object": {
                "kind": "Pod",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.rv)},
            },
        }
        watchers = [w for w in self._watchers if w.bookmarks]
        for watcher in watchers:
            watcher.queue.put_nowait(event)
        return len(watchers)

    def drop_watches(self) -> int:
        """Cut every open watch connection (after what is already queued); returns how many."""
        return self._signal(_DROPPED)

    def end_watches(self) -> int:
        """End every open watch cleanly, as when its timeoutSeconds passes."""
        return self._signal(_ENDED)

    def _signal(self, sentinel: object) -> int:
        watchers = list(self._watchers)
        for watcher in watchers:
            watcher.queue.put_nowait(sentinel)
        self._watchers.clear()
        return len(watchers)

    def fail_next(
        self,
        status: int,
        *,
        on: str = "any",
        times: int = 1,
        reason: str = "InternalError",
        message: str = "injected failure",
    ) -> None:
        """Answer the next ``times`` list/watch requests (``on``) with an HTTP error Status."""
        assert on in ("list", "watch", "any")
        self._faults.append(_Fault(status, reason, message, on, times))

    # -- reading ---------------------------------------------------------------

    def get_pod(self, namespace: str, name: str) -> JSON:
        return copy.deepcopy(self.pods[(namespace, name)])

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    @property
    def list_requests(self) -> list[RequestRecord]:
        return [r for r in self.requests if not r.watch]

    @property
    def watch_requests(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.watch]

    async def wait_for_watches(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` watches are open."""
        async with asyncio.timeout(timeout):
            while len(self._watchers) < count:
                self._changed.clear()
                await self._changed.wait()

    def _take_fault(self, watch: bool) -> _Fault | None:
        for fault in self._faults:
            if fault.on in ("any", "watch" if watch else "list"):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _subscribe(self, watcher: _Watcher) -> None:
        self._watchers.add(watcher)
        self._changed.set()

    def _unsubscribe(self, watcher: _Watcher) -> None:
        self._watchers.discard(watcher)


STATE = web.AppKey("fake_kube_state", FakeKubeState)


# ---------------------------------------------------------------------------- handlers


def _status_response(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(status_body(code, reason, message), status=code)


def _too_old(rv: int, state: FakeKubeState) -> JSON:
    return status_body(410, "Expired", f"too old resource version: {rv} ({state.compacted})")


def _resource_version(text: str) -> int | None:
    """None for "" and "0" (any version will do), else the number."""
    if text in ("", "0"):
        return None
    if not text.isdigit():
        raise BadRequest(f"invalid resourceVersion: {text!r}")
    return int(text)


def _encode_continue(rv: int, offset: int) -> str:
    raw = json.dumps({"rv": rv, "start": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[int, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), int(data["start"])
    except (ValueError, KeyError, TypeError) as e:
        raise BadRequest(f"continue key is not valid: {e}") from e


def _list_item(pod: JSON) -> JSON:
    return {k: v for k, v in pod.items() if k not in ("kind", "apiVersion")}


async def pods_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    watch = request.query.get("watch") in ("true", "1")
    state.requests.append(
        RequestRecord(
            request.method,
            request.path,
            dict(request.query),
            request.headers.get("Authorization"),
        )
    )
    if fault := state._take_fault(watch):
        return _status_response(fault.status, fault.reason, fault.message)
    try:
        flt = _Filter.of(request)
        return await (_watch(request, state, flt) if watch else _list(request, state, flt))
    except BadRequest as e:
        return _status_response(400, "BadRequest", str(e))


async def _list(request: web.Request, state: FakeKubeState, flt: _Filter) -> web.Response:
    query = request.query
    limit = int(query.get("limit") or 0)
    if token := query.get("continue"):
        snapshot_rv, offset = _decode_continue(token)
        if snapshot_rv < state.compacted or snapshot_rv not in state._snapshots:
            return _status_response(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter.",
            )
        snapshot = state._snapshots[snapshot_rv]
    else:
        rv = _resource_version(query.get("resourceVersion", ""))
        exact = query.get("resourceVersionMatch") == "Exact"
        if rv is not None and exact and rv < state.compacted:
            return web.json_response(_too_old(rv, state), status=410)
        snapshot_rv, offset = state.rv, 0
        snapshot = [state.pods[k] for k in sorted(state.pods)]
    matching = [p for p in snapshot if flt.matches(p)]
    end = offset + limit if limit else len(matching)
    metadata: JSON = {"resourceVersion": str(snapshot_rv)}
    if end < len(matching):
        state._snapshots[snapshot_rv] = snapshot
        metadata["continue"] = _encode_continue(snapshot_rv, end)
        metadata["remainingItemCount"] = len(matching) - end
    body = {
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": metadata,
        "items": [_list_item(p) for p in matching[offset:end]],
    }
    return web.json_response(body)


async def _watch(request: web.Request, state: FakeKubeState, flt: _Filter) -> web.StreamResponse:
    query = request.query
    rv = _resource_version(query.get("resourceVersion", ""))
    watcher = _Watcher(flt, bookmarks=query.get("allowWatchBookmarks") in ("true", "1"))
    if rv is None:  # no resourceVersion: synthetic ADDED events for the current state first
        for key in sorted(state.pods):
            if flt.matches(state.pods[key]):
                watcher.queue.put_nowait({"type": "ADDED", "object": state.pods[key]})
    elif rv < state.compacted:
        if state.watch_gone_as_http:
            return web.json_response(_too_old(rv, state), status=410)
        watcher.queue.put_nowait({"type": "ERROR", "object": _too_old(rv, state)})
        watcher.queue.put_nowait(_ENDED)
    else:
        for event in state.events:
            if event.rv > rv and (seen := event.seen_through(flt)):
                watcher.queue.put_nowait({"type": seen[0], "object": seen[1]})
    if rv is None or rv >= state.compacted:
        state._subscribe(watcher)  # no await since the replay: no event can be missed
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        timeout = float(query.get("timeoutSeconds") or 1800)
        async with asyncio.timeout(timeout):
            while (item := await watcher.queue.get()) is not _ENDED:
                if item is _DROPPED:
                    assert request.transport is not None
                    request.transport.abort()
                    break
                await response.write(json.dumps(item).encode() + b"\n")
    except (TimeoutError, ConnectionError):
        pass  # timeoutSeconds passed, or the client left; aiohttp ends the response
    finally:
        state._unsubscribe(watcher)
    return response


async def version_handler(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "major": "1",
            "minor": "31",
            "gitVersion": "v1.31.0",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": DEFAULT_TIME,
            "goVersion": "go1.22.5",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    )


@web.middleware
async def status_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown paths and methods answer with a Status body, as the apiserver does."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _status_response(e.status, e.reason.replace(" ", ""), e.reason.lower())


def make_app(state: FakeKubeState, extensions: Iterable[Extension] = ()) -> web.Application:
    """The fake's ``web.Application`` with its state under ``STATE``; ``extensions`` add routes."""
    app = web.Application(middlewares=[status_errors])
    app[STATE] = state
    app.router.add_get("/version", version_handler)
    app.router.add_get("/api/v1/pods", pods_handler)
    app.router.add_get("/api/v1/namespaces/{namespace}/pods", pods_handler)
    for extend in extensions:
        extend(app)
    return app


# ---------------------------------------------------------------------------- server


class FakeKubeServer:
    """The fake served on 127.0.0.1 (a free port), plain HTTP or TLS.

    ``async with FakeKubeServer() as server:`` then ``server.url``, ``server.state``,
    ``server.write_kubeconfig(path)``. ``extensions`` are called with the app before
    it starts (add routes there); ``ssl_context`` makes it serve HTTPS.
    """

    def __init__(
        self,
        state: FakeKubeState | None = None,
        *,
        extensions: Sequence[Extension] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.state = state or FakeKubeState()
        self.app = make_app(self.state, extensions)
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        self.port = site.port

    async def close(self) -> None:
        self.state.end_watches()  # open watches would hold the shutdown up
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def write_kubeconfig(
        self,
        path: str | Path,
        *,
        token: str | None = "fake-token",
        context: str = "fake",
        namespace: str | None = None,
        ca_file: str | Path | None = None,
        client_cert: tuple[str | Path, str | Path] | None = None,
        insecure: bool = False,
    ) -> Path:
        """A kubeconfig whose ``context`` points at this server.

        ``ca_file`` (with TLS) verifies the server; ``client_cert`` is (cert, key) files.
        """
        return write_kubeconfig(
            path,
            self.url,
            token=token,
            context=context,
            namespace=namespace,
            ca_file=ca_file,
            client_cert=client_cert,
            insecure=insecure,
        )


def write_kubeconfig(
    path: str | Path,
    server: str,
    *,
    token: str | None = "fake-token",
    context: str = "fake",
    namespace: str | None = None,
    ca_file: str | Path | None = None,
    client_cert: tuple[str | Path, str | Path] | None = None,
    insecure: bool = False,
) -> Path:
    cluster: JSON = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    user: JSON = {}
    if token is not None:
        user["token"] = token
    if client_cert is not None:
        user["client-certificate"], user["client-key"] = (str(p) for p in client_cert)
    ctx: JSON = {"cluster": context, "user": context}
    if namespace is not None:
        ctx["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": context, "user": user}],
        "contexts": [{"name": context, "context": ctx}],
        "current-context": context,
        "preferences": {},
    }
    path = Path(path)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ---------------------------------------------------------------------------- pods


_OWNER_API_VERSIONS = {
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
}


def make_pod(
    namespace: str,
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    ready: bool = True,
    node: str | None = "node-1",
    owner: tuple[str, str] | None = None,
    phase: str = "Running",
    pod_ip: str | None = "10.0.0.10",
    uid: str | None = None,
    created: str = DEFAULT_TIME,
    start_time: str | None = "2024-05-01T12:00:01Z",
    ready_since: str = "2024-05-01T12:00:30Z",
    deleting: bool = False,
) -> JSON:
    """A Pod as the API server returns it, trimmed only of what nothing here reads.

    ``owner`` is the controller as (kind, name); a non-controller ownerReference
    is added too, so readers must pick the controller. ``node=None`` is an
    unscheduled (Pending) pod: no nodeName, no IP, no startTime.
    """
    if node is None:
        phase, pod_ip, start_time, ready = "Pending", None, None, False
    meta: JSON = {
        "name": name,
        "namespace": namespace,
        "uid": uid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}")),
        "creationTimestamp": created,
        "labels": dict(labels or {}),
        "annotations": {"kubectl.kubernetes.io/default-container": "server"},
    }
    if owner is not None:
        kind, owner_name = owner
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": f"{owner_name}-config",
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"cm/{owner_name}")),
            },
            {
                "apiVersion": _OWNER_API_VERSIONS.get(kind, "v1"),
                "kind": kind,
                "name": owner_name,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{owner_name}")),
                "controller": True,
                "blockOwnerDeletion": True,
            },
        ]
    if deleting:
        meta["deletionTimestamp"] = "2024-05-01T13:00:00Z"
        meta["deletionGracePeriodSeconds"] = 30
    spec: JSON = {
        "containers": [
            {
                "name": "server",
                "image": "registry.example/inference-server:1.0",
                "ports": [{"containerPort": 8000, "name": "http", "protocol": "TCP"}],
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }
        ],
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
    }
    if node is not None:
        spec["nodeName"] = node
    transition = created if not ready else ready_since
    ready_text = "True" if ready else "False"
    conditions: list[JSON] = [
        {
            "type": "PodScheduled",
            "status": "True" if node else "False",
            "lastTransitionTime": created,
        },
    ]
    if node is not None:
        conditions += [
            {"type": "Initialized", "status": "True", "lastTransitionTime": created},
            {"type": "ContainersReady", "status": ready_text, "lastTransitionTime": transition},
            {"type": "Ready", "status": ready_text, "lastTransitionTime": transition},
        ]
    status: JSON = {"phase": phase, "conditions": conditions, "qosClass": "BestEffort"}
    if node is not None:
        status["hostIP"] = "192.168.0.11"
        status["containerStatuses"] = [
            {
                "name": "server",
                "ready": ready,
                "restartCount": 0,
                "image": "registry.example/inference-server:1.0",
                "imageID": "registry.example/inference-server@sha256:" + "0" * 64,
                "containerID": "containerd://" + "a" * 64,
                "started": True,
                "state": {"running": {"startedAt": start_time or created}},
            }
        ]
    if pod_ip is not None:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if start_time is not None:
        status["startTime"] = start_time
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec, "status": status}
