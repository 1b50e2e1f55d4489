"""Which collectors are pulled: collector pods from the pod index, or a fixed URL list."""

import logging
from collections.abc import Iterable

import pytest

from adapter.core.model import Namespace, NodeName, PodInfo, PodName
from adapter.core.selectors import SelectorError
from adapter.kube.podsfile import PodsFileIndex
from adapter.settings import GpuSettings
from adapter.sources.gpu.discovery import (
    CollectorEndpoint,
    PodDiscovery,
    StaticDiscovery,
    discovery_from_settings,
)
from tests.sources.gpu.helpers import pod

COLLECTOR = {"app.kubernetes.io/name": "gpu-collector"}
SELECTOR = "app.kubernetes.io/name=gpu-collector"


class SwappablePods:
    """A PodLister whose contents a test replaces, as the watch-fed index changes."""

    def __init__(self, pods: Iterable[PodInfo] = ()) -> None:
        self.index = PodsFileIndex(pods)

    def set(self, pods: Iterable[PodInfo]) -> None:
        self.index = PodsFileIndex(pods)

    @property
    def synced(self) -> bool:
        return self.index.synced

    def get(self, namespace: Namespace, name: PodName) -> PodInfo | None:
        return self.index.get(namespace, name)

    def in_namespace(self, namespace: Namespace) -> tuple[PodInfo, ...]:
        return self.index.in_namespace(namespace)

    def on_node(self, node: NodeName) -> tuple[PodInfo, ...]:
        return self.index.on_node(node)

    def all(self) -> tuple[PodInfo, ...]:
        return self.index.all()


def test_static_urls_in_order_without_duplicates() -> None:
    d = StaticDiscovery(["http://b:9400/", "http://a:9400", "http://b:9400"])
    assert list(d.collectors()) == [
        CollectorEndpoint("http://b:9400"),
        CollectorEndpoint("http://a:9400"),
    ]
    assert d.collectors()[0].snapshot_url == "http://b:9400/snapshot"


def test_static_urls_need_a_scheme() -> None:
    with pytest.raises(ValueError, match="must start with http"):
        StaticDiscovery(["gpu-node-1:9400"])


def test_collector_pods_matching_the_selector_with_an_ip() -> None:
    pods = PodsFileIndex(
        [
            pod("c1", node="n1", labels=COLLECTOR, ip="10.0.1.5"),
            pod("c2", node="n2", labels=COLLECTOR, ip="fd00::7"),
            pod("pending", node="n3", labels=COLLECTOR, ip=None),
            pod("done", node="n4", labels=COLLECTOR, ip="10.0.4.5", phase="Succeeded"),
            pod("web", node="n1", labels={"app": "web"}, ip="10.0.1.6"),
        ]
    )
    assert list(PodDiscovery(pods, SELECTOR, 9400).collectors()) == [
        CollectorEndpoint("http://10.0.1.5:9400", NodeName("n1")),
        CollectorEndpoint("http://[fd00::7]:9400", NodeName("n2")),
    ]


def test_collector_pods_appearing_and_disappearing() -> None:
    pods = SwappablePods([pod("c1", node="n1", labels=COLLECTOR, ip="10.0.1.5")])
    discovery = PodDiscovery(pods, SELECTOR, 9400)
    assert [e.node for e in discovery.collectors()] == ["n1"]
    pods.set(
        [
            pod("c1", node="n1", labels=COLLECTOR, ip="10.0.1.5"),
            pod("c2", node="n2", labels=COLLECTOR, ip="10.0.2.5"),
        ]
    )
    assert [e.node for e in discovery.collectors()] == ["n1", "n2"]
    pods.set([pod("c2", node="n2", labels=COLLECTOR, ip="10.0.2.5")])
    assert [e.url for e in discovery.collectors()] == ["http://10.0.2.5:9400"]
    pods.set([])
    assert list(discovery.collectors()) == []


def test_set_based_selectors() -> None:
    pods = PodsFileIndex(
        [
            pod("c1", labels={"app": "gpu-collector", "tier": "a"}, ip="10.0.0.1"),
            pod("c2", node="n2", labels={"app": "gpu-collector", "tier": "b"}, ip="10.0.0.2"),
        ]
    )
    found = PodDiscovery(pods, "app=gpu-collector,tier notin (b)", 9400).collectors()
    assert [e.url for e in found] == ["http://10.0.0.1:9400"]


def test_bad_selector_or_port() -> None:
    with pytest.raises(SelectorError):
        PodDiscovery(PodsFileIndex(), "app in ()", 9400)
    with pytest.raises(ValueError, match="port"):
        PodDiscovery(PodsFileIndex(), SELECTOR, 0)


def test_from_settings_picks_the_mode() -> None:
    index = PodsFileIndex([pod("c1", labels=COLLECTOR, ip="10.0.0.1")])
    standalone = discovery_from_settings(GpuSettings(collector_urls=("http://x:1",)), index)
    assert [e.url for e in standalone.collectors()] == ["http://x:1"]
    cluster = discovery_from_settings(GpuSettings(collector_port=9500), index)
    assert [e.url for e in cluster.collectors()] == ["http://10.0.0.1:9500"]


def test_standalone_pulls_only_the_given_urls(caplog: pytest.LogCaptureFixture) -> None:
    """``--pods-file`` mode: collector pods in the file are not discovered by label (the
    README: ``--gpu-collector-url`` in standalone mode, the selector in a cluster)."""
    index = PodsFileIndex([pod("c1", labels=COLLECTOR, ip="10.0.0.1")])
    given = discovery_from_settings(
        GpuSettings(collector_urls=("http://x:1",)), index, standalone=True
    )
    assert [e.url for e in given.collectors()] == ["http://x:1"]
    assert caplog.records == []

    with caplog.at_level(logging.WARNING, logger="adapter.sources.gpu.discovery"):
        none = discovery_from_settings(GpuSettings(), index, standalone=True)
    assert isinstance(none, StaticDiscovery)
    assert list(none.collectors()) == []
    assert [r.getMessage() for r in caplog.records] == [
        "no --gpu-collector-url given: gpu_utilization will have no values"
    ]
