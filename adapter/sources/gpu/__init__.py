"""The GPU source: per-pod GPU utilization pulled from the node collectors.

Data flow: ``discovery`` (which collectors: pods by label, or fixed URLs) ->
``puller`` (concurrent ``/snapshot`` pulls with timeouts) -> ``wire`` (strict
validation) -> ``store`` (immutable per-node values, staleness, aggregation) ->
``source`` (the pull loop, ``fetch`` and the self metrics). ``catalogue`` reads
the rules file's ``gpu`` blocks; ``discovery_from_settings`` and
``GpuSource.from_settings`` are how ``serve`` builds the source.
"""

from adapter.sources.gpu.discovery import (
    CollectorDiscovery,
    CollectorEndpoint,
    PodDiscovery,
    StaticDiscovery,
    discovery_from_settings,
)
from adapter.sources.gpu.puller import Puller, PullError, PullResult
from adapter.sources.gpu.source import GPU_UTILIZATION, GpuSource
from adapter.sources.gpu.wire import MalformedSnapshot, NodeSnapshot, parse_snapshot

__all__ = [
    "GPU_UTILIZATION",
    "CollectorDiscovery",
    "CollectorEndpoint",
    "GpuSource",
    "MalformedSnapshot",
    "NodeSnapshot",
    "PodDiscovery",
    "PullError",
    "PullResult",
    "Puller",
    "StaticDiscovery",
    "discovery_from_settings",
    "parse_snapshot",
]
