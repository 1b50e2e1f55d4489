"""adapter.kube.k8s: the client library without its umbrella ``__init__`` modules.

What ``serve`` imports and the calls it makes to the API server (credentials,
list, reviews) must not load the synchronous client or the parts of the library
we never call; any other code importing ``kubernetes`` must see the library as if
nothing had been skipped. Import state is per process, so the checks that depend
on what was imported first run in a fresh interpreter each.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapter import __version__
from adapter.kube.k8s import Configuration, KubeClient, defer_package_init, is_deferred
from tests.fakes.serving import serving

ROOT = Path(__file__).resolve().parents[2]

# Loaded by the umbrella ``__init__`` modules, used by nothing in the adapter.
SKIPPED = (
    "kubernetes.client",
    "kubernetes.config",
    "kubernetes.dynamic",
    "kubernetes.watch",
    "kubernetes.stream",
    "kubernetes.leaderelection",
    "kubernetes.informer",
    "kubernetes.aio.dynamic",
    "kubernetes.aio.leaderelection",
    "kubernetes.aio.stream",
    "kubernetes.aio.watch",
    "kubernetes_validate",
    "jsonschema",
    "referencing",
    "oauthlib",
    "requests_oauthlib",
    "websocket",
)
# Loaded only by the kubeconfig loader, so only when --kubeconfig is given (at connect).
KUBECONFIG_ONLY = (
    "kubernetes.aio.config.kube_config",
    "kubernetes.aio.client.api_client",
    "kubernetes.aio.client.models",
    "pydantic",
    "dateutil",
)
# What the adapter does call: imported at start-up, not on the first request.
USED = (
    "kubernetes.aio.client.configuration",
    "kubernetes.aio.client.rest",
    "kubernetes.aio.client.exceptions",
    "kubernetes.aio.config.incluster_config",
    "kubernetes.aio.config.config_exception",
)


def run_python(code: str) -> Any:
    """Run ``code`` in a fresh interpreter at the repository root; the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_serve_in_a_cluster_loads_only_what_it_calls() -> None:
    """``serve`` as deployed: in-cluster credentials over TLS, pods listed, both reviews."""
    result = run_python(
        f"""
        import asyncio, json, os, ssl, sys, tempfile
        from pathlib import Path

        import adapter.app  # everything `serve` imports

        UNUSED, USED = {SKIPPED + KUBECONFIG_ONLY!r}, {USED!r}
        after_import = [m for m in UNUSED if m in sys.modules]
        used = [m for m in USED if m in sys.modules]

        import trustme
        from adapter.kube.credentials import connect
        from adapter.kube.listwatch import KubeListWatch, Resource
        from adapter.kube.reviews import KubeReviews
        from tests.fakes.kube_api import FakeKubeServer
        from tests.fakes.kube_auth_api import KubeAuthState, add_auth_routes

        incluster = sys.modules["kubernetes.aio.config.incluster_config"]

        async def calls(tmp):
            ca = trustme.CA()
            server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1").configure_cert(server_tls)
            auth = KubeAuthState(tokens={{"good": {{"username": "alice"}}}})
            auth.allow("alice")
            extension = lambda app: add_auth_routes(app, auth)
            async with FakeKubeServer(ssl_context=server_tls, extensions=[extension]) as server:
                # The service account's files and environment, where the loader reads them.
                (tmp / "token").write_text("sa-token")
                ca.cert_pem.write_to_path(str(tmp / "ca.crt"))
                incluster.SERVICE_TOKEN_FILENAME = str(tmp / "token")
                incluster.SERVICE_CERT_FILENAME = str(tmp / "ca.crt")
                os.environ["KUBERNETES_SERVICE_HOST"] = "127.0.0.1"
                os.environ["KUBERNETES_SERVICE_PORT"] = str(server.port)
                api_client = await connect(None)
                try:
                    page = await KubeListWatch(api_client).list(
                        resource=Resource("pods", "n0"), limit=10, continue_token=None
                    )
                    reviews = KubeReviews(api_client)
                    token = await reviews.create_token_review({{"spec": {{"token": "good"}}}})
                    access = await reviews.create_subject_access_review(
                        {{"spec": {{"user": "alice"}}}}
                    )
                finally:
                    await api_client.close()
                sent = server.state.requests[0]
            return [
                page["items"],
                token["status"]["user"],
                access["status"]["allowed"],
                [sent.path, dict(sent.query), sent.authorization],
            ]

        with tempfile.TemporaryDirectory() as tmp:
            answers = asyncio.run(calls(Path(tmp)))
        after_calls = [m for m in UNUSED if m in sys.modules]
        k8s = sys.modules["adapter.kube.k8s"]
        deferred = [k8s.is_deferred(name) for name in k8s.DEFERRED_PACKAGES]
        print(json.dumps([after_import, used, answers, after_calls, deferred]))
        """
    )
    assert result == [
        [],
        list(USED),
        [
            [],
            {"username": "alice"},
            True,
            ["/api/v1/namespaces/n0/pods", {"limit": "10"}, "bearer sa-token"],
        ],
        [],
        [True] * 3,
    ]


def test_a_kubeconfig_loads_its_loader_when_connecting() -> None:
    result = run_python(
        f"""
        import asyncio, json, sys, tempfile
        from pathlib import Path

        import adapter.app
        from adapter.kube.credentials import connect
        from adapter.kube.listwatch import KubeListWatch, Resource
        from tests.fakes.kube_api import FakeKubeServer

        LOADER, SKIPPED = {KUBECONFIG_ONLY!r}, {SKIPPED!r}
        before = [m for m in LOADER if m in sys.modules]

        async def calls(tmp):
            async with FakeKubeServer() as server:
                api_client = await connect(str(server.write_kubeconfig(tmp / "kubeconfig")))
                try:
                    page = await KubeListWatch(api_client).list(
                        resource=Resource("pods"), limit=10, continue_token=None
                    )
                finally:
                    await api_client.close()
                return [page["items"], server.state.requests[0].authorization]

        with tempfile.TemporaryDirectory() as tmp:
            answers = asyncio.run(calls(Path(tmp)))
        after = [m for m in LOADER if m in sys.modules]
        print(json.dumps([before, answers, after, [m for m in SKIPPED if m in sys.modules]]))
        """
    )
    assert result == [[], [[], "Bearer fake-token"], list(KUBECONFIG_ONLY), []]


async def test_a_request_as_the_generated_client_sent_it() -> None:
    """URL and query encoding, headers, JSON body, the token from the refresh hook."""
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    async def record(request: web.Request) -> web.Response:
        headers = {k: request.headers[k] for k in ("User-Agent", "Accept", "Content-Type")}
        headers["authorization"] = request.headers.get("authorization", "-")
        seen.append((request.method, request.raw_path, headers, await request.read()))
        return web.json_response({"kind": "Status"}, status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    tokens = iter(["first", "second"])

    def refresh(config: Configuration) -> None:
        config.api_key["BearerToken"] = next(tokens)

    async with serving(app) as url:
        configuration = Configuration(host=url)
        configuration.api_key["BearerToken"] = "expired"
        configuration.api_key_prefix["BearerToken"] = "Bearer"
        configuration.refresh_api_key_hook = refresh  # type: ignore[assignment]  # typed as None
        client = KubeClient(configuration)
        try:
            query: list[tuple[str, str | int | bool]] = [
                ("labelSelector", "app in (a,b),tier=x/y"),
                ("limit", 5),
                ("watch", True),
            ]
            async with await client.request("GET", "/api/v1/pods", query=query) as response:
                status = response.status
            post = await client.request(
                "POST",
                "/apis/authentication.k8s.io/v1/tokenreviews",
                headers={"Accept": "application/json", "Content-Type": "application/json"},
                body={"spec": {"token": "t"}},
            )
            post.release()
        finally:
            await client.close()

    assert status == 201
    assert seen == [
        (
            "GET",
            "/api/v1/pods?labelSelector=app%20in%20(a,b),tier%3Dx/y&limit=5&watch=true",
            {
                "User-Agent": f"inference-metrics-adapter/{__version__}",
                "Accept": "*/*",
                "Content-Type": "application/json",
                "authorization": "Bearer first",
            },
            b"",
        ),
        (
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {
                "User-Agent": f"inference-metrics-adapter/{__version__}",
                "Accept": "application/json",
                "Content-Type": "application/json",
                "authorization": "Bearer second",
            },
            b'{"spec": {"token": "t"}}',
        ),
    ]


def test_other_code_sees_the_whole_library_after_the_shim() -> None:
    result = run_python(
        """
        import json, sys

        import adapter.kube.k8s as k8s
        umbrella, aio, config = (
            sys.modules[name] for name in ("kubernetes", "kubernetes.aio", "kubernetes.aio.config")
        )
        deferred = [k8s.is_deferred(name) for name in k8s.DEFERRED_PACKAGES]

        from kubernetes import client
        pod = client.V1Pod(metadata=client.V1ObjectMeta(name="p")).metadata.name
        import kubernetes
        import kubernetes.aio
        watch = kubernetes.aio.watch.Watch.__name__
        from kubernetes.aio.config import load_kube_config
        same = [
            sys.modules["kubernetes"] is umbrella,
            sys.modules["kubernetes.aio"] is aio,
            kubernetes.aio.client.Configuration is k8s.Configuration,
            kubernetes.config.ConfigException is not None,
            sys.modules["kubernetes.aio.config"] is config,
            load_kube_config.__module__ == "kubernetes.aio.config.kube_config",
            "__getattr__" not in vars(umbrella),
        ]
        hooks_left = [k8s.is_deferred(name) for name in k8s.DEFERRED_PACKAGES]
        print(json.dumps([deferred, pod, watch, kubernetes.__version__, aio.__all__, same, hooks_left]))
        """
    )
    assert result == [
        [True, True, True],
        "p",
        "Watch",
        importlib.metadata.version("kubernetes"),
        ["client", "config", "dynamic", "leaderelection", "stream", "utils", "watch"],
        [True, True, True, True, True, True, True],
        [False, False, False],
    ]


def test_a_library_already_imported_is_left_as_it_is() -> None:
    result = run_python(
        """
        import json, sys

        import kubernetes, kubernetes.aio
        before = {name: module for name, module in sys.modules.items() if name.startswith("kubernetes")}
        import adapter.kube.k8s
        after = {name: module for name, module in sys.modules.items() if name.startswith("kubernetes")}
        print(json.dumps([
            all(after[name] is module for name, module in before.items()),
            [
                "__getattr__" in vars(package)
                for package in (kubernetes, kubernetes.aio, kubernetes.aio.config)
            ],
            "kubernetes.dynamic" in sys.modules,
        ]))
        """
    )
    assert result == [True, [False, False, False], True]


def test_only_the_async_package_is_deferred_when_the_sync_one_was_imported() -> None:
    result = run_python(
        """
        import json, sys

        import kubernetes
        import adapter.kube.k8s
        aio = sys.modules["kubernetes.aio"]
        deferred = ["__getattr__" in vars(kubernetes), "__getattr__" in vars(aio)]
        print(json.dumps([deferred, kubernetes.aio is aio, aio.watch.__name__]))
        """
    )
    assert result == [[False, True], True, "kubernetes.aio.watch"]


# ---------------------------------------------------------------- the mechanism, on a package of ours


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A package ``deferpkg`` whose ``__init__`` records each run and can be made to fail or wait.

    The fixture's value is ``deferpkg_gate`` (a sibling module), which holds the switches:
    ``runs`` (a list the ``__init__`` appends to), ``fail`` (raise once),
    ``entered``/``release`` (events the ``__init__`` sets and then waits on, when ``wait``).
    """
    (tmp_path / "deferpkg_gate.py").write_text(
        "import threading\n"
        "runs = []\nfail = False\nwait = False\n"
        "entered = threading.Event()\nrelease = threading.Event()\n"
    )
    pkg = tmp_path / "deferpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import deferpkg_gate as gate\n"
        "gate.runs.append(1)\n"
        "if gate.wait:\n"
        "    gate.entered.set()\n"
        "    gate.release.wait(60)\n"
        "if gate.fail:\n"
        "    gate.fail = False\n"
        "    raise RuntimeError('init failed')\n"
        "from . import sub\n"
        "VALUE = 42\n"
    )
    (pkg / "sub.py").write_text("NAME = 'sub'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield importlib.import_module("deferpkg_gate")
    finally:
        for name in ("deferpkg", "deferpkg.sub", "deferpkg_gate"):
            sys.modules.pop(name, None)


def test_the_init_runs_once_on_first_access_and_submodules_import_without_it(
    gate: types.ModuleType,
) -> None:
    defer_package_init("deferpkg")
    module = sys.modules["deferpkg"]
    sub = importlib.import_module("deferpkg.sub")  # a submodule: imported, no __init__ run

    assert (sub.NAME, gate.runs, module.sub is sub) == ("sub", [], True)
    assert module.VALUE == 42
    assert (gate.runs, "__getattr__" in vars(module)) == ([1], False)
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        _ = module.missing
    assert gate.runs == [1]
    defer_package_init("deferpkg")  # already there: nothing happens
    assert sys.modules["deferpkg"] is module


def test_a_failing_init_propagates_and_runs_again_on_the_next_access(
    gate: types.ModuleType,
) -> None:
    vars(gate)["fail"] = True
    defer_package_init("deferpkg")
    module = sys.modules["deferpkg"]
    with pytest.raises(RuntimeError, match="init failed"):
        _ = module.VALUE
    assert "__getattr__" in vars(module)
    assert (module.VALUE, gate.runs) == (42, [1, 1])


def test_threads_racing_to_the_first_access_run_the_init_once(gate: types.ModuleType) -> None:
    vars(gate)["wait"] = True
    defer_package_init("deferpkg")
    module = sys.modules["deferpkg"]
    values: list[object] = []
    first = threading.Thread(target=lambda: values.append(module.VALUE))
    first.start()
    assert gate.entered.wait(60)
    second = threading.Thread(target=lambda: values.append(module.VALUE))
    second.start()
    gate.release.set()
    first.join(60)
    second.join(60)
    assert (values, gate.runs) == ([42, 42], [1])


def test_an_init_that_defines_its_own_getattr_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lazypkg").mkdir()
    (tmp_path / "lazypkg" / "__init__.py").write_text(
        "def __getattr__(name):\n    return name.upper()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        defer_package_init("lazypkg")
        module = sys.modules["lazypkg"]
        deferred_before = is_deferred("lazypkg")
        first = module.abc  # runs the __init__, which installs its own hook
        assert (deferred_before, first, is_deferred("lazypkg"), module.xyz) == (
            True,
            "ABC",
            False,
            "XYZ",
        )
    finally:
        sys.modules.pop("lazypkg", None)
