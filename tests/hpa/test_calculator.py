"""``adapter.hpa.calculator`` against the cases of upstream's replica_calculator_test.go
that apply to Pods and Object metrics, with upstream's inputs and expected values.

Upstream builds ``currentReplicas`` pods named ``test-pod-<i>`` (more when ``podPhase``
lists more), Running and Ready unless the case says otherwise, and serves one value
per entry of ``levels`` for ``test-pod-0``, ``test-pod-1``, ... The helper below does
the same.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.hpa.calculator import (
    HELD_COUNT_DIRECTION,
    HELD_TOLERANCE,
    NO_METRICS,
    NO_PODS,
    NO_TARGETED,
    MetricError,
    PodState,
    group_pods,
    object_average_replicas,
    object_value_replicas,
    pods_metric_replicas,
)

T, F = True, False


@dataclass(frozen=True)
class Case:
    name: str
    current: int
    levels: list[int]
    target: int
    expected_replicas: int
    expected_usage: int
    readiness: list[bool] | None = None
    phases: list[str] | None = None
    deleting: list[bool] | None = None


def upstream_pods(case: Case) -> list[PodState]:
    count = max(case.current, len(case.phases or []))
    return [
        PodState(
            name=f"test-pod-{i}",
            phase=case.phases[i] if case.phases else "Running",
            ready=case.readiness[i] if case.readiness and i < len(case.readiness) else True,
            deleting=bool(case.deleting and case.deleting[i]),
        )
        for i in range(count)
    ]


def levels(values: list[int]) -> dict[str, int]:
    return {f"test-pod-{i}": v for i, v in enumerate(values)}


POD_METRIC_CASES = [
    Case("TestReplicaCalcScaleUpCM", 3, [20000, 10000, 30000], 15000, 4, 20000),
    Case(
        "TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale",
        3,
        [50000, 10000, 30000],
        15000,
        6,
        30000,
        readiness=[T, T, F],
    ),
    Case(
        "TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown",
        3,
        [50000, 15000, 30000],
        15000,
        7,
        31666,
        readiness=[F, T, F],
    ),
    Case("TestReplicaCalcScaleUpCMExternal (podMetric)", 1, [8600], 4400, 2, 8600),
    Case("TestReplicaCalcScaleUpCMExternalNoLabels", 1, [8600], 4400, 2, 8600),
    Case("TestReplicaCalcScaleDownCM", 5, [12000] * 5, 20000, 3, 12000),
    Case("TestReplicaCalcToleranceCM", 3, [20000, 21000, 21000], 20000, 3, 20666),
    Case(
        "TestPlainMetricReplicaCalcMissingMetricsNoChangeEq",
        5,
        [20000, 19000, 21000],
        20000,
        5,
        20000,
    ),
    Case(
        "TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM",
        2,
        [10000, 10000],
        17000,
        2,
        10000,
        phases=["Running", "Running", "Running"],
    ),
]


@pytest.mark.parametrize("case", POD_METRIC_CASES, ids=lambda c: c.name)
def test_pods_metric_upstream_cases(case: Case) -> None:
    result = pods_metric_replicas(
        case.current, case.target, levels(case.levels), upstream_pods(case)
    )
    assert (result.replicas, result.usage_milli) == (case.expected_replicas, case.expected_usage)


OBJECT_CASES = [
    Case("TestReplicaCalcScaleUpCMObject", 3, [20000], 15000, 4, 20000),
    Case(
        "TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods",
        3,
        [50000],
        10000,
        5,
        50000,
        readiness=[F, T, F],
    ),
    Case("TestReplicaCalcScaleDownCMObject", 5, [12000], 20000, 3, 12000),
    Case("TestReplicaCalcToleranceCMObject", 3, [20666], 20000, 3, 20666),
]


@pytest.mark.parametrize("case", OBJECT_CASES, ids=lambda c: c.name)
def test_object_value_upstream_cases(case: Case) -> None:
    result = object_value_replicas(case.current, case.target, case.levels[0], upstream_pods(case))
    assert (result.replicas, result.usage_milli) == (case.expected_replicas, case.expected_usage)


PER_POD_OBJECT_CASES = [
    Case("TestReplicaCalcScaleUpCMPerPodObject", 3, [20000], 5000, 4, 6667),
    Case("TestReplicaCalcScaleDownPerPodCMObject", 5, [6000], 2000, 3, 1200),
    Case("TestReplicaCalcTolerancePerPodCMObject", 4, [20166], 5000, 4, 5042),
]


@pytest.mark.parametrize("case", PER_POD_OBJECT_CASES, ids=lambda c: c.name)
def test_object_average_upstream_cases(case: Case) -> None:
    result = object_average_replicas(case.current, case.target, case.levels[0])
    assert (result.replicas, result.usage_milli) == (case.expected_replicas, case.expected_usage)


# -- groupPods: upstream's TestGroupPods rows that apply to a non-CPU metric ---------------


@pytest.mark.parametrize(
    ("pods", "metrics", "ready", "unready", "missing", "ignored"),
    [
        pytest.param([], {}, 0, set(), set(), set(), id="void"),
        pytest.param(
            [PodState("bentham", phase="Succeeded")],
            {"bentham": 1},
            1,
            set(),
            set(),
            set(),
            id="count in a ready pod - memory",
        ),
        pytest.param(
            [PodState("epicurus", phase="Succeeded")],
            {},
            0,
            set(),
            {"epicurus"},
            set(),
            id="a missing pod",
        ),
        pytest.param(
            [PodState("unscheduled", phase="Pending", ready=False)],
            {},
            0,
            {"unscheduled"},
            set(),
            set(),
            id="pending pods are unreadied",
        ),
        pytest.param(
            [PodState("deleted", phase="Pending", deleting=True)],
            {"deleted": 1},
            0,
            set(),
            set(),
            {"deleted"},
            id="ignore pods with deletion timestamps",
        ),
        pytest.param(
            [PodState("failed", phase="Failed")],
            {"failed": 1},
            0,
            set(),
            set(),
            {"failed"},
            id="ignore pods in a failed state",
        ),
    ],
)
def test_group_pods_upstream_rows(
    pods: list[PodState],
    metrics: dict[str, int],
    ready: int,
    unready: AbstractSet[str],
    missing: AbstractSet[str],
    ignored: AbstractSet[str],
) -> None:
    groups = group_pods(pods, metrics)
    assert (groups.ready_count, groups.unready, groups.missing, groups.ignored) == (
        ready,
        unready,
        missing,
        ignored,
    )


def test_custom_metrics_do_not_check_readiness() -> None:
    # A Running pod that is not Ready but has a value counts (only CPU checks readiness).
    groups = group_pods([PodState("a", ready=False)], {"a": 5})
    assert (groups.ready_count, groups.unready) == (1, frozenset())


# -- the error cases, with upstream's messages ---------------------------------------------


def test_no_values_at_all_is_the_clients_error() -> None:
    with pytest.raises(MetricError, match=f"^{NO_METRICS}$"):
        pods_metric_replicas(3, 1000, {}, [PodState("a")])


def test_selector_matching_nothing() -> None:
    with pytest.raises(MetricError, match=f"^{NO_PODS}$"):
        pods_metric_replicas(3, 1000, {"a": 1}, [])


def test_only_values_of_unready_pods() -> None:
    with pytest.raises(MetricError, match=r"^did not receive metrics for targeted pods"):
        pods_metric_replicas(2, 1000, {"a": 5000}, [PodState("a", phase="Pending")])
    assert NO_TARGETED.endswith("(pods might be unready)")


def test_object_value_needs_pods_to_count_ready_ones() -> None:
    with pytest.raises(MetricError, match=r"^unable to calculate ready pods: no pods returned"):
        object_value_replicas(3, 1000, 5000, [])


# -- missing and unready pods, step by step -------------------------------------------------


def test_missing_pods_damp_a_scale_up() -> None:
    # 2 of 4 pods have 30 against a target of 10: ratio 3; the 2 missing count as 0:
    # (30 + 30 + 0 + 0) / 4 = 15 -> ratio 1.5 -> ceil(1.5 * 4) = 6, not ceil(3 * 4) = 12.
    pods = [PodState(f"p{i}") for i in range(4)]
    result = pods_metric_replicas(4, 10_000, {"p0": 30_000, "p1": 30_000}, pods)
    assert (result.ratio, result.missing_as, result.rebalanced_ratio, result.replicas) == (
        3.0,
        0,
        1.5,
        6,
    )


def test_missing_pods_count_as_target_on_scale_down() -> None:
    pods = [PodState(f"p{i}") for i in range(4)]
    # 2 pods at 2 against 10: ratio 0.2; missing as 10 -> (2+2+10+10)/4 = 6 -> 0.6 -> ceil(2.4) = 3
    result = pods_metric_replicas(4, 10_000, {"p0": 2_000, "p1": 2_000}, pods)
    assert (result.missing_as, result.rebalanced_ratio, result.replicas) == (10_000, 0.6, 3)


def test_scale_up_held_when_the_rebalanced_count_goes_down() -> None:
    # The rolling-update case: the rebalanced count moves against the direction.
    pods = [PodState("a"), PodState("b"), PodState("c")]
    result = pods_metric_replicas(2, 17_000, {"a": 10_000, "b": 10_000}, pods)
    assert (result.replicas, result.held) == (2, HELD_COUNT_DIRECTION)


def test_tolerance_band_in_float64_as_go_computes_it() -> None:
    pods = [PodState("a")]
    assert pods_metric_replicas(7, 10_000, {"a": 10_999}, pods).held == HELD_TOLERANCE
    assert pods_metric_replicas(7, 10_000, {"a": 9_001}, pods).held == HELD_TOLERANCE
    # 1.0 - 1.1 is -0.10000000000000009 in float64: just outside the band, in Go too.
    assert pods_metric_replicas(7, 10_000, {"a": 11_000}, pods).replicas == 2


def test_values_for_pods_the_lister_does_not_know_still_count() -> None:
    result = pods_metric_replicas(1, 10_000, {"a": 10_000, "ghost": 50_000}, [PodState("a")])
    assert (result.superfluous, result.usage_milli, result.replicas) == (
        frozenset({"ghost"}),
        30_000,
        3,
    )


# -- properties ----------------------------------------------------------------------------


@given(
    n=st.integers(1, 30),
    target=st.integers(1, 1_000_000),
    low=st.integers(0, 2_000_000),
    high=st.integers(0, 2_000_000),
)
def test_monotone_in_the_metric(n: int, target: int, low: int, high: int) -> None:
    low, high = min(low, high), max(low, high)
    pods = [PodState(f"p{i}") for i in range(n)]
    at_low = pods_metric_replicas(n, target, {p.name: low for p in pods}, pods).replicas
    at_high = pods_metric_replicas(n, target, {p.name: high for p in pods}, pods).replicas
    assert at_low <= at_high


@given(
    current=st.integers(1, 50),
    value=st.integers(0, 10_000_000),
    target=st.integers(1, 1_000_000),
)
def test_object_average_is_monotone_and_ignores_pods(current: int, value: int, target: int) -> None:
    more = object_average_replicas(current, target, value + 1000).replicas
    assert object_average_replicas(current, target, value).replicas <= more
