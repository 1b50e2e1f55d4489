"""The seams between the core and the outside world, as Protocols.

Each port has a real implementation (wired in ``adapter.app``) and a fake
beside the tests. The request path only ever calls these with data already in
memory: no port method here may call a backend on the request path, with one
documented exception (``Source.fetch`` with a non-empty metric selector may run
one cached, coalesced query).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from adapter.core.model import (
    MetricName,
    MetricValue,
    Namespace,
    NodeName,
    ObjectRef,
    PodInfo,
    PodName,
    Sample,
    Target,
)

if TYPE_CHECKING:
    from adapter.core.selectors import Selector


class Clock(Protocol):
    """Wall-clock time in Unix seconds. Injected so tests control staleness."""

    def __call__(self) -> float: ...


class PodLister(Protocol):
    """Read access to the in-memory pod index.

    Implementations return live and non-live pods alike; callers filter with
    ``PodInfo.live``. ``synced`` is False until the first complete list.
    """

    @property
    def synced(self) -> bool: ...

    def get(self, namespace: Namespace, name: PodName) -> PodInfo | None: ...

    def in_namespace(self, namespace: Namespace) -> Iterable[PodInfo]: ...

    def on_node(self, node: NodeName) -> Iterable[PodInfo]: ...

    def all(self) -> Iterable[PodInfo]: ...


@runtime_checkable
class VersionedPods(Protocol):
    """A PodLister that counts its changes: enables the read cache (``adapter.core.readcache``).

    ``generation`` changes whenever anything any PodLister method returns may
    have changed (every add, update, delete or relist).
    """

    @property
    def generation(self) -> int: ...


class Source(Protocol):
    """A provider of metric values, answering from its in-memory snapshot.

    Contract:
    - ``fetch`` returns at most one Sample per target, keyed by ``target.obj``.
      A target with no data, NaN data or data older than the source's
      staleness bound is absent from the result. It is never given 0.
    - Values for an object made of several pods are aggregated by the source
      (it knows whether a mean, a sum or a merged histogram is right).
    - With an empty ``metric_selector`` no backend is called. A non-empty one
      may cost one backend query, cached briefly and shared by concurrent
      identical requests.
    - Raises ``adapter.core.errors.SourceError`` only when it cannot answer at
      all (the request then gets a generic 500). A read that needs a backend
      query (a metric selector) may instead raise ``TooManyRequests`` (429, its
      budget is full) or ``ServiceUnavailable`` (503, the backend is failing).
    """

    @property
    def name(self) -> str: ...

    async def fetch(
        self,
        metric: MetricName,
        targets: Sequence[Target],
        metric_selector: Selector,
    ) -> Mapping[ObjectRef, Sample]: ...


@runtime_checkable
class VersionedSource(Protocol):
    """A Source that says when its answers change: enables the read cache.

    Contract: while ``version`` is unchanged, ``fetch(metric, targets, EVERYTHING)``
    returns the same result for the same targets at every time ``t`` with
    ``now <= t < valid_until(metric, now)``. ``version`` changes on every
    snapshot swap and rules update; ``valid_until`` is the earliest moment a
    value of ``metric`` it holds at ``now`` goes stale (``inf`` if none will).
    """

    @property
    def version(self) -> int: ...

    def valid_until(self, metric: MetricName, now: float) -> float: ...


class Recorder(Protocol):
    """Where the resolver reports what it served and what it left out.

    Implemented by the HTTP edge with Prometheus series, so Grafana shows
    exactly what the HPA saw. Must be cheap: it runs on the request path.
    """

    def served(self, values: Sequence[MetricValue]) -> None: ...

    def omitted(self, metric: MetricName, reason: str, count: int) -> None: ...
