"""A Pod object as the API server serves it (JSON) -> ``PodInfo``.

This is the one place that knows the Pod schema.

``pod_from_k8s`` reads the fields the adapter uses and nothing else; it is
shared by the live index (``adapter.kube.podindex``) and the pods file
(``adapter.kube.podsfile``), so both see a pod the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from sys import intern
from typing import Any

from adapter.core.model import Namespace, NodeName, OwnerRef, PodInfo, PodName, PodUID
from adapter.kube.errors import PodFormatError

Key = tuple[Namespace, PodName]
"""A pod's identity in the index: (namespace, name)."""


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
