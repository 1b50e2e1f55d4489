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

from adapter.kube.k8s import defer_package_init

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
# What the adapter does call: imported at start-up, not on the first request.
USED = (
    "kubernetes.aio.client.api_client",
    "kubernetes.aio.client.configuration",
    "kubernetes.aio.client.exceptions",
    "kubernetes.aio.config.kube_config",
    "kubernetes.aio.config.incluster_config",
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


def test_serve_and_its_api_calls_load_only_the_async_client_parts_it_uses() -> None:
    result = run_python(
        f"""
        import asyncio, json, sys, tempfile
        from pathlib import Path

        import adapter.app  # everything `serve` imports

        SKIPPED, USED = {SKIPPED!r}, {USED!r}
        after_import = [m for m in SKIPPED if m in sys.modules]
        used = [m for m in USED if m in sys.modules]

        from adapter.kube.credentials import connect
        from adapter.kube.listwatch import KubeListWatch, Resource
        from adapter.kube.reviews import KubeReviews
        from tests.fakes.kube_api import FakeKubeServer
        from tests.fakes.kube_auth_api import KubeAuthState, add_auth_routes

        async def calls():
            auth = KubeAuthState(tokens={{"good": {{"username": "alice"}}}})
            auth.allow("alice")
            extension = lambda app: add_auth_routes(app, auth)
            async with FakeKubeServer(extensions=[extension]) as server:
                with tempfile.TemporaryDirectory() as tmp:
                    api_client = await connect(str(server.write_kubeconfig(Path(tmp) / "kc")))
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
            return [
                page["items"], token["status"]["user"], access["status"]["allowed"]
            ]

        answers = asyncio.run(calls())
        after_calls = [m for m in SKIPPED if m in sys.modules]
        print(json.dumps([after_import, used, answers, after_calls]))
        """
    )
    assert result == [[], list(USED), [[], {"username": "alice"}, True], []]


def test_other_code_sees_the_whole_library_after_the_shim() -> None:
    result = run_python(
        """
        import json, sys

        import adapter.kube.k8s as k8s
        umbrella, aio = sys.modules["kubernetes"], sys.modules["kubernetes.aio"]
        deferred = ["__getattr__" in vars(umbrella), "__getattr__" in vars(aio)]

        from kubernetes import client
        pod = client.V1Pod(metadata=client.V1ObjectMeta(name="p")).metadata.name
        import kubernetes
        import kubernetes.aio
        watch = kubernetes.aio.watch.Watch.__name__
        same = [
            sys.modules["kubernetes"] is umbrella,
            sys.modules["kubernetes.aio"] is aio,
            kubernetes.aio.client.ApiClient is k8s.ApiClient,
            kubernetes.config.ConfigException is not None,
        ]
        hooks_left = ["__getattr__" in vars(umbrella), "__getattr__" in vars(aio)]
        print(json.dumps([deferred, pod, watch, kubernetes.__version__, aio.__all__, same, hooks_left]))
        """
    )
    assert result == [
        [True, True],
        "p",
        "Watch",
        importlib.metadata.version("kubernetes"),
        ["client", "config", "dynamic", "leaderelection", "stream", "utils", "watch"],
        [True, True, True, True],
        [False, False],
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
            ["__getattr__" in vars(kubernetes), "__getattr__" in vars(kubernetes.aio)],
            "kubernetes.dynamic" in sys.modules,
        ]))
        """
    )
    assert result == [True, [False, False], True]


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
