"""Which collectors to pull: the collector pods of the pod index, or a fixed URL list.

Both implement :class:`CollectorDiscovery`, so the source does not know which
mode it runs in. Discovery is read from memory on every pull round: collector
pods that appear (a new GPU node) are pulled from the next round on, and pods
that disappear are no longer pulled (their node's last values then expire at
the staleness bound like those of any node that stops answering).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from adapter.core.model import NodeName
from adapter.core.ports import PodLister
from adapter.core.selectors import Selector, parse_selector
from adapter.settings import GpuSettings

log = logging.getLogger(__name__)

__all__ = [
    "CollectorDiscovery",
    "CollectorEndpoint",
    "PodDiscovery",
    "StaticDiscovery",
    "discovery_from_settings",
]


@dataclass(frozen=True, slots=True)
class CollectorEndpoint:
    """One collector to pull.

    ``node`` is the node the collector runs on when discovery knows it (the
    collector pod's ``spec.nodeName``); it then wins over the node name the
    collector reports about itself, which defaults to its hostname and in a pod
    without ``hostNetwork`` is the pod's name. None in standalone mode.
    """

    url: str
    node: NodeName | None = None

    @property
    def snapshot_url(self) -> str:
        return self.url.rstrip("/") + "/snapshot"


class CollectorDiscovery(Protocol):
    """The collectors to pull this round, from memory (never a network call)."""

    def collectors(self) -> Sequence[CollectorEndpoint]: ...


class StaticDiscovery:
    """Standalone mode: the fixed ``--gpu-collector-url`` list, in order, without duplicates."""

    def __init__(self, urls: Iterable[str]) -> None:
        seen: dict[str, CollectorEndpoint] = {}
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"collector URL {url!r}: must start with http:// or https://")
            seen.setdefault(url.rstrip("/"), CollectorEndpoint(url.rstrip("/")))
        self._endpoints = tuple(seen.values())

    def collectors(self) -> Sequence[CollectorEndpoint]:
        return self._endpoints


class PodDiscovery:
    """In a cluster: live pods with a pod IP whose labels match ``selector``.

    The URL is ``http://<podIP>:<port>`` (IPv6 addresses bracketed). Pods that
    are live but not Ready are still pulled: a collector that is not ready
    answers 503, which is counted, and costs one cheap request.
    """

    def __init__(self, pods: PodLister, selector: str | Selector, port: int) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"collector port {port}: must be 1-65535")
        self._pods = pods
        self._selector = parse_selector(selector) if isinstance(selector, str) else selector
        self._port = port

    def collectors(self) -> Sequence[CollectorEndpoint]:
        found: dict[str, CollectorEndpoint] = {}
        for pod in self._pods.all():
            if not pod.live or not pod.pod_ip or not self._selector.matches(pod.labels):
                continue
            host = f"[{pod.pod_ip}]" if ":" in pod.pod_ip else pod.pod_ip
            url = f"http://{host}:{self._port}"
            found[url] = CollectorEndpoint(url, pod.node_name)
        return [found[url] for url in sorted(found)]


def discovery_from_settings(
    settings: GpuSettings,
    pods: PodLister,
    *,
    standalone: bool = False,
    warn_if_empty: bool = True,
) -> CollectorDiscovery:
    """``--gpu-collector-url`` given: those URLs; else collector pods by label.

    ``standalone`` (no Kubernetes API, ``--pods-file``): the URLs only, never pods by
    label, with a warning when there are none (gpu_utilization then has no values)
    unless ``warn_if_empty`` is false (no metric reads the collectors).
    Raises ValueError (a bad URL, port or selector) for the caller to report at startup.
    """
    if settings.collector_urls or standalone:
        if not settings.collector_urls and warn_if_empty:
            log.warning("no --gpu-collector-url given: gpu_utilization will have no values")
        return StaticDiscovery(settings.collector_urls)
    return PodDiscovery(pods, settings.collector_selector, settings.collector_port)
