"""Prometheus exposition: a custom ``Collector`` building every family fresh on each scrape.

Nothing is registered per label set, so a pod that leaves the window leaves ``/metrics`` on the
next scrape. Every series carries ``node``; in ``--simulate`` mode every series also carries
``simulated="true"``. Series (window means unless said otherwise):

    gpu_collector_up{node}                                                    1 while serving
    gpu_collector_ready{node}                                                 1 after a full tick
    gpu_collector_info{node,version}                                          1
    gpu_collector_window_seconds{node}
    gpu_collector_samples_total{node}                                         counter
    gpu_collector_sample_duration_seconds{node}                               last tick
    gpu_collector_last_sample_timestamp_seconds{node}
    gpu_collector_unattributed_processes{node}                                last tick
    gpu_collector_nvml_errors_total{node,gpu,kind}                            counter
    gpu_collector_podresources_errors_total{node}                             counter
    gpu_collector_gpu_status{node,gpu,uuid,status}                            state set: 0 or 1
    gpu_collector_gpu_utilization_percent{node,gpu,uuid}                      absent unless ok
    gpu_collector_gpu_memory_used_bytes{node,gpu,uuid}
    gpu_collector_gpu_memory_total_bytes{node,gpu,uuid}
    gpu_collector_mig_utilization_supported{node,gpu,parent_uuid,mig_index,uuid}   0 or 1
    gpu_collector_mig_utilization_percent{node,gpu,parent_uuid,mig_index,uuid}     GPM SM util
    gpu_collector_mig_memory_used_bytes{node,gpu,parent_uuid,mig_index,uuid}
    gpu_collector_mig_memory_total_bytes{node,gpu,parent_uuid,mig_index,uuid}
    gpu_collector_pod_gpu_utilization_percent{node,namespace,pod,container}   mean over its GPUs
    gpu_collector_pod_gpu_device_utilization_percent{node,namespace,pod,container,gpu,uuid}
    gpu_collector_pod_gpu_memory_used_bytes{node,namespace,pod,container}     latest
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collectors.gpu.sampler import ShareView, Snapshot
from collectors.gpu.wire import device_means

VERSION = "0.1.0"
GPU_LABELS = ("gpu", "uuid")
MIG_LABELS = ("gpu", "parent_uuid", "mig_index", "uuid")
POD_LABELS = ("namespace", "pod", "container")


class _Families:
    """Families sharing the constant labels (node, and simulated when simulating)."""

    def __init__(self, node: str, simulated: bool) -> None:
        self._const = {"node": node} | ({"simulated": "true"} if simulated else {})
        self.all: list[Metric] = []

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> _Family:
        family = _Family(GaugeMetricFamily(name, doc, labels=[*self._const, *labels]), self._const)
        self.all.append(family.metric)
        return family

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> _Family:
        family = _Family(
            CounterMetricFamily(name, doc, labels=[*self._const, *labels]), self._const
        )
        self.all.append(family.metric)
        return family


class _Family:
    def __init__(self, metric: GaugeMetricFamily | CounterMetricFamily, const: dict[str, str]):
        self.metric = metric
        self._const = list(const.values())

    def add(self, value: float, *labels: str) -> None:
        self.metric.add_metric([*self._const, *labels], value)


class GpuCollector(Collector):
    """Renders ``snapshot()`` (None while NVML is unavailable in not-ready mode)."""

    def __init__(self, node: str, simulated: bool, snapshot: Callable[[], Snapshot | None]) -> None:
        self._node = node
        self._simulated = simulated
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        snapshot = self._snapshot()
        families = _Families(self._node, self._simulated)
        families.gauge("gpu_collector_up", "1 while the collector serves.").add(1)
        families.gauge("gpu_collector_info", "Collector build information.", ["version"]).add(
            1, VERSION
        )
        ready = families.gauge("gpu_collector_ready", "1 once a complete sample has been taken.")
        ready.add(1 if snapshot is not None and snapshot.ready else 0)
        if snapshot is not None:
            _node_series(families, snapshot)
            _gpu_series(families, snapshot)
            _pod_series(families, snapshot.shares)
        return families.all


NVML_ERROR_KINDS = ("gpu_lost", "not_supported", "unknown")
GPU_STATUSES = ("ok", "unsupported", "lost", "error")


def _node_series(families: _Families, snapshot: Snapshot) -> None:
    families.gauge("gpu_collector_window_seconds", "Averaging window.").add(snapshot.window_s)
    families.counter("gpu_collector_samples", "Completed sampling ticks.").add(
        snapshot.samples_total
    )
    if snapshot.sample_duration_s is not None:
        families.gauge("gpu_collector_sample_duration_seconds", "Duration of the last tick.").add(
            snapshot.sample_duration_s
        )
    if snapshot.sampled_at is not None:
        families.gauge(
            "gpu_collector_last_sample_timestamp_seconds", "Unix time of the last tick."
        ).add(snapshot.sampled_at)
    families.gauge(
        "gpu_collector_unattributed_processes",
        "Processes on shared GPUs in pods the pod lookup could not name (last tick).",
    ).add(snapshot.unattributed_pids)
    nvml = families.counter("gpu_collector_nvml_errors", "NVML call failures.", ["gpu", "kind"])
    kubelet = families.counter(
        "gpu_collector_podresources_errors", "Failed kubelet PodResources List calls."
    )
    # Every physical GPU gets every error kind from the start, at 0: rate() and alerts
    # then see a counter that exists before its first increment.
    nvml_counts: dict[tuple[str, str], int] = {
        (str(view.state.index), kind): 0
        for view in snapshot.gpus
        if not view.state.mig
        for kind in NVML_ERROR_KINDS
    }
    kubelet_total = 0
    for (gpu, kind), count in snapshot.errors.items():
        if kind == "podresources":
            kubelet_total += count
        elif kind != "internal":
            nvml_counts[(gpu, kind)] = count
    for (gpu, kind), count in sorted(nvml_counts.items()):
        nvml.add(count, gpu, kind)
    kubelet.add(kubelet_total)


def _gpu_series(families: _Families, snapshot: Snapshot) -> None:
    status = families.gauge(
        "gpu_collector_gpu_status",
        "GPU state set: 1 for the current state (ok, unsupported, lost, error), 0 for the others.",
        [*GPU_LABELS, "status"],
    )
    util = families.gauge(
        "gpu_collector_gpu_utilization_percent", "GPU utilization, window mean.", GPU_LABELS
    )
    used = families.gauge("gpu_collector_gpu_memory_used_bytes", "GPU memory used.", GPU_LABELS)
    total = families.gauge("gpu_collector_gpu_memory_total_bytes", "GPU memory.", GPU_LABELS)
    mig_supported = families.gauge(
        "gpu_collector_mig_utilization_supported",
        "1 where the MIG device reports SM utilization (GPM), else 0.",
        MIG_LABELS,
    )
    mig_util = families.gauge(
        "gpu_collector_mig_utilization_percent",
        "MIG SM utilization (GPM), window mean.",
        MIG_LABELS,
    )
    mig_used = families.gauge("gpu_collector_mig_memory_used_bytes", "MIG memory used.", MIG_LABELS)
    mig_total = families.gauge("gpu_collector_mig_memory_total_bytes", "MIG memory.", MIG_LABELS)
    for view in snapshot.gpus:
        state = view.state
        labels: tuple[str, ...]
        if state.mig:
            labels = (str(state.index), state.parent_uuid or "", str(state.mig_index), state.uuid)
            mig_supported.add(0 if state.status == "unsupported" else 1, *labels)
            targets = (mig_util, mig_used, mig_total)
        else:
            labels = (str(state.index), state.uuid)
            for name in GPU_STATUSES:  # a state set: every state present, 1 for the current one
                status.add(1 if name == state.status else 0, *labels, name)
            targets = (util, used, total)
        values = (view.utilization_percent, state.memory_used_bytes, state.memory_total_bytes)
        for family, value in zip(targets, values, strict=True):
            if value is not None:
                family.add(value, *labels)


def _pod_series(families: _Families, shares: Sequence[ShareView]) -> None:
    pod_util = families.gauge(
        "gpu_collector_pod_gpu_utilization_percent",
        "Container GPU utilization, window mean, averaged over its GPUs.",
        POD_LABELS,
    )
    device_util = families.gauge(
        "gpu_collector_pod_gpu_device_utilization_percent",
        "Container utilization of one GPU or MIG device, window mean.",
        [*POD_LABELS, *GPU_LABELS],
    )
    memory = families.gauge(
        "gpu_collector_pod_gpu_memory_used_bytes", "Container GPU memory used.", POD_LABELS
    )
    for labels, views in _by_container(shares):
        per_device = device_means(views)
        pod_util.add(sum(per_device.values()) / len(per_device), *labels)
        known = [v.share.memory_used_bytes for v in views if v.share.memory_used_bytes is not None]
        if known:
            memory.add(sum(known), *labels)
        for view in views:
            device_util.add(
                view.utilization_percent, *labels, str(view.share.gpu_index), view.share.device
            )


def _by_container(
    shares: Sequence[ShareView],
) -> Iterator[tuple[tuple[str, str, str], list[ShareView]]]:
    groups: dict[tuple[str, str, str], list[ShareView]] = {}
    for view in shares:
        key = (view.share.namespace, view.share.pod, view.share.container)
        groups.setdefault(key, []).append(view)
    return iter(groups.items())
