"""The one module that imports the Kubernetes client library; every other module imports from here.

We use only ``kubernetes.aio.client`` (``ApiClient``, ``Configuration``,
``ApiException``; requests go through ``param_serialize``/``call_api``, never a
generated model) and ``kubernetes.aio.config`` (kubeconfig and in-cluster
loading, ``ConfigException``). Importing any of them the ordinary way first
executes two umbrella package ``__init__`` modules that load far more:

- ``kubernetes/__init__.py`` imports the whole synchronous client (every model and
  API class), ``kubernetes.config``, ``kubernetes.dynamic`` (kubernetes-validate,
  jsonschema, referencing), ``watch``, ``stream`` (websocket), ``leaderelection``,
  ``informer`` and with them requests-oauthlib/oauthlib: about 190 modules and
  7 MiB of ``serve``'s resident memory (the import peak drops from 72.5 to 65 MiB)
  that nothing in the adapter ever calls;
- ``kubernetes/aio/__init__.py`` imports ``kubernetes.aio.dynamic``,
  ``leaderelection``, ``stream``, ``utils`` and ``watch``, none of which we use.

So, when this module is imported before either package, it registers both in
``sys.modules`` as module objects made from their real specs (``__path__``,
``__file__``, ``__spec__`` set; submodules import normally) without executing
their ``__init__``, then imports the subpackages above, which are what the
production paths (``serve``'s pod reflector, token and access reviews, trust
ConfigMap; ``explain``) really use. It is not lazy loading: everything we call
is imported here, at start-up.

Nothing changes for other code (tests, tools, a library that imports
``kubernetes`` itself): each skipped package gets a PEP 562 module
``__getattr__`` that, on the first access to any name not yet present
(``from kubernetes import client``, ``kubernetes.__version__``,
``kubernetes.aio.watch``), executes the real ``__init__`` into the same module
object, once and under a lock, removes itself, and answers the name as a normal
import would have. If that ``__init__`` raises, the error propagates and the hook
stays (the next access runs it again, as a repeated import would).
When ``kubernetes`` (or ``kubernetes.aio``) is already in ``sys.modules``, fully
imported or not, it is left exactly as it is.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from collections.abc import Callable
from importlib.abc import Loader

# The umbrella packages whose ``__init__`` is deferred, parents before children.
DEFERRED_PACKAGES = ("kubernetes", "kubernetes.aio")


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
    module.__dict__["__getattr__"] = _deferred_init(module, spec.loader)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


for _package in DEFERRED_PACKAGES:
    defer_package_init(_package)

# Everything the adapter uses of the library, imported now (not on first use).
from kubernetes.aio.client import ApiClient, Configuration  # noqa: E402
from kubernetes.aio.client.exceptions import ApiException  # noqa: E402
from kubernetes.aio.config import load_incluster_config, load_kube_config  # noqa: E402
from kubernetes.aio.config.config_exception import ConfigException  # noqa: E402

__all__ = [
    "DEFERRED_PACKAGES",
    "ApiClient",
    "ApiException",
    "ConfigException",
    "Configuration",
    "defer_package_init",
    "load_incluster_config",
    "load_kube_config",
]
