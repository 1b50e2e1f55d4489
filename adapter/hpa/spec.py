"""An ``autoscaling/v2`` HorizontalPodAutoscaler, read as the API server defaults it.

Defaults (``pkg/apis/autoscaling/v2/defaults.go``): ``minReplicas`` 1; a
``behavior`` that is present gets its missing parts filled (scale up: no
stabilization window, policies "4 pods or 100 % per 15 s", selectPolicy Max;
scale down: policy "100 % per 15 s", selectPolicy Max, and the window left
unset, which the controller fills with its ``--horizontal-pod-autoscaler-
downscale-stabilization``, 300 s by default). A missing ``behavior`` stays
missing: the controller then takes its older path (see ``controller``).

Targets are kept in milli-units, rounded up, as the controller reads them
(``Quantity.MilliValue()``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from adapter.core.quantity import milli_value


class HPASpecError(ValueError):
    """The object is not a usable autoscaling/v2 HorizontalPodAutoscaler (message says why)."""


class MetricType(Enum):
    PODS = "Pods"
    OBJECT = "Object"
    RESOURCE = "Resource"
    CONTAINER_RESOURCE = "ContainerResource"
    EXTERNAL = "External"


class TargetType(Enum):
    VALUE = "Value"
    AVERAGE_VALUE = "AverageValue"
    UTILIZATION = "Utilization"


class SelectPolicy(Enum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class PolicyType(Enum):
    PODS = "Pods"
    PERCENT = "Percent"


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    type: PolicyType
    value: int
    period_seconds: int


@dataclass(frozen=True, slots=True)
class ScalingRules:
    """``HPAScalingRules`` after defaulting; ``stabilization_window_seconds`` None
    (scale down only) means the controller's downscale stabilization."""

    stabilization_window_seconds: int | None
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicy, ...]


@dataclass(frozen=True, slots=True)
class Behavior:
    scale_up: ScalingRules
    scale_down: ScalingRules


@dataclass(frozen=True, slots=True)
class DescribedObject:
    kind: str
    name: str
    api_version: str = ""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One entry of ``spec.metrics``. ``target_milli`` is the Value or AverageValue
    in milli-units; None for types this project does not serve (Resource, External),
    which explain lists but cannot compute."""

    type: MetricType
    name: str
    target_type: TargetType | None
    target_milli: int | None
    target_text: str = ""
    described_object: DescribedObject | None = None
    metric_selector: Mapping[str, Any] | None = None

    @property
    def served_kind(self) -> bool:
        """A Pods metric, or an Object metric with a Value or AverageValue target."""
        return self.target_milli is not None and self.type in (MetricType.PODS, MetricType.OBJECT)


@dataclass(frozen=True, slots=True)
class ScaleTarget:
    kind: str
    name: str
    api_version: str


@dataclass(frozen=True, slots=True)
class HPASpec:
    name: str
    namespace: str
    scale_target: ScaleTarget
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricSpec, ...]
    behavior: Behavior | None


DEFAULT_SCALE_UP = ScalingRules(
    stabilization_window_seconds=0,
    select_policy=SelectPolicy.MAX,
    policies=(
        ScalingPolicy(PolicyType.PODS, 4, 15),
        ScalingPolicy(PolicyType.PERCENT, 100, 15),
    ),
)
DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_window_seconds=None,
    select_policy=SelectPolicy.MAX,
    policies=(ScalingPolicy(PolicyType.PERCENT, 100, 15),),
)


def parse_hpa(obj: Mapping[str, Any]) -> HPASpec:
    """An HPASpec from the object as ``kubectl get hpa -o yaml`` or a manifest shows it.

    Raises HPASpecError naming the first field that is wrong.
    """
    if obj.get("kind", "HorizontalPodAutoscaler") != "HorizontalPodAutoscaler":
        raise HPASpecError(f"kind is {obj.get('kind')!r}, expected HorizontalPodAutoscaler")
    api_version = obj.get("apiVersion", "autoscaling/v2")
    if api_version != "autoscaling/v2":
        raise HPASpecError(f"apiVersion is {api_version!r}: only autoscaling/v2 is read")
    meta = _mapping(obj.get("metadata", {}), "metadata")
    spec = _mapping(obj.get("spec"), "spec")
    ref = _mapping(spec.get("scaleTargetRef"), "spec.scaleTargetRef")
    min_replicas = _int(spec.get("minReplicas", 1), "spec.minReplicas")
    max_replicas = _int(spec.get("maxReplicas"), "spec.maxReplicas")
    if max_replicas < 1 or min_replicas > max_replicas:
        raise HPASpecError("spec.maxReplicas must be at least 1 and at least spec.minReplicas")
    raw_metrics = spec.get("metrics") or []
    if not isinstance(raw_metrics, list):
        raise HPASpecError("spec.metrics must be a list")
    behavior = spec.get("behavior")
    return HPASpec(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        scale_target=ScaleTarget(
            kind=str(ref.get("kind", "")),
            name=str(ref.get("name", "")),
            api_version=str(ref.get("apiVersion", "")),
        ),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        metrics=tuple(_metric(m, f"spec.metrics[{i}]") for i, m in enumerate(raw_metrics)),
        behavior=None if behavior is None else _behavior(_mapping(behavior, "spec.behavior")),
    )


def _metric(raw: object, where: str) -> MetricSpec:
    item = _mapping(raw, where)
    try:
        kind = MetricType(item.get("type"))
    except ValueError as e:
        raise HPASpecError(f"{where}.type: unknown metric type {item.get('type')!r}") from e
    if kind in (MetricType.RESOURCE, MetricType.CONTAINER_RESOURCE):
        source = _mapping(item.get(_key(kind)), f"{where}.{_key(kind)}")
        return MetricSpec(kind, str(source.get("name", "")), None, None)
    source = _mapping(item.get(_key(kind)), f"{where}.{_key(kind)}")
    metric = _mapping(source.get("metric"), f"{where}.{_key(kind)}.metric")
    target = _mapping(source.get("target"), f"{where}.{_key(kind)}.target")
    try:
        target_type = TargetType(target.get("type"))
    except ValueError as e:
        raise HPASpecError(f"{where}: unknown target type {target.get('type')!r}") from e
    field_name = "value" if target_type is TargetType.VALUE else "averageValue"
    text = target.get(field_name)
    described = None
    if kind is MetricType.OBJECT:
        obj = _mapping(source.get("describedObject"), f"{where}.object.describedObject")
        described = DescribedObject(
            str(obj.get("kind", "")), str(obj.get("name", "")), str(obj.get("apiVersion", ""))
        )
    milli: int | None = None
    if kind in (MetricType.PODS, MetricType.OBJECT) and target_type is not TargetType.UTILIZATION:
        if kind is MetricType.PODS and target_type is not TargetType.AVERAGE_VALUE:
            raise HPASpecError(f"{where}: a Pods metric's target must be an AverageValue")
        if text is None:
            raise HPASpecError(f"{where}: target.{field_name} is required")
        try:
            milli = milli_value(str(text))
        except ValueError as e:
            raise HPASpecError(f"{where}: target.{field_name}: {e}") from e
        if milli <= 0:
            raise HPASpecError(f"{where}: target.{field_name} must be positive")
    selector = metric.get("selector")
    return MetricSpec(
        type=kind,
        name=str(metric.get("name", "")),
        target_type=target_type,
        target_milli=milli,
        target_text="" if text is None else str(text),
        described_object=described,
        metric_selector=selector if isinstance(selector, Mapping) else None,
    )


def _key(kind: MetricType) -> str:
    return {
        MetricType.PODS: "pods",
        MetricType.OBJECT: "object",
        MetricType.RESOURCE: "resource",
        MetricType.CONTAINER_RESOURCE: "containerResource",
        MetricType.EXTERNAL: "external",
    }[kind]


def _behavior(raw: Mapping[str, Any]) -> Behavior:
    up = raw.get("scaleUp")
    down = raw.get("scaleDown")
    return Behavior(
        scale_up=_rules(up, DEFAULT_SCALE_UP, "spec.behavior.scaleUp"),
        scale_down=_rules(down, DEFAULT_SCALE_DOWN, "spec.behavior.scaleDown"),
    )


def _rules(raw: object, default: ScalingRules, where: str) -> ScalingRules:
    """``GenerateHPAScaleUpRules``/``GenerateHPAScaleDownRules``: each unset part defaulted."""
    if raw is None:
        return default
    rules = _mapping(raw, where)
    window = rules.get("stabilizationWindowSeconds")
    select = rules.get("selectPolicy")
    policies_raw = rules.get("policies")
    policies: Sequence[ScalingPolicy]
    if policies_raw is None:
        policies = default.policies
    else:
        if not isinstance(policies_raw, list):
            raise HPASpecError(f"{where}.policies must be a list")
        policies = [_policy(p, f"{where}.policies[{i}]") for i, p in enumerate(policies_raw)]
    try:
        select_policy = default.select_policy if select is None else SelectPolicy(select)
    except ValueError as e:
        raise HPASpecError(f"{where}.selectPolicy: {select!r} is not Max, Min or Disabled") from e
    return ScalingRules(
        stabilization_window_seconds=(
            default.stabilization_window_seconds
            if window is None
            else _int(window, f"{where}.stabilizationWindowSeconds")
        ),
        select_policy=select_policy,
        policies=tuple(policies),
    )


def _policy(raw: object, where: str) -> ScalingPolicy:
    item = _mapping(raw, where)
    try:
        kind = PolicyType(item.get("type"))
    except ValueError as e:
        raise HPASpecError(f"{where}.type: {item.get('type')!r} is not Pods or Percent") from e
    return ScalingPolicy(
        kind, _int(item.get("value"), f"{where}.value"), _int(item.get("periodSeconds"), where)
    )


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise HPASpecError(f"{where} must be a mapping")
    return value


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise HPASpecError(f"{where} must be an integer")
    return value
