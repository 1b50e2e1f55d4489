"""The pods of a ``--pods-file`` (standalone mode and tests): a fixed ``PodLister``."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import yaml

from adapter.core.model import PodInfo
from adapter.kube.errors import PodFormatError, PodsFileError
from adapter.kube.podinfo import Key, pod_from_k8s
from adapter.kube.podstore import PodStore, StoredPods


class PodsFileIndex(StoredPods):
    """A fixed set of pods, synced from the start: standalone mode and tests.

    ``PodsFileIndex.load(path)`` reads a ``--pods-file``; the constructor takes
    ``PodInfo`` values directly (a ready-made ``PodLister`` for tests).
    """

    def __init__(self, pods: Iterable[PodInfo] = ()) -> None:
        super().__init__()
        store = PodStore()
        for pod in pods:
            store.put(pod)
        self._replace(store)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PodsFileIndex:
        """Raises PodsFileError naming the file and what is wrong with it."""
        return cls(load_pods_file(path))


def load_pods_file(path: str | os.PathLike[str]) -> list[PodInfo]:
    """The pods of a YAML or JSON file: a PodList (or ``kind: List``), one Pod, a
    plain list of Pods, or several YAML documents of any of those.

    A pod without a namespace is in ``default``; one without a uid gets a stable
    made-up one. Raises PodsFileError (file, reason) on anything else.
    """
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise PodsFileError(name, f"cannot read it: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise PodsFileError(name, "it is not UTF-8 text") from e
    pods: dict[Key, PodInfo] = {}
    for number, obj in enumerate(_pod_objects(name, _documents(name, text)), start=1):
        try:
            pod = pod_from_k8s(_with_file_defaults(obj))
        except PodFormatError as e:
            raise PodsFileError(name, f"pod #{number}: {e}") from e
        if pod.key in pods:
            raise PodsFileError(name, f"pod {pod.namespace}/{pod.name} appears twice")
        pods[pod.key] = pod
    return list(pods.values())


def _documents(name: str, text: str) -> list[object]:
    if text.lstrip().startswith(("{", "[")):
        with contextlib.suppress(ValueError):  # not JSON: YAML flow style, YAML decides
            return [json.loads(text)]
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as e:
        raise PodsFileError(name, f"it is neither JSON nor YAML: {e}") from e
    if not documents:
        raise PodsFileError(name, "it is empty")
    return documents


def _pod_objects(name: str, documents: list[object]) -> list[Mapping[str, Any]]:
    objects: list[Mapping[str, Any]] = []
    for document in documents:
        if isinstance(document, list):
            items: object = document
        elif isinstance(document, Mapping) and (
            "items" in document or str(document.get("kind", "")).endswith("List")
        ):
            items = document.get("items") or []
        elif isinstance(document, Mapping):
            items = [document]
        else:
            raise PodsFileError(name, "expected a Pod, a PodList or a list of Pods")
        if not isinstance(items, list):
            raise PodsFileError(name, "items is not a list")
        for item in items:
            if not isinstance(item, Mapping):
                raise PodsFileError(name, "a list item is not an object")
            if (kind := item.get("kind", "Pod")) != "Pod":
                raise PodsFileError(name, f"found a {kind}; only Pods are accepted")
            objects.append(item)
    return objects


def _with_file_defaults(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(obj.get("metadata"), Mapping):
        return obj  # pod_from_k8s says what is missing
    meta = dict(obj["metadata"])
    meta.setdefault("namespace", "default")
    if not meta.get("uid") and isinstance(meta.get("name"), str):
        made_up = uuid.uuid5(uuid.NAMESPACE_URL, f"pods-file:{meta['namespace']}/{meta['name']}")
        meta["uid"] = str(made_up)
    return {**obj, "metadata": meta}


if TYPE_CHECKING:  # both satisfy the port; mypy checks it here rather than at the wiring
    from adapter.core.ports import PodLister
    from adapter.kube.podindex import PodIndex

    def _pod_listers(index: PodIndex, file_index: PodsFileIndex) -> tuple[PodLister, PodLister]:
        return index, file_index
