"""The parts of ``horizontal.go`` (Kubernetes v1.28) after the per-metric proposals.

- :func:`combine_proposals` is ``computeReplicasForMetrics``: the largest valid
  proposal wins; if every metric failed, or some failed and the rest would
  scale down, the controller does not scale at all.
- :meth:`Controller.reconcile` is ``reconcileAutoscaler`` from there on:
  a target at 0 replicas is left alone (scaling disabled), counts outside
  min/max are brought inside, otherwise the proposal is normalized:

  * without ``behavior``: the highest recommendation of the last downscale
    stabilization window (300 s) wins, then the count is clamped to
    ``[minReplicas, min(maxReplicas, max(2 * current, 4))]``;
  * with ``behavior``: the recommendation is held between the lowest one of
    the scale-up window and the highest one of the scale-down window, then
    limited by the policies (Pods/Percent per period, over the scale events
    of that period; selectPolicy Max/Min/Disabled) and by min/max.

The controller's memory (recommendations and scale events, per HPA) is the
:class:`ControllerState`; time is passed in, so simulation and tests control it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from adapter.hpa.spec import HPASpec, PolicyType, ScalingPolicy, ScalingRules, SelectPolicy

DEFAULT_DOWNSCALE_STABILIZATION = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization
DEFAULT_SYNC_PERIOD = 15.0  # --horizontal-pod-autoscaler-sync-period
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0
_INT32_MAX = 2**31 - 1
_INT32_MIN = -(2**31)


@dataclass(frozen=True, slots=True)
class Proposal:
    """One metric's outcome: a replica count, or the error the controller reports."""

    metric: str
    replicas: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Combined:
    """``computeReplicasForMetrics``: ``replicas`` None means the controller will not scale."""

    replicas: int | None
    metric: str = ""
    error: str | None = None


def combine_proposals(proposals: Sequence[Proposal], spec_replicas: int) -> Combined:
    replicas = 0
    chosen = ""
    invalid = 0
    first_error: str | None = None
    for proposal in proposals:
        if proposal.replicas is None:
            if invalid == 0:
                first_error = proposal.error or "unknown error"
            invalid += 1
            continue
        if replicas == 0 or proposal.replicas > replicas:
            replicas = proposal.replicas
            chosen = proposal.metric
    if invalid >= len(proposals) or (invalid > 0 and replicas < spec_replicas):
        message = (
            f"invalid metrics ({invalid} invalid out of {len(proposals)}), "
            f"first error is: {first_error}"
        )
        return Combined(None, "", message)
    return Combined(replicas, chosen, first_error)


@dataclass(slots=True)
class ScaleEvent:
    change: int
    timestamp: float
    outdated: bool = False


@dataclass(slots=True)
class ControllerState:
    """What the controller remembers about one HPA between syncs."""

    recommendations: list[tuple[int, float]] = field(default_factory=list)
    """(recommendation, time), unstabilized, as recorded at each sync."""
    scale_up_events: list[ScaleEvent] = field(default_factory=list)
    scale_down_events: list[ScaleEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Decision:
    """What one sync decides, with the controller's condition reasons."""

    desired: int
    rescale: bool
    proposal: int | None
    """The combined metric proposal before normalization (None: metrics failed)."""
    stabilized: int | None = None
    able_to_scale: str = ""
    """``ScaleUpStabilized`` | ``ScaleDownStabilized`` | ``ReadyForNewScale`` |
    ``ScalingDisabled``."""
    limited: str = ""
    """``ScaleUpLimit`` | ``ScaleDownLimit`` | ``TooManyReplicas`` | ``TooFewReplicas`` |
    ``DesiredWithinRange``."""
    reason: str = ""
    error: str | None = None


class Controller:
    """The HPA controller's decision for one HPA, sync after sync."""

    def __init__(
        self,
        spec: HPASpec,
        *,
        downscale_stabilization: float = DEFAULT_DOWNSCALE_STABILIZATION,
        state: ControllerState | None = None,
    ) -> None:
        self.spec = spec
        self.downscale_stabilization = downscale_stabilization
        self.state = state or ControllerState()

    def reconcile(self, current: int, combined: Combined, now: float) -> Decision:
        """One sync: ``current`` is the scale's ``spec.replicas``; ``combined`` the metrics'."""
        spec = self.spec
        if not self.state.recommendations:  # recordInitialRecommendation
            self.state.recommendations.append((current, now))
        minimum = spec.min_replicas
        if current == 0 and minimum != 0:
            return Decision(0, False, combined.replicas, able_to_scale="ScalingDisabled")
        if current > spec.max_replicas:
            decision = Decision(
                spec.max_replicas,
                True,
                combined.replicas,
                reason="Current number of replicas above Spec.MaxReplicas",
            )
        elif current < minimum:
            decision = Decision(
                minimum,
                True,
                combined.replicas,
                reason="Current number of replicas below Spec.MinReplicas",
            )
        else:
            if combined.replicas is None:
                return Decision(current, False, None, error=combined.error)
            desired = max(0, combined.replicas)
            reason = ""
            if desired > current:
                reason = f"{combined.metric} above target"
            elif desired < current:
                reason = "All metrics below target"
            if spec.behavior is None:
                decision = self._normalize(current, desired, now, reason)
            else:
                decision = self._normalize_with_behaviors(current, desired, now, reason)
            decision = Decision(
                decision.desired,
                decision.desired != current,
                combined.replicas,
                decision.stabilized,
                decision.able_to_scale,
                decision.limited,
                decision.reason,
                combined.error,
            )
        if decision.rescale and spec.behavior is not None:
            self._store_scale_event(current, decision.desired, now)
        return decision

    # -- without behavior ----------------------------------------------------------------

    def _normalize(self, current: int, desired: int, now: float, reason: str) -> Decision:
        stabilized = self._stabilize(desired, now)
        able = "ScaleDownStabilized" if stabilized != desired else "ReadyForNewScale"
        final, limited = _clamp_with_rules(
            current, stabilized, self.spec.min_replicas, self.spec.max_replicas
        )
        return Decision(final, final != current, desired, stabilized, able, limited, reason)

    def _stabilize(self, desired: int, now: float) -> int:
        """``stabilizeRecommendation``: the highest recommendation within the window."""
        highest = desired
        old_index: int | None = None
        cutoff = now - self.downscale_stabilization
        recommendations = self.state.recommendations
        for i, (recommendation, stamp) in enumerate(recommendations):
            if stamp < cutoff:
                old_index = i
            elif recommendation > highest:
                highest = recommendation
        if old_index is not None:
            recommendations[old_index] = (desired, now)
        else:
            recommendations.append((desired, now))
        return highest

    # -- with behavior -------------------------------------------------------------------

    def _normalize_with_behaviors(
        self, current: int, desired: int, now: float, reason: str
    ) -> Decision:
        behavior = self.spec.behavior
        assert behavior is not None
        down_window = behavior.scale_down.stabilization_window_seconds
        if down_window is None:  # maybeInitScaleDownStabilizationWindow
            down_window = int(self.downscale_stabilization)
        up_window = behavior.scale_up.stabilization_window_seconds or 0
        stabilized = self._stabilize_with_behaviors(current, desired, up_window, down_window, now)
        if stabilized != desired:
            able = "ScaleUpStabilized" if desired >= current else "ScaleDownStabilized"
        else:
            able = "ReadyForNewScale"
        final, limited = self._rate_limit(current, stabilized, now)
        return Decision(final, final != current, desired, stabilized, able, limited, reason)

    def _stabilize_with_behaviors(
        self, current: int, desired: int, up_window: int, down_window: int, now: float
    ) -> int:
        up_recommendation = desired
        down_recommendation = desired
        up_cutoff = now - up_window
        down_cutoff = now - down_window
        old_index: int | None = None
        recommendations = self.state.recommendations
        for i, (recommendation, stamp) in enumerate(recommendations):
            if stamp > up_cutoff:
                up_recommendation = min(recommendation, up_recommendation)
            if stamp > down_cutoff:
                down_recommendation = max(recommendation, down_recommendation)
            if stamp < up_cutoff and stamp < down_cutoff:
                old_index = i
        recommendation = max(current, up_recommendation)
        recommendation = min(recommendation, down_recommendation)
        if old_index is not None:
            recommendations[old_index] = (desired, now)
        else:
            recommendations.append((desired, now))
        return recommendation

    def _rate_limit(self, current: int, desired: int, now: float) -> tuple[int, str]:
        """``convertDesiredReplicasWithBehaviorRate``."""
        behavior = self.spec.behavior
        assert behavior is not None
        state = self.state
        if desired > current:
            limit = scale_up_limit(
                current, state.scale_up_events, state.scale_down_events, behavior.scale_up, now
            )
            limit = max(limit, current)
            maximum = self.spec.max_replicas
            if maximum > limit:
                maximum, reason = limit, "ScaleUpLimit"
            else:
                reason = "TooManyReplicas"
            if desired > maximum:
                return maximum, reason
        elif desired < current:
            limit = scale_down_limit(
                current, state.scale_up_events, state.scale_down_events, behavior.scale_down, now
            )
            limit = min(limit, current)
            minimum = self.spec.min_replicas
            if minimum < limit:
                minimum, reason = limit, "ScaleDownLimit"
            else:
                reason = "TooFewReplicas"
            if desired < minimum:
                return minimum, reason
        return desired, "DesiredWithinRange"

    def _store_scale_event(self, previous: int, new: int, now: float) -> None:
        behavior = self.spec.behavior
        assert behavior is not None
        state = self.state
        if new > previous:
            rules, events, change = behavior.scale_up, state.scale_up_events, new - previous
        else:
            rules, events, change = behavior.scale_down, state.scale_down_events, previous - new
        longest = max((p.period_seconds for p in rules.policies), default=0)
        cutoff = now - longest
        old_index: int | None = None
        for i, event in enumerate(events):
            if event.timestamp < cutoff:
                event.outdated = True
            if event.outdated:
                old_index = i
        if old_index is not None:
            events[old_index] = ScaleEvent(change, now)
        else:
            events.append(ScaleEvent(change, now))


def _clamp_with_rules(current: int, desired: int, minimum: int, maximum: int) -> tuple[int, str]:
    """``convertDesiredReplicasWithRules``: min/max and the old 2x-or-4 scale-up limit."""
    scale_up_limit_ = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    if maximum > scale_up_limit_:
        allowed, reason = scale_up_limit_, "ScaleUpLimit"
    else:
        allowed, reason = maximum, "TooManyReplicas"
    if desired < minimum:
        return minimum, "TooFewReplicas"
    if desired > allowed:
        return allowed, reason
    return desired, "DesiredWithinRange"


def replicas_change_in_period(period_seconds: int, events: Sequence[ScaleEvent], now: float) -> int:
    """``getReplicasChangePerPeriod``: the change of events strictly after now - period."""
    cutoff = now - period_seconds
    return sum(event.change for event in events if event.timestamp > cutoff)


def _policy_limit(
    current: int,
    up_events: Sequence[ScaleEvent],
    down_events: Sequence[ScaleEvent],
    rules: ScalingRules,
    now: float,
    *,
    propose: Callable[[ScalingPolicy, int], int],
    smallest: bool,
) -> int:
    """The loop both limit functions share: ``current`` when the select policy is Disabled;
    otherwise the smallest (``smallest``) or the largest of ``propose(policy, start)`` over
    the policies, starting from int32's far end as upstream does. ``start`` is the replica
    count at the start of the policy's period: current minus the scale-ups plus the
    scale-downs recorded within it."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    result = _INT32_MAX if smallest else _INT32_MIN
    for policy in rules.policies:
        added = replicas_change_in_period(policy.period_seconds, up_events, now)
        deleted = replicas_change_in_period(policy.period_seconds, down_events, now)
        proposed = propose(policy, current - added + deleted)
        result = min(result, proposed) if smallest else max(result, proposed)
    return result


def _scale_up_proposal(policy: ScalingPolicy, start: int) -> int:
    if policy.type is PolicyType.PODS:
        return start + policy.value
    return math.ceil(start * (1 + policy.value / 100))


def _scale_down_proposal(policy: ScalingPolicy, start: int) -> int:
    if policy.type is PolicyType.PODS:
        return start - policy.value
    return int(start * (1 - policy.value / 100))  # Go: truncation toward zero


def scale_up_limit(
    current: int,
    up_events: Sequence[ScaleEvent],
    down_events: Sequence[ScaleEvent],
    rules: ScalingRules,
    now: float,
) -> int:
    """``calculateScaleUpLimitWithScalingRules``: policy Min picks the smallest increase."""
    pick_min = rules.select_policy is SelectPolicy.MIN
    return _policy_limit(
        current, up_events, down_events, rules, now, propose=_scale_up_proposal, smallest=pick_min
    )


def scale_down_limit(
    current: int,
    up_events: Sequence[ScaleEvent],
    down_events: Sequence[ScaleEvent],
    rules: ScalingRules,
    now: float,
) -> int:
    """``calculateScaleDownLimitWithBehaviors``: policy Min picks the smallest decrease,
    that is the largest limit."""
    pick_min_change = rules.select_policy is SelectPolicy.MIN
    propose = _scale_down_proposal
    return _policy_limit(
        current, up_events, down_events, rules, now, propose=propose, smallest=not pick_min_change
    )
