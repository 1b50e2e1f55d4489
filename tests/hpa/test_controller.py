"""``adapter.hpa.controller``: combining metrics, min/max, stabilization and policies.

Expected values are worked out by hand from horizontal.go's rules (in comments).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.hpa.controller import Combined, Controller, Proposal, combine_proposals
from adapter.hpa.spec import HPASpec, parse_hpa
from tests.support.hpa import hpa_object


def hpa(behavior: dict[str, Any] | None = None, *, low: int = 1, high: int = 20) -> HPASpec:
    return parse_hpa(hpa_object(low=low, high=high, behavior=behavior))


def ok(replicas: int) -> Combined:
    return Combined(replicas, "pods metric m")


# -- computeReplicasForMetrics --------------------------------------------------------------


def test_largest_proposal_wins() -> None:
    combined = combine_proposals([Proposal("a", 3), Proposal("b", 7), Proposal("c", 5)], 4)
    assert (combined.replicas, combined.metric) == (7, "b")


def test_all_metrics_failing_means_no_scaling() -> None:
    combined = combine_proposals([Proposal("a", error="boom"), Proposal("b", error="bang")], 4)
    assert combined == Combined(
        None, "", "invalid metrics (2 invalid out of 2), first error is: boom"
    )


def test_a_failing_metric_blocks_a_scale_down_but_not_a_scale_up() -> None:
    down = combine_proposals([Proposal("a", 2), Proposal("b", error="boom")], 4)
    up = combine_proposals([Proposal("a", 6), Proposal("b", error="boom")], 4)
    assert (down.replicas, down.error) == (
        None,
        "invalid metrics (1 invalid out of 2), first error is: boom",
    )
    assert (up.replicas, up.error) == (6, "boom")


# -- reconcileAutoscaler before normalization ----------------------------------------------


def test_target_at_zero_is_left_alone() -> None:
    decision = Controller(hpa()).reconcile(0, ok(5), now=0.0)
    assert (decision.desired, decision.rescale, decision.able_to_scale) == (
        0,
        False,
        "ScalingDisabled",
    )


def test_counts_outside_min_max_are_brought_inside_first() -> None:
    assert Controller(hpa(low=2, high=6)).reconcile(9, ok(9), now=0.0).desired == 6
    assert Controller(hpa(low=2, high=6)).reconcile(1, ok(1), now=0.0).desired == 2


# -- without behavior: 300 s downscale stabilization, scale-up limit max(2x, 4) -------------


def test_legacy_scale_up_limit() -> None:
    first = Controller(hpa()).reconcile(1, ok(10), now=0.0)
    second = Controller(hpa()).reconcile(5, ok(20), now=0.0)
    assert (first.desired, first.limited) == (4, "ScaleUpLimit")
    assert (second.desired, second.limited) == (10, "ScaleUpLimit")


def test_legacy_downscale_stabilization_holds_the_highest_recent_recommendation() -> None:
    controller = Controller(hpa())
    assert controller.reconcile(5, ok(5), now=0.0).desired == 5
    held = controller.reconcile(5, ok(2), now=60.0)
    assert (held.desired, held.able_to_scale) == (5, "ScaleDownStabilized")
    # After 300 s the recommendations of t=0 have left the window: 2 wins.
    assert controller.reconcile(5, ok(2), now=301.0).desired == 2


# -- with behavior ---------------------------------------------------------------------------


def test_default_behavior_scale_up_is_4_pods_or_100_percent_per_15s() -> None:
    decision = Controller(hpa({})).reconcile(1, ok(10), now=0.0)
    # Pods: 1 + 4 = 5; Percent: ceil(1 * 2) = 2; selectPolicy Max -> 5.
    assert (decision.desired, decision.limited) == (5, "ScaleUpLimit")


def test_scale_down_policy_counts_the_events_of_its_period() -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        }
    }
    controller = Controller(hpa(behavior))
    first = controller.reconcile(5, ok(1), now=0.0)
    assert (first.desired, first.limited) == (4, "ScaleDownLimit")
    # 30 s later the period started at 5 replicas: 5 - 1 = 4, no further step.
    assert controller.reconcile(4, ok(1), now=30.0).desired == 4
    # After 60 s the event has left the period: 4 - 1 = 3.
    assert controller.reconcile(4, ok(1), now=61.0).desired == 3


def test_percent_scale_down_truncates() -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
        }
    }
    # int32(5 * 0.5) = 2
    assert Controller(hpa(behavior)).reconcile(5, ok(1), now=0.0).desired == 2


def test_select_policy_min_picks_the_smallest_change() -> None:
    behavior = {
        "scaleUp": {
            "selectPolicy": "Min",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        }
    }
    assert Controller(hpa(behavior)).reconcile(3, ok(20), now=0.0).desired == 6


def test_disabled_scale_down_never_scales_down() -> None:
    behavior = {"scaleDown": {"selectPolicy": "Disabled", "stabilizationWindowSeconds": 0}}
    decision = Controller(hpa(behavior)).reconcile(5, ok(1), now=0.0)
    assert (decision.desired, decision.limited) == (5, "ScaleDownLimit")


def test_scale_up_stabilization_window_takes_the_lowest_recent_recommendation() -> None:
    controller = Controller(hpa({"scaleUp": {"stabilizationWindowSeconds": 60}}))
    assert controller.reconcile(2, ok(2), now=0.0).desired == 2
    held = controller.reconcile(2, ok(6), now=15.0)
    assert (held.desired, held.able_to_scale) == (2, "ScaleUpStabilized")
    # At t=61 only the recommendation of t=15 (6) is within the window.
    assert controller.reconcile(2, ok(6), now=61.0).desired == 6


def test_scale_down_window_defaults_to_the_controllers_300s() -> None:
    controller = Controller(hpa({"scaleDown": {"selectPolicy": "Max"}}))
    assert controller.reconcile(5, ok(5), now=0.0).desired == 5
    assert controller.reconcile(5, ok(1), now=100.0).desired == 5
    assert controller.reconcile(5, ok(1), now=301.0).desired == 1


def test_failed_metrics_keep_the_current_count() -> None:
    decision = Controller(hpa()).reconcile(5, Combined(None, "", "invalid metrics"), now=0.0)
    assert (decision.desired, decision.rescale, decision.error) == (5, False, "invalid metrics")


# -- properties ------------------------------------------------------------------------------

behaviors = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "scaleUp": st.fixed_dictionaries(
                {
                    "stabilizationWindowSeconds": st.integers(0, 120),
                    "selectPolicy": st.sampled_from(["Max", "Min", "Disabled"]),
                    "policies": st.lists(
                        st.fixed_dictionaries(
                            {
                                "type": st.sampled_from(["Pods", "Percent"]),
                                "value": st.integers(1, 200),
                                "periodSeconds": st.integers(1, 120),
                            }
                        ),
                        min_size=1,
                        max_size=3,
                    ),
                }
            ),
            "scaleDown": st.fixed_dictionaries(
                {
                    "stabilizationWindowSeconds": st.integers(0, 120),
                    "selectPolicy": st.sampled_from(["Max", "Min", "Disabled"]),
                }
            ),
        }
    ),
)


@given(
    behavior=behaviors,
    bounds=st.tuples(st.integers(1, 10), st.integers(0, 20)),
    steps=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=1, max_size=12),
)
def test_never_outside_min_max(
    behavior: dict[str, Any] | None, bounds: tuple[int, int], steps: list[tuple[int, int]]
) -> None:
    low, extra = bounds
    controller = Controller(hpa(behavior, low=low, high=low + extra))
    current, now = low, 0.0
    for gap, proposal in steps:
        now += gap
        current = controller.reconcile(current, ok(proposal), now).desired
        assert low <= current <= low + extra


@given(
    behavior=behaviors,
    current=st.integers(1, 20),
    proposals=st.tuples(st.integers(0, 80), st.integers(0, 80)),
)
def test_monotone_in_the_proposal(
    behavior: dict[str, Any] | None, current: int, proposals: tuple[int, int]
) -> None:
    low_p, high_p = sorted(proposals)
    spec = hpa(behavior, low=1, high=40)
    at_low = Controller(spec).reconcile(current, ok(low_p), now=0.0).desired
    at_high = Controller(spec).reconcile(current, ok(high_p), now=0.0).desired
    assert at_low <= at_high


@pytest.mark.parametrize("value", ["10", "10000m", "10.0"])
def test_targets_are_read_in_milli_units(value: str) -> None:
    spec = hpa()
    assert spec.metrics[0].target_milli == 10_000
    assert (
        parse_hpa(
            {
                "spec": {
                    "scaleTargetRef": {"kind": "Deployment", "name": "w"},
                    "maxReplicas": 3,
                    "metrics": [
                        {
                            "type": "Pods",
                            "pods": {
                                "metric": {"name": "m"},
                                "target": {"type": "AverageValue", "averageValue": value},
                            },
                        }
                    ],
                }
            }
        )
        .metrics[0]
        .target_milli
        == 10_000
    )


# -- rate limits, modelled on upstream's TestScalingWithRules -------------------------------
# (names and numbers as recalled from horizontal_test.go, each checked by hand against the
# rules of horizontal.go; stabilization windows at 0 so that only the policies act)


def rules(
    pods: int, pods_period: int, percent: int, percent_period: int, window: int
) -> dict[str, Any]:
    """Like upstream's generateScalingRules: zero values leave that part defaulted."""
    policies = []
    if pods:
        policies.append({"type": "Pods", "value": pods, "periodSeconds": pods_period})
    if percent:
        policies.append({"type": "Percent", "value": percent, "periodSeconds": percent_period})
    out: dict[str, Any] = {"stabilizationWindowSeconds": window}
    if policies:
        out["policies"] = policies
    return out


@pytest.mark.parametrize(
    ("name", "low", "high", "up", "down", "current", "proposal", "expected", "condition"),
    [
        ("scaleUp with default behavior", 1, 1000, rules(0, 0, 0, 0, 0), None, 10, 50, 20, "ScaleUpLimit"),
        ("scaleUp with pods policy larger than percent policy", 1, 1000, rules(100, 60, 100, 60, 0), None, 10, 500, 110, "ScaleUpLimit"),
        ("scaleUp with percent policy larger than pods policy", 1, 1000, rules(2, 60, 100, 60, 0), None, 10, 500, 20, "ScaleUpLimit"),
        ("scaleUp with spec MaxReplicas limitation with large pod policy", 1, 100, rules(100, 60, 0, 0, 0), None, 10, 50, 50, "DesiredWithinRange"),
        ("scaleUp with spec MaxReplicas limitation with large percent policy", 1, 100, rules(10000, 60, 10000, 60, 0), None, 10, 200, 100, "TooManyReplicas"),
        ("scaleDown with default behavior", 5, 1000, None, rules(0, 0, 0, 0, 0), 100, 2, 5, "TooFewReplicas"),
        ("scaleDown with pod policy larger than percent policy", 1, 1000, None, rules(20, 60, 1, 60, 0), 100, 2, 80, "ScaleDownLimit"),
        ("scaleDown with percent policy larger than pod policy", 1, 1000, None, rules(2, 60, 1, 60, 0), 100, 2, 98, "ScaleDownLimit"),
        ("scaleDown with spec MinReplicas=nil limitation with large pod policy", 1, 1000, None, rules(100, 60, 0, 0, 0), 10, 0, 1, "TooFewReplicas"),
    ],
)  # fmt: skip
def test_rate_limits(
    name: str,
    low: int,
    high: int,
    up: dict[str, Any] | None,
    down: dict[str, Any] | None,
    current: int,
    proposal: int,
    expected: int,
    condition: str,
) -> None:
    behavior: dict[str, Any] = {}
    if up is not None:
        behavior["scaleUp"] = up
    behavior["scaleDown"] = down if down is not None else {"stabilizationWindowSeconds": 0}
    decision = Controller(hpa(behavior, low=low, high=high)).reconcile(current, ok(proposal), 0.0)
    assert (decision.desired, decision.limited) == (expected, condition), name
