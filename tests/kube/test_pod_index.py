"""The pod index against the loopback fake API server: list, watch, resume, relist, files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml
from aiohttp import web

from adapter.core.model import Namespace, NodeName, OwnerRef, PodName
from adapter.kube.backoff import Backoff
from adapter.kube.credentials import connect
from adapter.kube.errors import (
    KubeAPIError,
    KubeConfigError,
    KubeUnavailable,
    PodFormatError,
    PodsFileError,
    ResourceExpired,
)
from adapter.kube.listwatch import KubeListWatch
from adapter.kube.podindex import PodIndex
from adapter.kube.podinfo import pod_from_k8s
from adapter.kube.podsfile import PodsFileIndex, load_pods_file
from tests.fakes.kube_api import STATE, FakeKubeServer, FakeKubeState, make_pod

T0 = 1714564800.0  # 2024-05-01T12:00:00Z


async def eventually(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def names(pods: object) -> set[str]:
    return {p.name for p in pods}  # type: ignore[attr-defined]


def index_on(kube_client: Any, **options: Any) -> PodIndex:
    async def instant(_: float) -> None:
        await asyncio.sleep(0)

    return PodIndex(KubeListWatch(kube_client), page_size=2, sleep=instant, **options)


@contextlib.asynccontextmanager
async def watching(index: PodIndex, state: FakeKubeState) -> AsyncIterator[list[int]]:
    """Run one watch_once() while the body runs; yields a list that receives its result."""
    task = asyncio.create_task(index.watch_once(), name="test-watch")
    result: list[int] = []
    try:
        await state.wait_for_watches()
        yield result
        state.end_watches()
        result.append(await asyncio.wait_for(task, 5))
    finally:
        task.cancel()
        await asyncio.wait({task})


# ---------------------------------------------------------------------------- listing


async def test_not_synced_before_the_first_list(
    kube_state: FakeKubeState, pod_index: PodIndex
) -> None:
    kube_state.add_pod(make_pod("ml", "a"))
    # one comparison, not three asserts: mypy would keep `not synced` narrowed past the await
    assert (pod_index.synced, pod_index.all(), pod_index.resource_version) == (False, (), None)
    with pytest.raises(RuntimeError, match="list_once"):
        await pod_index.watch_once()

    await pod_index.list_once()

    assert pod_index.synced
    assert names(pod_index.all()) == {"a"}


async def test_initial_list_is_paginated(kube_state: FakeKubeState, pod_index: PodIndex) -> None:
    for i in range(5):
        kube_state.add_pod(make_pod("ml", f"p{i}"))

    await pod_index.list_once()

    assert names(pod_index.all()) == {f"p{i}" for i in range(5)}
    assert pod_index.resource_version == str(kube_state.rv)
    lists = kube_state.list_requests
    assert [r.query.get("limit") for r in lists] == ["2", "2", "2"]
    assert "continue" not in lists[0].query
    assert all("continue" in r.query for r in lists[1:])
    assert lists[0].authorization == "Bearer fake-token"


async def test_a_list_whose_continue_token_expires_starts_over(
    kube_state: FakeKubeState, kube_client: Any
) -> None:
    for i in range(5):
        kube_state.add_pod(make_pod("ml", f"p{i}"))
    inner = KubeListWatch(kube_client)
    pages = 0

    class CompactAfterFirstPage:
        async def list(self, **kw: Any) -> Mapping[str, Any]:
            nonlocal pages
            page = await inner.list(**kw)
            pages += 1
            if pages == 1:
                kube_state.delete_pod("ml", "p4")
                kube_state.compact()
            return page

        def watch(self, **kw: Any) -> Any:
            return inner.watch(**kw)

    index = PodIndex(CompactAfterFirstPage(), page_size=2)
    await index.list_once()

    assert names(index.all()) == {"p0", "p1", "p2", "p3"}
    assert [("continue" in r.query) for r in kube_state.list_requests] == [
        False,
        True,  # 410: the token predates the compaction
        False,
        True,
    ]


async def test_list_errors_leave_the_index_as_it_was(
    kube_state: FakeKubeState, pod_index: PodIndex
) -> None:
    kube_state.add_pod(make_pod("ml", "a"))
    await pod_index.list_once()
    kube_state.fail_next(403, on="list", reason="Forbidden", message='pods is forbidden: User "x"')

    with pytest.raises(KubeAPIError) as caught:
        await pod_index.list_once()

    assert caught.value.status == 403
    assert caught.value.reason == "Forbidden"
    assert "forbidden" in caught.value.message
    assert not isinstance(caught.value, KubeUnavailable)
    assert pod_index.synced
    assert names(pod_index.all()) == {"a"}


async def test_unreachable_server_is_unavailable(tmp_path: Path) -> None:
    server = FakeKubeServer()
    await server.start()
    config = server.write_kubeconfig(tmp_path / "kubeconfig")
    await server.close()  # the port is now closed
    client = await connect(str(config))
    try:
        with pytest.raises(KubeUnavailable):
            await index_on(client).list_once()
    finally:
        await client.close()


# ---------------------------------------------------------------------------- watching


async def test_watch_applies_added_modified_deleted(
    kube_state: FakeKubeState, pod_index: PodIndex
) -> None:
    kube_state.add_pod(make_pod("ml", "a", labels={"app": "web"}))
    await pod_index.list_once()
    a = Namespace("ml"), PodName("a")
    b = Namespace("ml"), PodName("b")

    async with watching(pod_index, kube_state) as result:
        kube_state.add_pod(make_pod("ml", "b"))
        await eventually(lambda: pod_index.get(*b) is not None)
        kube_state.modify_pod("ml", "a", lambda p: p["metadata"]["labels"].update(app="api"))
        await eventually(lambda: pod_index.get(*a).labels == {"app": "api"})  # type: ignore[union-attr]
        kube_state.delete_pod("ml", "b")
        await eventually(lambda: pod_index.get(*b) is None)

    assert result == [3]
    assert pod_index.resource_version == str(kube_state.rv)
    assert kube_state.watch_requests[0].query["allowWatchBookmarks"] == "true"
    assert kube_state.watch_requests[0].query["timeoutSeconds"] == "30"


async def test_watch_resumes_from_its_resource_version_without_a_relist(
    kube_state: FakeKubeState, pod_index: PodIndex, backoff_sleeps: list[float]
) -> None:
    kube_state.add_pod(make_pod("ml", "a"))
    async with pod_index:
        await pod_index.wait_synced()
        await kube_state.wait_for_watches()
        kube_state.add_pod(make_pod("ml", "b"))
        await eventually(lambda: len(pod_index) == 2)
        seen = pod_index.resource_version

        assert kube_state.drop_watches() == 1
        kube_state.add_pod(make_pod("ml", "c"))  # while the index is disconnected
        await eventually(lambda: len(pod_index) == 3)

    assert len(kube_state.list_requests) == 1
    assert [r.resource_version for r in kube_state.watch_requests][:2] == ["1001", seen]
    assert backoff_sleeps == [0.5]


async def test_a_watch_that_ends_cleanly_resumes_at_once(
    kube_state: FakeKubeState, pod_index: PodIndex, backoff_sleeps: list[float]
) -> None:
    async with pod_index:
        await kube_state.wait_for_watches()
        kube_state.add_pod(make_pod("ml", "a"))
        await eventually(lambda: len(pod_index) == 1)
        kube_state.end_watches()
        await eventually(lambda: len(kube_state.watch_requests) == 2)

    assert backoff_sleeps == []
    assert len(kube_state.list_requests) == 1


async def test_server_errors_on_watch_back_off_and_resume(
    kube_state: FakeKubeState, pod_index: PodIndex, backoff_sleeps: list[float]
) -> None:
    kube_state.fail_next(500, on="watch", times=2)
    kube_state.fail_next(429, on="watch", reason="TooManyRequests")
    async with pod_index:
        await kube_state.wait_for_watches()
        kube_state.add_pod(make_pod("ml", "a"))
        await eventually(lambda: len(pod_index) == 1)

    assert backoff_sleeps == [0.5, 1.0, 2.0]
    assert len(kube_state.list_requests) == 1
    assert len({r.resource_version for r in kube_state.watch_requests}) == 1


async def test_bookmarks_advance_the_resource_version_only(
    kube_state: FakeKubeState, kube_client: Any
) -> None:
    index = index_on(kube_client, label_selector="app=web")
    kube_state.add_pod(make_pod("ml", "web-1", labels={"app": "web"}))
    await index.list_once()
    listed = index.resource_version

    async with watching(index, kube_state) as result:
        kube_state.add_pod(make_pod("ml", "other", labels={"app": "batch"}))  # not ours
        assert index.resource_version == listed
        assert kube_state.bookmark() == 1
        await eventually(lambda: index.resource_version == str(kube_state.rv))

    assert result == [1]
    assert names(index.all()) == {"web-1"}


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
async def test_410_on_watch_raises_resource_expired(
    kube_state: FakeKubeState, pod_index: PodIndex, as_http: bool
) -> None:
    kube_state.watch_gone_as_http = as_http
    kube_state.add_pod(make_pod("ml", "a"))
    await pod_index.list_once()
    kube_state.add_pod(make_pod("ml", "b"))
    kube_state.compact()

    with pytest.raises(ResourceExpired) as caught:
        await pod_index.watch_once()

    assert caught.value.status == 410
    assert "too old resource version" in caught.value.message


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
async def test_410_relists_and_replaces_the_index(
    kube_state: FakeKubeState, pod_index: PodIndex, backoff_sleeps: list[float], as_http: bool
) -> None:
    kube_state.watch_gone_as_http = as_http
    for name in ("a", "b", "c"):
        kube_state.add_pod(make_pod("ml", name))
    await pod_index.list_once()
    # The gap: b goes, d comes, and history is compacted past our resourceVersion.
    kube_state.delete_pod("ml", "b")
    kube_state.add_pod(make_pod("ml", "d"))
    kube_state.compact()
    synced_throughout: list[bool] = []

    async with pod_index:
        while names(pod_index.all()) != {"a", "c", "d"}:
            synced_throughout.append(pod_index.synced)
            await asyncio.sleep(0.005)
        await kube_state.wait_for_watches()

    assert all(synced_throughout)
    assert pod_index.resource_version == str(kube_state.rv)
    assert len(kube_state.list_requests) == 2 + 2  # two pages before, two after
    assert backoff_sleeps == []


# ---------------------------------------------------------------------------- views


async def test_node_index_follows_scheduling(
    kube_state: FakeKubeState, pod_index: PodIndex
) -> None:
    kube_state.add_pod(make_pod("ml", "a", node="gpu-1"))
    kube_state.add_pod(make_pod("ml", "b", node="gpu-2"))
    kube_state.add_pod(make_pod("batch", "c", node="gpu-1"))
    kube_state.add_pod(make_pod("ml", "pending", node=None))
    await pod_index.list_once()

    assert names(pod_index.on_node(NodeName("gpu-1"))) == {"a", "c"}
    assert names(pod_index.on_node(NodeName("gpu-3"))) == set()
    assert names(pod_index.in_namespace(Namespace("ml"))) == {"a", "b", "pending"}

    async with watching(pod_index, kube_state):
        kube_state.update_pod(make_pod("ml", "pending", node="gpu-2"))
        kube_state.delete_pod("ml", "b")
        await eventually(lambda: names(pod_index.on_node(NodeName("gpu-2"))) == {"pending"})

    assert names(pod_index.on_node(NodeName("gpu-1"))) == {"a", "c"}


async def test_field_selector_index_sees_pods_arrive_on_its_node(
    kube_state: FakeKubeState, kube_client: Any
) -> None:
    index = index_on(kube_client, field_selector="spec.nodeName=gpu-1")
    kube_state.add_pod(make_pod("ml", "here", node="gpu-1"))
    kube_state.add_pod(make_pod("ml", "there", node="gpu-2"))
    kube_state.add_pod(make_pod("ml", "pending", node=None))
    await index.list_once()
    assert names(index.all()) == {"here"}

    async with watching(index, kube_state):
        kube_state.update_pod(make_pod("ml", "pending", node="gpu-1"))
        await eventually(lambda: names(index.all()) == {"here", "pending"})

    assert kube_state.watch_requests[0].query["fieldSelector"] == "spec.nodeName=gpu-1"


async def test_namespaced_index(kube_state: FakeKubeState, kube_client: Any) -> None:
    index = index_on(kube_client, namespace="ml")
    kube_state.add_pod(make_pod("ml", "a"))
    kube_state.add_pod(make_pod("other", "b"))

    await index.list_once()

    assert names(index.all()) == {"a"}
    assert kube_state.list_requests[0].path == "/api/v1/namespaces/ml/pods"


async def test_non_live_pods_are_kept_and_marked(
    kube_state: FakeKubeState, pod_index: PodIndex
) -> None:
    kube_state.add_pod(make_pod("ml", "done", phase="Succeeded", ready=False))
    kube_state.add_pod(make_pod("ml", "failed", phase="Failed", ready=False))
    kube_state.add_pod(make_pod("ml", "live"))
    await pod_index.list_once()

    async with watching(pod_index, kube_state):
        kube_state.modify_pod(
            "ml", "live", lambda p: p["metadata"].update(deletionTimestamp="2024-05-01T13:00:00Z")
        )
        await eventually(lambda: pod_index.get(Namespace("ml"), PodName("live")).deleting)  # type: ignore[union-attr]

    pods = {p.name: p for p in pod_index.all()}
    assert set(pods) == {"done", "failed", "live"}
    assert not any(p.live for p in pods.values())


async def test_stop_ends_the_task_and_start_twice_is_refused(pod_index: PodIndex) -> None:
    task = pod_index.start()
    assert task.get_name() == "pod-index"
    with pytest.raises(RuntimeError, match="already running"):
        pod_index.start()
    await pod_index.wait_synced()
    await pod_index.stop()
    assert task.cancelled()


# ---------------------------------------------------------------------------- wire format


def test_pod_from_k8s_reads_a_ready_pod() -> None:
    obj = make_pod(
        "ml", "web-1", labels={"app": "web"}, node="gpu-1", owner=("ReplicaSet", "web-7d")
    )
    pod = pod_from_k8s(obj)

    assert pod.key == ("ml", "web-1")
    assert pod.uid == obj["metadata"]["uid"]
    assert pod.labels == {"app": "web"}
    assert (pod.phase, pod.ready, pod.live, pod.deleting) == ("Running", True, True, False)
    assert pod.start_time == T0 + 1
    assert pod.ready_since == T0 + 30
    assert pod.node_name == "gpu-1"
    assert pod.pod_ip == "10.0.0.10"
    assert pod.owner == OwnerRef("apps/v1", "ReplicaSet", "web-7d")  # not the ConfigMap


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: None, {"ready": True, "ready_since": T0 + 30}),
        (
            lambda p: p["status"]["conditions"][-1].update(status="False"),
            {"ready": False, "ready_since": None},
        ),
        (
            lambda p: p["status"].pop("conditions"),
            {"ready": False, "ready_since": None},
        ),
        (
            lambda p: p["status"]["conditions"][-1].update(
                lastTransitionTime="2024-05-01T14:00:30.250+02:00"
            ),
            {"ready_since": T0 + 30.25},
        ),
        (
            lambda p: p["status"].update(startTime="2024-05-01T12:00:00.123456789Z"),
            {"start_time": pytest.approx(T0 + 0.123456)},
        ),
        (lambda p: p["metadata"].pop("ownerReferences"), {"owner": None}),
        (
            lambda p: p["metadata"]["ownerReferences"][1].pop("controller"),
            {"owner": None},
        ),
        (lambda p: p["metadata"].pop("labels"), {"labels": {}}),
        (
            lambda p: p["metadata"].update(deletionTimestamp="2024-05-01T13:00:00Z"),
            {"deleting": True, "live": False},
        ),
        (lambda p: p["status"].update(phase="Succeeded"), {"live": False}),
        (lambda p: p["status"].pop("phase"), {"phase": "Pending"}),
        (
            lambda p: p.update(make_pod("ml", "web-1", node=None)),
            {
                "node_name": None,
                "pod_ip": None,
                "start_time": None,
                "phase": "Pending",
                "ready": False,
            },
        ),
    ],
    ids=[
        "ready",
        "not-ready",
        "no-conditions",
        "offset-and-fraction",
        "nanoseconds",
        "no-owner",
        "owner-not-controller",
        "no-labels",
        "deleting",
        "succeeded",
        "no-phase",
        "unscheduled",
    ],
)
def test_pod_from_k8s_table(
    change: Callable[[dict[str, Any]], object], expected: dict[str, Any]
) -> None:
    obj = make_pod("ml", "web-1", owner=("ReplicaSet", "web-7d"))
    change(obj)
    pod = pod_from_k8s(obj)
    assert {k: getattr(pod, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["metadata"].pop("uid"), "metadata.uid is missing"),
        (lambda p: p["metadata"].pop("namespace"), "metadata.namespace is missing"),
        (lambda p: p["metadata"]["labels"].update(gpu=1), "label 'gpu' is not a string"),
        (lambda p: p["status"].update(startTime="yesterday"), "not an RFC 3339 time"),
        (lambda p: p.update(status=[]), "status is not an object"),
    ],
)
def test_pod_from_k8s_rejects_malformed_pods(
    change: Callable[[dict[str, Any]], object], message: str
) -> None:
    obj = make_pod("ml", "web-1", labels={"app": "web"})
    change(obj)
    with pytest.raises(PodFormatError, match=message):
        pod_from_k8s(obj)


# ---------------------------------------------------------------------------- pods file

KUBECTL_YAML = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: web-1
    namespace: ml
    uid: 6f1c2a1e-0000-4000-8000-000000000001
    labels: {app: web}
    ownerReferences:
    - {apiVersion: apps/v1, kind: ReplicaSet, name: web-7d, uid: x, controller: true}
  spec: {nodeName: gpu-1}
  status:
    phase: Running
    podIP: 10.0.0.10
    startTime: 2024-05-01T12:00:01Z
    conditions:
    - {type: Ready, status: "True", lastTransitionTime: 2024-05-01T12:00:30Z}
- kind: Pod
  metadata: {name: worker}
  status: {phase: Pending}
"""


def test_pods_file_yaml_list(tmp_path: Path) -> None:
    path = tmp_path / "pods.yaml"
    path.write_text(KUBECTL_YAML)

    index = PodsFileIndex.load(path)

    assert index.synced
    web = index.get(Namespace("ml"), PodName("web-1"))
    assert web is not None
    assert (web.ready_since, web.start_time, web.node_name) == (T0 + 30, T0 + 1, "gpu-1")
    assert web.owner == OwnerRef("apps/v1", "ReplicaSet", "web-7d")
    worker = index.get(Namespace("default"), PodName("worker"))  # namespace defaulted
    assert worker is not None
    assert worker.uid  # a stable made-up uid
    assert worker.uid == load_pods_file(path)[1].uid


@pytest.mark.parametrize(
    "layout",
    ["podlist-json", "plain-json-list", "multi-document-yaml", "single-pod-yaml"],
)
def test_pods_file_layouts(tmp_path: Path, layout: str) -> None:
    pods = [make_pod("ml", "a", node="gpu-1"), make_pod("ml", "b", node="gpu-2")]
    path = tmp_path / "pods"
    if layout == "podlist-json":
        path.write_text(json.dumps({"kind": "PodList", "apiVersion": "v1", "items": pods}))
    elif layout == "plain-json-list":
        path.write_text(json.dumps(pods))
    elif layout == "multi-document-yaml":
        path.write_text(yaml.safe_dump_all(pods))
    else:
        pods = pods[:1]
        path.write_text(yaml.safe_dump(pods[0]))

    index = PodsFileIndex.load(path)

    assert names(index.all()) == {p["metadata"]["name"] for p in pods}
    assert names(index.on_node(NodeName("gpu-1"))) == {"a"}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read it"),
        ("", "it is empty"),
        ("items: [unclosed", "neither JSON nor YAML"),
        ("just text", "expected a Pod, a PodList or a list of Pods"),
        ("kind: List\nitems: [{kind: Service, metadata: {name: s}}]", "found a Service"),
        ("items: {a: 1}", "items is not a list"),
        ("- metadata: {namespace: ml}", r"pod #1: metadata.name is missing"),
        ("- metadata: {name: a}\n- metadata: {name: a}", "pod default/a appears twice"),
        (
            "- metadata: {name: a}\n- metadata: {name: b, labels: {gpu: 1}}",
            "pod #2: label 'gpu' is not a string",
        ),
    ],
)
def test_pods_file_errors_name_the_file_and_the_reason(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "pods.yaml"
    if content is not None:
        path.write_text(content)

    with pytest.raises(PodsFileError, match=reason) as caught:
        PodsFileIndex.load(path)

    assert caught.value.path == str(path)
    assert str(caught.value).startswith(f"{path}: ")


# ---------------------------------------------------------------------------- credentials


async def test_connect_with_a_context(fake_kube: FakeKubeServer, tmp_path: Path) -> None:
    config = fake_kube.write_kubeconfig(tmp_path / "kubeconfig", context="other")
    client = await connect(str(config), context="other")
    try:
        assert client.configuration.host == fake_kube.url
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("kubeconfig", "context", "message"),
    [
        ("missing", None, "cannot load kubeconfig"),
        ("written", "nope", r"cannot load kubeconfig .* \(context nope\)"),
        (None, "ctx", "context was given without a kubeconfig"),
        (None, None, "cannot load the in-cluster service account"),
    ],
)
async def test_connect_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kubeconfig: str | None,
    context: str | None,
    message: str,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = None
    if kubeconfig == "missing":
        path = str(tmp_path / "missing")
    elif kubeconfig == "written":
        path = str(FakeKubeServer().write_kubeconfig(tmp_path / "kubeconfig"))
    with pytest.raises(KubeConfigError, match=message):
        await connect(path, context=context)


async def test_tls_fake_and_a_kubeconfig_with_its_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    async with FakeKubeServer(ssl_context=server_context) as server:
        server.state.add_pod(make_pod("ml", "a"))
        config = server.write_kubeconfig(tmp_path / "kubeconfig", ca_file=tmp_path / "ca.pem")
        client = await connect(str(config))
        try:
            index = index_on(client)
            await index.list_once()
        finally:
            await client.close()

    assert server.url.startswith("https://")
    assert names(index.all()) == {"a"}


async def test_extensions_add_routes_to_the_fake() -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"pods": len(request.app[STATE].pods)})

    def install(app: web.Application) -> None:
        app.router.add_post("/apis/example/v1/hello", hello)

    async with (
        FakeKubeServer(extensions=[install]) as server,
        aiohttp.ClientSession(server.url) as session,
    ):
        async with session.post("/apis/example/v1/hello") as response:
            assert await response.json() == {"pods": 0}
        async with session.get("/api/v1/nothing") as response:
            assert response.status == 404
            assert (await response.json())["kind"] == "Status"


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = Backoff(1.0, 5.0, rng=lambda: 0.5)
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 1.0
    jittered = Backoff(1.0, 5.0, jitter=0.2, rng=lambda: 0.0)
    assert jittered.next() == pytest.approx(0.8)
