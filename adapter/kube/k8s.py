"""The one module that imports the Kubernetes client library; every other module imports from here.

What the adapter uses of ``kubernetes.aio``: ``client.configuration.Configuration``
(host, TLS, credentials, token refresh), ``client.rest.RESTClientObject`` (its
aiohttp session), ``client.exceptions.ApiException``, and the in-cluster and
kubeconfig loaders of ``config``. Requests are raw JSON by path
(``KubeClient.request``); no generated model or API class is ever used.

Three package ``__init__`` modules would load far more than that, so they are skipped:

- ``kubernetes/__init__.py`` imports the whole synchronous client (every model and
  API class), ``kubernetes.config``, ``kubernetes.dynamic`` (kubernetes-validate,
  jsonschema, referencing), ``watch``, ``stream`` (websocket), ``leaderelection``,
  ``informer`` and with them requests-oauthlib/oauthlib: about 190 modules and
  6 MiB of ``serve``'s resident memory that nothing in the adapter calls;
- ``kubernetes/aio/__init__.py`` imports ``kubernetes.aio.dynamic``,
  ``leaderelection``, ``stream``, ``utils`` and ``watch``, none of which we use;
- ``kubernetes/aio/config/__init__.py`` imports the kubeconfig loader, which
  imports the generated ``ApiClient`` and with it pydantic, dateutil and the
  models package: about 9 MiB more. Only ``--kubeconfig`` needs that loader, so
  ``load_kube_config`` imports it when called: at start-up of a ``serve`` or an
  ``explain`` given a kubeconfig, never in-cluster (the deployment) or standalone.

When this module is imported before those packages, it registers each in
``sys.modules`` as a module object made from its real spec (``__path__``,
``__file__``, ``__spec__`` set; submodules import normally) without executing its
``__init__``, then imports the submodules above, which is what the production
paths (``serve``'s pod reflector, token and access reviews, trust ConfigMap)
really run: apart from the kubeconfig loader, nothing here is imported on first
use.

Nothing changes for other code (tests, tools, a library that imports
``kubernetes`` itself): each skipped package gets a PEP 562 module
``__getattr__`` that, on the first access to any name not yet present
(``from kubernetes import client``, ``kubernetes.__version__``,
``kubernetes.aio.watch``), executes the real ``__init__`` into the same module
object, once and under a lock, removes itself, and answers the name as a normal
import would have. If that ``__init__`` raises, the error propagates and the hook
stays (the next access runs it again, as a repeated import would). A package
already in ``sys.modules``, fully imported or not, is left exactly as it is.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from collections.abc import Callable, Mapping, Sequence
from importlib.abc import Loader
from typing import Any
from urllib.parse import quote

import aiohttp

from adapter import __version__

# The packages whose ``__init__`` is deferred, parents before children.
DEFERRED_PACKAGES = ("kubernetes", "kubernetes.aio", "kubernetes.aio.config")

_HOOKS: dict[str, Callable[[str], object]] = {}  # package name -> its deferred-init hook


def _deferred_init(module: types.ModuleType, loader: Loader) -> Callable[[str], object]:
    """The PEP 562 ``__getattr__`` that runs ``module``'s real ``__init__`` on first use.

    The hook stays in place while the ``__init__`` runs, so another thread asking
    for a name meanwhile waits on the lock instead of finding neither the name nor
    the hook; the running ``__init__``'s own look-ups (``from . import client``)
    are answered "absent", so the import system imports those submodules.
    """
    lock = threading.RLock()  # re-entered only by the thread running the __init__
    running = False

    def __getattr__(name: str) -> object:
        nonlocal running
        with lock:
            if running:
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
            if module.__dict__.get("__getattr__") is __getattr__:
                running = True
                try:
                    loader.exec_module(module)
                finally:
                    running = False
                if module.__dict__.get("__getattr__") is __getattr__:
                    del module.__dict__["__getattr__"]
        return getattr(module, name)

    return __getattr__


def defer_package_init(name: str) -> None:
    """Put package ``name`` into ``sys.modules`` with its ``__init__`` deferred (see above).

    Does nothing when ``name`` is already in ``sys.modules`` or is not an ordinary
    package on disk; a subpackage's parent must already be in ``sys.modules``
    (deferred or imported), else finding it would import the parent.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)
    module.__dict__["__getattr__"] = _HOOKS[name] = _deferred_init(module, spec.loader)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def is_deferred(name: str) -> bool:
    """True while package ``name`` is registered here and its ``__init__`` has not run."""
    module = sys.modules.get(name)
    hook = _HOOKS.get(name)
    return module is not None and hook is not None and vars(module).get("__getattr__") is hook


for _package in DEFERRED_PACKAGES:
    defer_package_init(_package)

# Everything the adapter uses of the library, imported now (not on first use).
from kubernetes.aio.client.configuration import Configuration  # noqa: E402
from kubernetes.aio.client.exceptions import ApiException  # noqa: E402
from kubernetes.aio.client.rest import RESTClientObject  # noqa: E402
from kubernetes.aio.config.config_exception import ConfigException  # noqa: E402
from kubernetes.aio.config.incluster_config import load_incluster_config  # noqa: E402

USER_AGENT = f"inference-metrics-adapter/{__version__}"
"""What the API server's audit log and metrics show for every request we send."""


class KubeClient:
    """A connection to one API server; the caller owns it and must ``close()`` it.

    ``configuration`` says where and how (host, CA, client certificate, bearer
    token and its refresh hook, proxy). The transport is the library's
    ``RESTClientObject`` (one aiohttp session, its TLS context, retries).
    ``request`` does what ``ApiClient.param_serialize`` and ``call_api`` did for
    the adapter: the same URL and query encoding, the bearer token (refreshed
    first when the configuration has a hook) in ``authorization``, the body as JSON.
    """

    def __init__(self, configuration: Configuration) -> None:
        self.configuration = configuration
        self._rest = RESTClientObject(configuration)

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str | int | bool]] = (),
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        request_timeout: float | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one request to ``path`` (``/api/v1/...``); the caller reads and releases it.

        ``request_timeout`` None is the library's default (5 minutes). Raises the
        library's and aiohttp's own errors.
        """
        sent = {"User-Agent": USER_AGENT, **(headers or {})}
        token = (await self.configuration.auth_settings()).get("BearerToken")
        if token is not None and token["value"]:
            sent[token["key"]] = token["value"]
        url = self.configuration.host + path
        if query:
            url += "?" + "&".join(f"{key}={quote(_query_value(value))}" for key, value in query)
        response = await self._rest.request(  # type: ignore[no-untyped-call]
            method,
            url,
            headers=sent,
            body=dict(body) if body is not None else None,
            _request_timeout=request_timeout,
        )
        raw = response.response
        assert isinstance(raw, aiohttp.ClientResponse)  # the library's contract
        return raw

    async def close(self) -> None:
        await self._rest.close()


def _query_value(value: str | int | bool) -> str:
    """A query value as the generated client wrote it: booleans in lower case."""
    return str(value).lower() if isinstance(value, bool) else str(value)


async def load_kube_config(
    *,
    config_file: str,
    context: str | None,
    client_configuration: Configuration,
    persist_config: bool,
) -> None:
    """The library's ``load_kube_config``, imported on the first call (see above)."""
    from kubernetes.aio.config.kube_config import (  # noqa: PLC0415  (9 MiB, kubeconfig only)
        load_kube_config as load,
    )

    await load(  # type: ignore[no-untyped-call]
        config_file=config_file,
        context=context,
        client_configuration=client_configuration,
        persist_config=persist_config,
    )


__all__ = [
    "DEFERRED_PACKAGES",
    "ApiException",
    "ConfigException",
    "Configuration",
    "KubeClient",
    "defer_package_init",
    "is_deferred",
    "load_incluster_config",
    "load_kube_config",
]
