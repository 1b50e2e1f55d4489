"""The explain report: the adapter's view of each metric, through the HPA's arithmetic.

Input: the HPA (``adapter.hpa.spec``), the scale target's replica counts, the
pods the HPA's selector matches as the API server lists them (None in
standalone mode: then the adapter's own pod rows stand in), and per metric the
adapter's explanation (``?explain=true``, see ``adapter.api.explain``) or the
error fetching it. Output: a JSON-able report (schema in :data:`SCHEMA`) and a
readable table (:func:`render_table`).

The desired count is the controller's for one sync in which every recent
recommendation equals this one: stabilization windows hold nothing back, the
policies count no recent scale events. When the windows or the policies would
hold a change back in a live cluster, ``holdBack`` says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapter.hpa.calculator import (
    MetricError,
    PodState,
    object_average_replicas,
    object_value_replicas,
    pods_metric_replicas,
)
from adapter.hpa.controller import (
    DEFAULT_DOWNSCALE_STABILIZATION,
    Combined,
    Controller,
    ControllerState,
    Decision,
    Proposal,
    combine_proposals,
)
from adapter.hpa.spec import HPASpec, MetricSpec, MetricType, SelectPolicy, TargetType

SCHEMA = """\
{
  "hpa": {"namespace", "name", "scaleTarget": "Kind/name", "minReplicas", "maxReplicas"},
  "currentReplicas": int,       # the scale target's spec.replicas
  "desiredReplicas": int,       # what the controller sets: max over metrics, min/max, behavior
  "proposal": int | null,       # max over metrics before min/max and behavior; null: no scaling
  "error": str | null,          # why the controller does not scale, when it does not
  "limitedBy": str,             # DesiredWithinRange | ScaleUpLimit | ScaleDownLimit |
                                # TooManyReplicas | TooFewReplicas
  "holdBack": [str],            # when stabilization windows or policies hold the change back
  "metrics": [{
    "type": "Pods" | "Object", "name", "target", "targetType", "targetMilli",
    "describedObject": "Kind/name" | null,
    "desiredReplicas": int | null,  # this metric's proposal (null: could not be computed)
    "error": str | null,
    "usageMilli", "ratio", "rebalancedRatio", "readyPods", "missingAs", "held",
    "adapter": {"source", "rule": {"form", "query" | "queries": {family: query},
                                   "family", "preset", "windowSeconds",
                                   "snapshotAgeSeconds", ...}} | null,
    "pods": [{"name", "phase", "ready", "value", "milliValue", "family"?, "preset"?,
              "reason": null | "not_ready" | "warming_up" | "no_value" | "stale" | "nan"
                        | "deleted",
              "hpa": "counted" | "missing" | "unready" | "ignored" | "not_listed"}],
    "notCounted": [{"name", "value", "why"}]   # served, but not averaged as served
  }]
}"""

_RESOURCES = {
    "Pod": "pods",
    "Deployment": "deployments.apps",
    "StatefulSet": "statefulsets.apps",
    "ReplicaSet": "replicasets.apps",
}


def object_resource(kind: str) -> str | None:
    """The custom-metrics group-resource of a describedObject kind, None if not served."""
    return _RESOURCES.get(kind)


@dataclass(frozen=True, slots=True)
class MetricInput:
    spec: MetricSpec
    view: Mapping[str, Any] | None
    """The adapter's explanation body, or None when it could not be fetched."""
    error: str | None = None


def build_report(
    hpa: HPASpec,
    current: int,
    status_replicas: int,
    pods: Sequence[PodState] | None,
    metrics: Sequence[MetricInput],
    *,
    downscale_stabilization: float = DEFAULT_DOWNSCALE_STABILIZATION,
) -> dict[str, Any]:
    entries = [
        _metric_entry(m, current, status_replicas, pods)
        for m in metrics
        if m.spec.type in (MetricType.PODS, MetricType.OBJECT)
    ]
    proposals = [
        Proposal(e["name"], e["desiredReplicas"], e["error"])
        for e in entries
        if e["desiredReplicas"] is not None or e["error"] is not None
    ]
    hold_back: list[str] = [
        f"{m.spec.type.value} metric {m.spec.name or '(unnamed)'} is not served by this "
        "adapter and is left out here: the HPA's result may be higher"
        for m in metrics
        if m.spec.type not in (MetricType.PODS, MetricType.OBJECT)
    ]
    combined = (
        combine_proposals(proposals, current)
        if proposals
        else Combined(None, "", "no metric of this HPA is served by the adapter")
    )
    decision = _decide(hpa, current, combined, downscale_stabilization)
    hold_back += _hold_back(hpa, current, decision, downscale_stabilization)
    return {
        "hpa": {
            "namespace": hpa.namespace,
            "name": hpa.name,
            "scaleTarget": f"{hpa.scale_target.kind}/{hpa.scale_target.name}",
            "minReplicas": hpa.min_replicas,
            "maxReplicas": hpa.max_replicas,
        },
        "currentReplicas": current,
        "desiredReplicas": decision.desired,
        "proposal": combined.replicas,
        "error": combined.error if combined.replicas is None else None,
        "limitedBy": decision.limited or "DesiredWithinRange",
        "holdBack": hold_back,
        "metrics": entries,
    }


def _decide(hpa: HPASpec, current: int, combined: Combined, window: float) -> Decision:
    """One sync as if this proposal had been the recommendation for longer than any window."""
    state = ControllerState()
    if combined.replicas is not None:
        state.recommendations.append((combined.replicas, -1e12))
    else:
        state.recommendations.append((current, -1e12))
    return Controller(hpa, downscale_stabilization=window, state=state).reconcile(
        current, combined, now=0.0
    )


def _hold_back(hpa: HPASpec, current: int, decision: Decision, window: float) -> list[str]:
    notes: list[str] = []
    desired = decision.desired
    if decision.error is not None:
        return notes  # the report's "error" says why nothing changes
    behavior = hpa.behavior
    if desired < current:
        down = window if behavior is None else behavior.scale_down.stabilization_window_seconds
        down = window if down is None else down
        if behavior is not None and behavior.scale_down.select_policy is SelectPolicy.DISABLED:
            notes.append("scaling down is disabled (behavior.scaleDown.selectPolicy: Disabled)")
        elif down > 0:
            notes.append(
                f"scale-down stabilization: the HPA goes to {desired} only once every "
                f"recommendation of the last {down:g}s is at most {desired}; until then it "
                "applies the highest of them"
            )
    if desired > current and behavior is not None:
        up = behavior.scale_up.stabilization_window_seconds or 0
        if up > 0:
            notes.append(
                f"scale-up stabilization: the HPA goes to {desired} only once every "
                f"recommendation of the last {up}s is at least {desired}"
            )
    proposal = decision.proposal
    if decision.limited in ("ScaleUpLimit", "ScaleDownLimit") and proposal is not None:
        what = "scale-up" if decision.limited == "ScaleUpLimit" else "scale-down"
        rule = (
            "at most max(2 x current, 4) per sync (no behavior set)"
            if behavior is None
            else "the behavior policies, counting the scale events of each policy's period"
        )
        notes.append(
            f"{what} rate limit: {proposal} wanted, {desired} allowed this sync by {rule}; "
            "more follows in later syncs"
        )
    elif decision.limited == "TooManyReplicas" and proposal is not None and proposal > desired:
        notes.append(f"{proposal} wanted, clamped to maxReplicas {hpa.max_replicas}")
    elif decision.limited == "TooFewReplicas" and proposal is not None and proposal < desired:
        notes.append(f"{proposal} wanted, clamped to minReplicas {hpa.min_replicas}")
    return notes


# -- one metric --------------------------------------------------------------------------


def _metric_entry(
    metric: MetricInput, current: int, status_replicas: int, pods: Sequence[PodState] | None
) -> dict[str, Any]:
    spec = metric.spec
    view = metric.view
    entry: dict[str, Any] = {
        "type": spec.type.value,
        "name": spec.name,
        "target": spec.target_text,
        "targetType": None if spec.target_type is None else spec.target_type.value,
        "targetMilli": spec.target_milli,
        "describedObject": None
        if spec.described_object is None
        else f"{spec.described_object.kind}/{spec.described_object.name}",
        "desiredReplicas": None,
        "error": None,
        "usageMilli": None,
        "ratio": None,
        "rebalancedRatio": None,
        "readyPods": None,
        "missingAs": None,
        "held": None,
        "adapter": None
        if view is None
        else {"source": view.get("source"), "rule": view.get("rule", {})},
        "pods": [],
        "notCounted": [],
    }
    rows = list(view.get("pods", [])) if view is not None else []
    hpa_pods = list(pods) if pods is not None else [_pod_from_row(r) for r in rows]
    if spec.type is MetricType.PODS:
        _pods_metric(entry, metric, current, hpa_pods, rows)
    else:
        _object_metric(entry, metric, (current, status_replicas), hpa_pods, rows)
    return entry


def _pod_from_row(row: Mapping[str, Any]) -> PodState:
    return PodState(
        name=str(row["name"]),
        phase=str(row.get("phase", "Running")),
        ready=bool(row.get("ready", True)),
        deleting=bool(row.get("deleting", False)),
    )


def _pods_metric(
    entry: dict[str, Any],
    metric: MetricInput,
    current: int,
    hpa_pods: list[PodState],
    rows: list[Mapping[str, Any]],
) -> None:
    spec = metric.spec
    assert spec.target_milli is not None
    view = metric.view
    items = list(view.get("items", [])) if view is not None else []
    served = {str(i["name"]): int(i["milliValue"]) for i in items}
    entry["pods"] = _pod_rows(hpa_pods, rows, served)
    if view is None:
        entry["error"] = f"failed to get pods metric value: unable to get metric {spec.name}: " + (
            metric.error or "unknown error"
        )
        return
    try:
        result = pods_metric_replicas(current, spec.target_milli, served, hpa_pods)
    except MetricError as e:
        prefix = f"unable to get metric {spec.name}: " if not served else ""
        entry["error"] = f"failed to get pods metric value: {prefix}{e}"
        return
    groups = result.groups
    state = {p["name"]: p for p in entry["pods"]}
    for name in groups.missing:
        state[name]["hpa"] = "missing"
    for name in groups.unready:
        state[name]["hpa"] = "unready"
    for name in groups.ignored:
        state[name]["hpa"] = "ignored"
    entry["notCounted"] = [
        {"name": name, "value": served[name], "why": why}
        for name, why in sorted(_not_counted(served, groups.unready | groups.ignored).items())
    ] + [
        {
            "name": name,
            "value": served[name],
            "why": "served for a pod the HPA's selector does not list: averaged in anyway",
        }
        for name in sorted(result.superfluous)
    ]
    entry.update(
        desiredReplicas=result.replicas,
        usageMilli=result.usage_milli,
        ratio=round(result.ratio, 6),
        rebalancedRatio=None
        if result.rebalanced_ratio is None
        else round(result.rebalanced_ratio, 6),
        readyPods=groups.ready_count,
        missingAs=result.missing_as,
        held=result.held,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _not_counted(served: Mapping[str, int], dropped: frozenset[str]) -> dict[str, str]:
    return {
        name: "served, but the HPA drops values of Pending, Failed and deleting pods"
        for name in served
        if name in dropped
    }


# Per-pod facts the adapter's source may report (server family, preset): passed through.
_POD_FACTS = ("family", "preset")


def _pod_rows(
    hpa_pods: Sequence[PodState], rows: Sequence[Mapping[str, Any]], served: Mapping[str, int]
) -> list[dict[str, Any]]:
    by_name = {str(r["name"]): r for r in rows}
    listed = {p.name: p for p in hpa_pods}
    out = []
    for name in sorted(set(by_name) | set(listed)):
        row = by_name.get(name)
        pod = listed.get(name)
        reason = None if row is None else row.get("reason")
        if pod is None:
            hpa = "not_listed"
            reason = reason or "deleted"  # the adapter knows a pod the API server no longer lists
        else:
            hpa = "counted"
            if row is None:
                reason = "no_value"  # not (yet) in the adapter's pod index
        entry = {
            "name": name,
            "phase": pod.phase if pod is not None else (row or {}).get("phase"),
            "ready": pod.ready if pod is not None else (row or {}).get("ready"),
            "value": None if row is None else row.get("value"),
            "milliValue": served.get(name),
            "reason": reason,
            "hpa": hpa,
        }
        entry.update({k: row[k] for k in _POD_FACTS if row is not None and k in row})
        out.append(entry)
    return out


def _object_metric(
    entry: dict[str, Any],
    metric: MetricInput,
    counts: tuple[int, int],
    hpa_pods: list[PodState],
    rows: list[Mapping[str, Any]],
) -> None:
    current, status_replicas = counts
    spec = metric.spec
    assert spec.target_milli is not None
    view = metric.view
    items = list(view.get("items", [])) if view is not None else []
    entry["pods"] = [
        {
            "name": r["name"],
            "phase": r.get("phase"),
            "ready": r.get("ready"),
            "value": None,
            "milliValue": None,
            "reason": r.get("reason"),
            "hpa": "counted",
        }
        for r in rows
    ]
    if view is None or len(items) != 1:
        why = metric.error or "no value for the object"
        entry["error"] = (
            f"failed to get object metric value: unable to get metric {spec.name}: {why}"
        )
        return
    value = int(items[0]["milliValue"])
    try:
        if spec.target_type is TargetType.VALUE:
            result = object_value_replicas(current, spec.target_milli, value, hpa_pods)
        else:
            result = object_average_replicas(status_replicas, spec.target_milli, value)
    except MetricError as e:
        entry["error"] = f"failed to get object metric value: {e}"
        return
    entry.update(
        desiredReplicas=result.replicas,
        usageMilli=result.usage_milli,
        ratio=round(result.ratio, 6),
        readyPods=result.ready_pods,
        held=result.held,
    )


# -- the table -----------------------------------------------------------------------------


def _milli(milli: int | None) -> str:
    if milli is None:
        return "-"
    return f"{milli / 1000:g}"


def render_table(report: Mapping[str, Any]) -> str:
    hpa = report["hpa"]
    lines = [
        f"HPA {hpa['namespace']}/{hpa['name']} -> {hpa['scaleTarget']}: "
        f"{report['currentReplicas']} replicas (min {hpa['minReplicas']}, max {hpa['maxReplicas']})"
        f" -> desired {report['desiredReplicas']}",
    ]
    for m in report["metrics"]:
        lines.extend(_metric_lines(m, report.get("selector")))
    lines.append("")
    proposal = report["proposal"]
    if report["error"]:
        lines.append(f"The HPA does not scale: {report['error']}")
    else:
        lines.append(
            f"Largest proposal {proposal}; within min/max and behavior: "
            f"{report['desiredReplicas']} ({report['limitedBy']})"
        )
    lines.extend(f"Note: {note}" for note in report["holdBack"])
    status = report.get("hpaStatus") or {}
    for condition in status.get("conditions") or []:
        lines.append(
            f"HPA condition {condition.get('type')}={condition.get('status')} "
            f"{condition.get('reason', '')}: {condition.get('message', '')}"
        )
    return "\n".join(lines) + "\n"


def _metric_lines(m: Mapping[str, Any], selector: str | None) -> list[str]:
    head = f"{m['type']} metric {m['name']} (target {m['targetType']} {m['target']})"
    if m["describedObject"]:
        head += f" of {m['describedObject']}"
    lines = ["", head]
    adapter = m["adapter"]
    if adapter is not None:
        rule = adapter.get("rule") or {}
        facts = [f"source {adapter.get('source')}"]
        facts += [f"{key} {rule[key]}" for key in ("family", "preset", "form") if rule.get(key)]
        if rule.get("snapshotAgeSeconds") is not None:
            facts.append(f"snapshot {rule['snapshotAgeSeconds']:.0f}s old")
        lines.append("  " + ", ".join(facts))
        if rule.get("query"):
            lines.append(f"  query: {rule['query']}")
        for family, query in (rule.get("queries") or {}).items():
            lines.append(f"  query ({family}): {query}")
    if m["pods"]:
        lines.append(_pod_table(m["pods"]))
    else:
        lines.append("  no pod matches the HPA's selector" + (f" ({selector})" if selector else ""))
    lines += [f"  not counted as served: {i['name']}: {i['why']}" for i in m["notCounted"]]
    lines.append("  " + _verdict(m))
    return lines


def _pod_table(pods: Sequence[Mapping[str, Any]]) -> str:
    extra = [k for k in _POD_FACTS if any(p.get(k) for p in pods)]
    header = ("POD", "PHASE", "READY", "VALUE", "HPA", "REASON", *(k.upper() for k in extra))
    rows = [
        (
            str(p["name"]),
            str(p["phase"] or "-"),
            "-" if p["ready"] is None else str(p["ready"]).lower(),
            _milli(p["milliValue"]),
            str(p["hpa"]),
            str(p["reason"] or "-"),
            *(str(p.get(k) or "-") for k in extra),
        )
        for p in pods
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip()
        for r in [header, *rows]
    )


_HELD = {
    "within_tolerance": "within the 0.1 tolerance: keep the current count",
    "rebalanced_ratio_flips_direction": "the rebalanced ratio flips direction: keep the count",
    "rebalanced_count_against_direction": "the rebalanced count goes the other way: keep the count",
}


def _verdict(m: Mapping[str, Any]) -> str:
    if m["error"]:
        return f"-> no proposal: {m['error']}"
    parts = [f"usage {_milli(m['usageMilli'])}", f"ratio {m['ratio']:.3f}"]
    if m["readyPods"] is not None:
        parts.append(f"over {m['readyPods']} pods with values")
    if m["missingAs"] is not None:
        as_what = "the target" if m["missingAs"] else "0"
        parts.append(f"missing pods counted as {as_what}")
    if m["rebalancedRatio"] is not None:
        parts.append(f"rebalanced ratio {m['rebalancedRatio']:.3f}")
    held = _HELD.get(m["held"] or "")
    if held:
        parts.append(held)
    return "-> " + "; ".join(parts) + f" -> desired {m['desiredReplicas']}"
