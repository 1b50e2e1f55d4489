"""A fleet under an HPA, sync by sync, through ``adapter.hpa``'s arithmetic.

The model:

- The input is, per metric and per time step, the fleet's **total** load
  (``mode="total"``, e.g. ``sum(inference_queue_depth)``): it spreads evenly
  over the pods that are ready, so each ready pod reports ``total / ready``; or
  the value every ready pod reports as is (``mode="per-pod"``, for signals that
  do not shrink with more pods). Object metrics take the value as the object's.
- A step without a value (a gap, NaN) serves nothing for that metric: the HPA
  then reports it failed, and does not scale on it.
- Every ``sync_period`` seconds (from the first step) the HPA syncs: pods not
  yet ready are Pending (unready to the HPA; no value), ready pods report their
  value; the calculator, the max over metrics and the controller's
  normalization (stabilization windows, policies, min/max) give the new count.
- New pods become ready ``pod_startup`` seconds after the sync that made them;
  on a scale-down the pods not yet ready go first, then the newest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from adapter.hpa.calculator import (
    MetricError,
    PodState,
    object_average_replicas,
    object_value_replicas,
    pods_metric_replicas,
)
from adapter.hpa.controller import (
    DEFAULT_DOWNSCALE_STABILIZATION,
    DEFAULT_SYNC_PERIOD,
    Controller,
    Decision,
    Proposal,
    combine_proposals,
)
from adapter.hpa.spec import HPASpec, MetricSpec, MetricType, TargetType

Mode = Literal["total", "per-pod"]


@dataclass(frozen=True, slots=True)
class Point:
    """One time step: Unix seconds, and the input value per metric (absent or NaN: a gap)."""

    time: float
    values: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Settings:
    pod_startup: float = 0.0
    sync_period: float = DEFAULT_SYNC_PERIOD
    initial_replicas: int | None = None
    """Replicas (all ready) at the first step; default the HPA's minReplicas."""
    mode: Mode = "total"
    downscale_stabilization: float = DEFAULT_DOWNSCALE_STABILIZATION


@dataclass(frozen=True, slots=True)
class Row:
    """The state after one time step (after the sync, when the step had one)."""

    time: float
    metric: str
    load: float | None
    """The input value of this metric at this step."""
    per_pod: float | None
    """What each ready pod reports (what the HPA averages)."""
    target: float
    desired: int
    """The desired count of the last sync."""
    replicas: int
    ready: int
    synced: bool


@dataclass
class _Pod:
    name: str
    ready_at: float


@dataclass
class Simulation:
    spec: HPASpec
    settings: Settings = field(default_factory=Settings)

    def run(self, points: Sequence[Point]) -> list[Row]:
        """The rows of every step, one per served metric (Pods and Object metrics)."""
        metrics = [m for m in self.spec.metrics if m.served_kind]
        if not metrics:
            raise ValueError("the HPA has no Pods or Object metric with a value target")
        if not points:
            return []
        controller = Controller(
            self.spec, downscale_stabilization=self.settings.downscale_stabilization
        )
        start = points[0].time
        initial = self.settings.initial_replicas or self.spec.min_replicas
        pods = [_Pod(f"pod-{i}", start) for i in range(initial)]
        serial = initial
        next_sync = start
        desired = initial
        rows: list[Row] = []
        for point in points:
            synced = point.time >= next_sync
            if synced:
                while next_sync <= point.time:
                    next_sync += self.settings.sync_period
                decision = self._sync(controller, metrics, pods, point)
                desired = decision.desired
                serial = _resize(pods, decision.desired, point.time, self.settings, serial)
            ready = sum(1 for pod in pods if pod.ready_at <= point.time)
            for metric in metrics:
                load = _value(point, metric.name)
                rows.append(
                    Row(
                        time=point.time,
                        metric=metric.name,
                        load=load,
                        per_pod=self._per_pod(metric, load, ready),
                        target=(metric.target_milli or 0) / 1000,
                        desired=desired,
                        replicas=len(pods),
                        ready=ready,
                        synced=synced,
                    )
                )
        return rows

    def _per_pod(self, metric: MetricSpec, load: float | None, ready: int) -> float | None:
        if load is None:
            return None
        if metric.type is MetricType.OBJECT or self.settings.mode == "per-pod":
            return load
        return load / ready if ready else None

    def _sync(
        self, controller: Controller, metrics: Sequence[MetricSpec], pods: list[_Pod], point: Point
    ) -> Decision:
        now = point.time
        states = [
            PodState(p.name, "Running" if p.ready_at <= now else "Pending", p.ready_at <= now)
            for p in pods
        ]
        current = len(pods)
        proposals = []
        for metric in metrics:
            try:
                replicas = self._propose(metric, _value(point, metric.name), current, states)
                proposals.append(Proposal(metric.name, replicas))
            except MetricError as e:
                proposals.append(Proposal(metric.name, error=str(e)))
        return controller.reconcile(current, combine_proposals(proposals, current), now)

    def _propose(
        self, metric: MetricSpec, load: float | None, current: int, states: list[PodState]
    ) -> int:
        """One metric's proposal; raises MetricError as the controller's metric would fail."""
        assert metric.target_milli is not None
        if load is None:
            raise MetricError("no metrics returned from custom metrics API")
        if metric.type is MetricType.PODS:
            ready = [s.name for s in states if s.ready]
            per_pod = self._per_pod(metric, load, len(ready))
            values = {} if per_pod is None else dict.fromkeys(ready, math.ceil(per_pod * 1000))
            return pods_metric_replicas(current, metric.target_milli, values, states).replicas
        milli = math.ceil(load * 1000)
        if metric.target_type is TargetType.VALUE:
            return object_value_replicas(current, metric.target_milli, milli, states).replicas
        return object_average_replicas(current, metric.target_milli, milli).replicas


def _value(point: Point, metric: str) -> float | None:
    value = point.values.get(metric)
    if value is None or not math.isfinite(value):
        return None
    return value


def _resize(pods: list[_Pod], desired: int, now: float, settings: Settings, serial: int) -> int:
    """Add or remove pods as the ReplicaSet would; returns the next pod serial."""
    while len(pods) < desired:
        pods.append(_Pod(f"pod-{serial}", now + settings.pod_startup))
        serial += 1
    if len(pods) > desired:
        # Unready pods go first, then the newest (the ReplicaSet's deletion order, simplified).
        pods.sort(key=lambda p: (p.ready_at > now, p.ready_at, p.name))
        del pods[desired:]
    return serial
