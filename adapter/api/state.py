"""Typed application and request state (``web.AppKey``/``web.RequestKey``: no string keys)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from adapter.api.telemetry import Telemetry
from adapter.core.catalogue import Catalogue
from adapter.core.explain import Explainer
from adapter.core.resolver import Resolver

# A readiness check: (name, ok). Readiness never depends on a metric backend.
ReadinessCheck = Callable[[], tuple[str, bool]]

RESOLVER = web.AppKey("resolver", Resolver)
EXPLAINER = web.AppKey("explainer", Explainer)
CATALOGUE: web.AppKey[Callable[[], Catalogue]] = web.AppKey("catalogue")
READINESS: web.AppKey[list[ReadinessCheck]] = web.AppKey("readiness")
REGISTRY = web.AppKey("registry", CollectorRegistry)
TELEMETRY = web.AppKey("telemetry", Telemetry)

# The low-cardinality route label of the current request, set by handlers.
ROUTE = web.RequestKey("route", str)
