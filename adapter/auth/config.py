"""Where the trust material comes from: flags, or the kube-system ConfigMap, live.

Precedence follows k8s.io/apiserver: ``--client-ca-file`` replaces the
ConfigMap's ``client-ca-file``; ``--requestheader-client-ca-file`` replaces
*all* requestheader settings of the ConfigMap with the ``--requestheader-*``
flags. The ConfigMap ``kube-system/extension-apiserver-authentication`` is
listed, then watched; every change is applied to the ``TrustState`` (and so to
the serving TLS context) without a restart. Flag files are re-read by
``TrustLoader.refresh_once()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from adapter.auth.errors import KubeAuthError
from adapter.auth.trust import RequestHeaderConfig, TrustConfig, TrustState
from adapter.settings import AuthSettings

log = logging.getLogger(__name__)

_LIST_KEYS = {
    "requestheader-allowed-names": "allowed_names",
    "requestheader-username-headers": "username_headers",
    "requestheader-group-headers": "group_headers",
    "requestheader-extra-headers-prefix": "extra_headers_prefixes",
    "requestheader-uid-headers": "uid_headers",
}


def trust_from_configmap(data: Mapping[str, str]) -> TrustConfig:
    """The ConfigMap's ``data``; raises ``ValueError`` for a malformed JSON list."""
    lists: dict[str, tuple[str, ...]] = {}
    for key, attribute in _LIST_KEYS.items():
        raw = data.get(key)
        if raw is None or raw.strip() in {"", "null"}:
            continue
        values = json.loads(raw)
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"ConfigMap key {key} is not a JSON list of strings")
        lists[attribute] = tuple(values)
    requestheader = RequestHeaderConfig(**lists)
    return TrustConfig(
        client_ca_pem=_pem(data.get("client-ca-file")),
        requestheader_ca_pem=_pem(data.get("requestheader-client-ca-file")),
        requestheader=requestheader,
    )


class TrustLoader:
    """Composes flag files (first) with the last ConfigMap contents and applies them."""

    def __init__(self, settings: AuthSettings, state: TrustState) -> None:
        self._settings = settings
        self._state = state
        self._configmap = TrustConfig()

    def set_configmap(self, data: Mapping[str, str] | None) -> bool:
        """Apply a ConfigMap's data (None: deleted, keep the last known)."""
        if data is None:
            log.warning("ConfigMap %s/%s is absent: keeping the last trust", *self._where())
            return False
        self._configmap = trust_from_configmap(data)
        return self.refresh_once()

    def refresh_once(self) -> bool:
        """Re-read flag files and apply; True when the trust changed. Raises
        ``ValueError``/``OSError`` on unreadable material (the old trust stays)."""
        return self._state.apply(self.compose())

    def compose(self) -> TrustConfig:
        s, cm = self._settings, self._configmap
        client_ca = s.client_ca_file.read_bytes() if s.client_ca_file else cm.client_ca_pem
        if s.requestheader_client_ca_file is None:
            return TrustConfig(client_ca, cm.requestheader_ca_pem, cm.requestheader)
        requestheader = RequestHeaderConfig(
            allowed_names=s.requestheader_allowed_names,
            username_headers=s.requestheader_username_headers,
            group_headers=s.requestheader_group_headers,
            extra_headers_prefixes=s.requestheader_extra_headers_prefix,
            uid_headers=s.requestheader_uid_headers,
        )
        return TrustConfig(client_ca, s.requestheader_client_ca_file.read_bytes(), requestheader)

    def _where(self) -> tuple[str, str]:
        return self._settings.configmap_namespace, self._settings.configmap_name


class ConfigMapAPI(Protocol):
    async def list_configmap(
        self, namespace: str, name: str
    ) -> tuple[Mapping[str, Any] | None, str]: ...

    def watch_configmap(
        self, namespace: str, name: str, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[Mapping[str, Any]]: ...


class ConfigMapWatcher:
    """List, then watch the trust ConfigMap; ``refresh_once``/``watch_once`` are the steps."""

    def __init__(
        self,
        api: ConfigMapAPI,
        loader: TrustLoader,
        settings: AuthSettings,
        *,
        watch_timeout_s: int = 300,
        backoff_s: Callable[[int], float] | None = None,
    ) -> None:
        self._api = api
        self._loader = loader
        self._namespace, self._name = settings.configmap_namespace, settings.configmap_name
        self._watch_timeout = watch_timeout_s
        self._backoff = backoff_s or _backoff
        self.resource_version = ""
        self.synced = asyncio.Event()

    async def refresh_once(self) -> bool:
        """List the ConfigMap and apply it. Raises ``KubeAuthError`` or ``ValueError``."""
        obj, version = await self._api.list_configmap(self._namespace, self._name)
        changed = self._loader.set_configmap(_data(obj) if obj is not None else None)
        self.resource_version = version
        self.synced.set()
        return changed

    async def watch_once(self) -> None:
        """Follow one watch stream to its end; a 410 Gone (or any ERROR) forces a relist."""
        async for event in self._api.watch_configmap(
            self._namespace, self._name, self.resource_version, self._watch_timeout
        ):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                log.info(
                    "ConfigMap watch ended (%s): relisting", obj.get("reason") or obj.get("code")
                )
                self.resource_version = ""
                return
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if kind in {"ADDED", "MODIFIED"}:
                self._loader.set_configmap(_data(obj))
            elif kind == "DELETED":
                self._loader.set_configmap(None)
            if version:
                self.resource_version = str(version)

    async def run(self) -> None:
        """Forever: relist when needed, watch; errors are logged and retried with backoff."""
        failures = 0
        while True:
            try:
                if not self.resource_version:
                    await self.refresh_once()
                await self.watch_once()
                failures = 0
            except (KubeAuthError, ValueError, OSError) as e:
                log.warning("trust ConfigMap %s/%s: %s", self._namespace, self._name, e)
                self.resource_version = ""
                await asyncio.sleep(self._backoff(failures))
                failures += 1

    @contextlib.asynccontextmanager
    async def running(self, *, tolerate_failure: bool = False) -> AsyncIterator[None]:
        """The first list (fatal unless ``tolerate_failure``), then the watch in a named task."""
        try:
            await self.refresh_once()
        except (KubeAuthError, ValueError, OSError) as e:
            if not tolerate_failure:
                raise
            log.error("cannot read %s/%s, continuing: %s", self._namespace, self._name, e)
        task = asyncio.create_task(self.run(), name="trust-configmap-watch")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _backoff(failures: int) -> float:
    """Exponential, capped at 30 s, with jitter (not a secret: plain random is fine)."""
    return min(30.0, 0.5 * 2.0**failures) * random.uniform(0.8, 1.2)  # noqa: S311


def _data(obj: Mapping[str, Any]) -> Mapping[str, str]:
    data = obj.get("data") or {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, Mapping) else {}


def _pem(value: str | None) -> bytes | None:
    return value.encode("ascii") if value and value.strip() else None
