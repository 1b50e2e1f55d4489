"""Where the trust material comes from: flags, or the kube-system ConfigMap, live.

Precedence follows k8s.io/apiserver: ``--client-ca-file`` replaces the
ConfigMap's ``client-ca-file``; ``--requestheader-client-ca-file`` replaces
*all* requestheader settings of the ConfigMap with the ``--requestheader-*``
flags. The ConfigMap ``kube-system/extension-apiserver-authentication`` is
listed, then watched; every change is applied to the ``TrustState`` (and so to
the serving TLS context) without a restart: ``adapter.kube.configmap.ConfigMapWatch``
hands each version's data to ``TrustLoader.set_configmap``. Flag files are re-read
by ``TrustLoader.refresh_once()``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

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
        """Apply a ConfigMap's data (None: deleted, keep the last known); True when the
        trust changed. Raises ``ValueError`` (malformed data) or ``OSError`` (flag files)."""
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


def _pem(value: str | None) -> bytes | None:
    return value.encode("ascii") if value and value.strip() else None
