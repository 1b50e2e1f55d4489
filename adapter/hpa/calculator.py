"""``replica_calculator.go`` (Kubernetes v1.28) for Pods and Object metrics, case for case.

All values are milli-units (ints), as the controller reads ``MilliValue()``.
Each function returns what the controller computes plus the intermediate
numbers and the rule that decided, so ``explain`` can show its work.

Pods metric (``GetMetricReplicas`` -> ``calcPlainMetricReplicas``):

1. The pods the scale target's selector matches, as the controller's pod lister
   sees them. None: error "no pods returned by selector ...".
2. ``groupPods``: a pod being deleted or Failed is *ignored*; a Pending pod is
   *unready*; a pod without a value is *missing*; every other pod is *ready*
   (for custom metrics readiness is not checked: a Running-but-not-Ready pod
   with a value counts). Values of ignored and unready pods are dropped; values
   for pods the lister does not know stay in (they count in the average).
3. No value left: error "did not receive metrics for targeted pods ...".
4. ``usage = sum // count`` (int64 division), ``ratio = usage / target``.
5. No missing pods and no scale-up with unready pods: within tolerance keep the
   current count, else ``ceil(ratio * readyPods)``.
6. Otherwise missing pods count as the target on a scale-down and 0 on a
   scale-up, unready pods as 0 on a scale-up; the ratio is recomputed. If it is
   within tolerance or flips direction, the current count is kept; if
   ``ceil(newRatio * count)`` moves against the direction, too; else that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

DEFAULT_TOLERANCE = 0.1

# Why the calculator kept the current count (None: it computed a new one).
HELD_TOLERANCE = "within_tolerance"
HELD_DIRECTION = "rebalanced_ratio_flips_direction"
HELD_COUNT_DIRECTION = "rebalanced_count_against_direction"


class MetricError(Exception):
    """The controller could not compute a proposal from this metric (upstream's message)."""


NO_METRICS = "no metrics returned from custom metrics API"
NO_PODS = "no pods returned by selector while calculating replica count"
NO_TARGETED = "did not receive metrics for targeted pods (pods might be unready)"


@dataclass(frozen=True, slots=True)
class PodState:
    """A pod as the controller's lister sees it."""

    name: str
    phase: str = "Running"
    ready: bool = True
    deleting: bool = False


@dataclass(frozen=True, slots=True)
class PodGroups:
    ready_count: int
    unready: frozenset[str]
    missing: frozenset[str]
    ignored: frozenset[str]


def group_pods(pods: Iterable[PodState], metrics: Mapping[str, int]) -> PodGroups:
    """``groupPods`` for a non-CPU metric."""
    ready = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.add(pod.name)
        elif pod.phase == "Pending":
            unready.add(pod.name)
        elif pod.name not in metrics:
            missing.add(pod.name)
        else:
            ready += 1
    return PodGroups(ready, frozenset(unready), frozenset(missing), frozenset(ignored))


def usage_ratio(metrics: Mapping[str, int], target_milli: int) -> tuple[float, int]:
    """``GetMetricUsageRatio``: (usage / target, usage), usage the truncated integer mean."""
    total = sum(metrics.values())
    usage = _go_div(total, len(metrics))
    return usage / target_milli, usage


@dataclass(frozen=True, slots=True)
class PodsResult:
    """What ``calcPlainMetricReplicas`` computed, and why."""

    replicas: int
    usage_milli: int
    ratio: float
    groups: PodGroups
    counted: int
    """Values the first average was taken over (after dropping ignored and unready pods)."""
    superfluous: frozenset[str]
    """Values for pods the lister does not know: counted anyway, as upstream does."""
    rebalanced_ratio: float | None = None
    rebalanced_count: int | None = None
    missing_as: int | None = None
    """The value missing pods were counted as (target on scale-down, 0 on scale-up)."""
    unready_as_zero: bool = False
    held: str | None = None


def pods_metric_replicas(
    current_replicas: int,
    target_milli: int,
    metrics: Mapping[str, int],
    pods: Sequence[PodState],
    tolerance: float = DEFAULT_TOLERANCE,
) -> PodsResult:
    """``GetMetricReplicas``: the proposal for a Pods metric (AverageValue target).

    ``metrics`` maps pod name -> milli value: exactly the items the adapter
    served. Raises MetricError where the controller reports the metric failed.
    """
    if not metrics:
        raise MetricError(NO_METRICS)
    if not pods:
        raise MetricError(NO_PODS)
    groups = group_pods(pods, metrics)
    values = {
        name: value
        for name, value in metrics.items()
        if name not in groups.ignored and name not in groups.unready
    }
    if not values:
        raise MetricError(NO_TARGETED)
    known = {pod.name for pod in pods}
    superfluous = frozenset(name for name in values if name not in known)
    ratio, usage = usage_ratio(values, target_milli)
    base = PodsResult(
        replicas=current_replicas,
        usage_milli=usage,
        ratio=ratio,
        groups=groups,
        counted=len(values),
        superfluous=superfluous,
    )
    scale_up_with_unready = bool(groups.unready) and ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if abs(1.0 - ratio) <= tolerance:
            return _with(base, held=HELD_TOLERANCE)
        return _with(base, replicas=_ceil(ratio * groups.ready_count))
    missing_as = _fill_in(values, groups, ratio, target_milli, scale_up_with_unready)
    new_ratio, _ = usage_ratio(values, target_milli)
    step = _with(
        base,
        rebalanced_ratio=new_ratio,
        rebalanced_count=len(values),
        missing_as=missing_as,
        unready_as_zero=scale_up_with_unready,
    )
    if abs(1.0 - new_ratio) <= tolerance:
        return _with(step, held=HELD_TOLERANCE)
    if (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return _with(step, held=HELD_DIRECTION)
    new_replicas = _ceil(new_ratio * len(values))
    if (new_ratio < 1.0 and new_replicas > current_replicas) or (
        new_ratio > 1.0 and new_replicas < current_replicas
    ):
        return _with(step, held=HELD_COUNT_DIRECTION)
    return _with(step, replicas=new_replicas)


@dataclass(frozen=True, slots=True)
class ObjectResult:
    replicas: int
    usage_milli: int
    ratio: float
    ready_pods: int | None = None
    held: str | None = None


def ready_pod_count(pods: Sequence[PodState]) -> int:
    """``getReadyPodsCount``: Running and Ready. Raises MetricError without pods."""
    if not pods:
        raise MetricError(f"unable to calculate ready pods: {NO_PODS}")
    return sum(1 for pod in pods if pod.phase == "Running" and pod.ready)


def object_value_replicas(
    current_replicas: int,
    target_milli: int,
    value_milli: int,
    pods: Sequence[PodState],
    tolerance: float = DEFAULT_TOLERANCE,
) -> ObjectResult:
    """``GetObjectMetricReplicas`` (Value target): ``ceil(value / target * readyPods)``.

    With 0 current replicas neither tolerance nor pods count: ``ceil(ratio)``.
    """
    ratio = value_milli / target_milli
    if current_replicas == 0:
        return ObjectResult(_ceil(ratio), value_milli, ratio)
    if abs(1.0 - ratio) <= tolerance:
        return ObjectResult(current_replicas, value_milli, ratio, held=HELD_TOLERANCE)
    ready = ready_pod_count(pods)
    return ObjectResult(_ceil(ratio * ready), value_milli, ratio, ready_pods=ready)


def object_average_replicas(
    status_replicas: int,
    target_average_milli: int,
    value_milli: int,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ObjectResult:
    """``GetObjectPerPodMetricReplicas`` (AverageValue target) with the scale's status
    replicas: ``ceil(value / targetAverage)`` unless within tolerance. The usage
    reported is the value per current replica, rounded up."""
    if status_replicas == 0:
        # Upstream divides by zero here (an infinite ratio, so it always rescales).
        return ObjectResult(_ceil(value_milli / target_average_milli), value_milli, math.inf)
    ratio = value_milli / (target_average_milli * status_replicas)
    replicas = status_replicas
    held: str | None = HELD_TOLERANCE
    if abs(1.0 - ratio) > tolerance:
        replicas = _ceil(value_milli / target_average_milli)
        held = None
    usage = _ceil(value_milli / status_replicas)
    return ObjectResult(replicas, usage, ratio, held=held)


def _fill_in(
    values: dict[str, int],
    groups: PodGroups,
    ratio: float,
    target_milli: int,
    scale_up_with_unready: bool,
) -> int | None:
    """Give missing pods the target (scale-down) or 0 (scale-up), and unready pods 0 on a
    scale-up. Returns the value missing pods were given (None: left out, ratio exactly 1)."""
    missing_as: int | None = None
    if groups.missing:
        if ratio < 1.0:
            missing_as = target_milli
        elif ratio > 1.0:
            missing_as = 0
        if missing_as is not None:
            values.update(dict.fromkeys(groups.missing, missing_as))
    if scale_up_with_unready:
        values.update(dict.fromkeys(groups.unready, 0))
    return missing_as


def _ceil(value: float) -> int:
    """``int32(math.Ceil(value))``."""
    return math.ceil(value)


def _go_div(a: int, b: int) -> int:
    """Go's integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _with(result: PodsResult, **changes: object) -> PodsResult:
    return replace(result, **changes)  # type: ignore[arg-type]


__all__ = [
    "DEFAULT_TOLERANCE",
    "HELD_COUNT_DIRECTION",
    "HELD_DIRECTION",
    "HELD_TOLERANCE",
    "MetricError",
    "ObjectResult",
    "PodGroups",
    "PodState",
    "PodsResult",
    "group_pods",
    "object_average_replicas",
    "object_value_replicas",
    "pods_metric_replicas",
    "ready_pod_count",
    "usage_ratio",
]
