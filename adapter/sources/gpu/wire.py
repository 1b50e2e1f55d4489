"""The collector's ``/snapshot`` document, validated strictly into frozen values.

The shape is documented in ``collectors.gpu.server``; the adapter does not
import the collector (they are separate programs), so it is restated here as
the reader sees it. Rules:

- Every documented field must be present with its type; numbers are finite
  (``NaN`` and ``Infinity`` tokens are rejected, booleans are not numbers),
  utilizations lie in [0, 100], times and windows are positive.
- A GPU whose status is not ``ok`` must have a ``null`` utilization (the
  collector reports unsupported or lost devices as such, never as a number).
- A pod appears at most once.
- Unknown extra fields are ignored, so a newer collector can add fields
  without breaking an older adapter during a rolling upgrade.

Anything else raises :class:`MalformedSnapshot` naming the first offending
field; the whole document is then rejected (a half-read node is worse than a
node whose last good values age out).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from adapter.core.model import Namespace, NodeName, PodName, PodUID

__all__ = ["GpuValue", "MalformedSnapshot", "NodeSnapshot", "PodValue", "parse_snapshot"]

OK: Final = "ok"


class MalformedSnapshot(ValueError):
    """A ``/snapshot`` document that does not follow the collector's contract."""


@dataclass(frozen=True, slots=True)
class PodValue:
    """One pod's GPU utilization on a node: window mean (percent) and its newest sample time."""

    namespace: Namespace
    pod: PodName
    uid: PodUID | None
    utilization: float
    sample_time: float


@dataclass(frozen=True, slots=True)
class GpuValue:
    """One full GPU (``mig`` False) or MIG device; ``utilization`` None unless measured."""

    index: int
    uuid: str
    mig: bool
    status: str
    utilization: float | None


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    node: NodeName
    simulated: bool
    ready: bool
    sampled_at: float | None
    window_seconds: float
    pods: tuple[PodValue, ...]
    gpus: tuple[GpuValue, ...]


def parse_snapshot(body: bytes | str) -> NodeSnapshot:
    """Decode and validate one document. Raises MalformedSnapshot."""
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, NaN
        raise MalformedSnapshot(f"not JSON: {e}") from e
    root = _object(doc, "$")
    ready = _bool(root, "ready", "$")
    sampled_at = _number(root, "sampledAt", "$", nullable=True)
    if ready and sampled_at is None:
        raise MalformedSnapshot("$.sampledAt: null although ready is true")
    if sampled_at is not None and sampled_at <= 0:
        raise MalformedSnapshot("$.sampledAt: must be positive")
    window = _number(root, "windowSeconds", "$")
    if window is None or window <= 0:
        raise MalformedSnapshot("$.windowSeconds: must be positive")
    node = _string(root, "node", "$")
    if not node:
        raise MalformedSnapshot("$.node: empty")
    return NodeSnapshot(
        node=NodeName(node),
        simulated=_bool(root, "simulated", "$"),
        ready=ready,
        sampled_at=sampled_at,
        window_seconds=window,
        pods=_pods(_list(root, "pods", "$")),
        gpus=tuple(_gpu(item, f"$.gpus[{i}]") for i, item in enumerate(_list(root, "gpus", "$"))),
    )


def _pods(items: list[Any]) -> tuple[PodValue, ...]:
    pods: dict[tuple[str, str], PodValue] = {}
    for i, item in enumerate(items):
        fast = _pod_fast(item)
        if fast is not None and (fast.namespace, fast.pod) not in pods:
            pods[(fast.namespace, fast.pod)] = fast
            continue
        where = f"$.pods[{i}]"
        obj = _object(item, where)
        namespace, name = _string(obj, "namespace", where), _string(obj, "pod", where)
        if not namespace or not name:
            raise MalformedSnapshot(f"{where}: empty namespace or pod name")
        if (namespace, name) in pods:
            raise MalformedSnapshot(f"{where}: pod {namespace}/{name} appears twice")
        uid = _string(obj, "uid", where, nullable=True)
        sample_time = _number(obj, "sampleTime", where)
        if sample_time is None or sample_time <= 0:
            raise MalformedSnapshot(f"{where}.sampleTime: must be positive")
        pods[(namespace, name)] = PodValue(
            namespace=Namespace(namespace),
            pod=PodName(name),
            uid=PodUID(uid) if uid else None,
            utilization=_required_percent(obj, "utilization", where),
            sample_time=sample_time,
        )
    return tuple(pods.values())


def _gpu(item: Any, where: str) -> GpuValue:
    fast = _gpu_fast(item)
    if fast is not None:
        return fast
    obj = _object(item, where)
    index = obj.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise MalformedSnapshot(f"{where}.index: a non-negative integer is required")
    status = _string(obj, "status", where)
    utilization = _percent(obj, "utilization", where)
    if status != OK and utilization is not None:
        raise MalformedSnapshot(f"{where}.utilization: a number although status is {status!r}")
    return GpuValue(
        index=index,
        uuid=_string(obj, "uuid", where),
        mig=_bool(obj, "mig", where),
        status=status,
        utilization=utilization,
    )


# --- fast paths ----------------------------------------------------------------------------------
# A thousand collectors times tens of entries per round: the common, valid entry is checked here
# with plain type tests. Anything these do not accept goes through the field-by-field path above,
# which is the reference and names what is wrong. They accept exactly a subset of what it does.

_BIG: Final = 2**53
_MISSING: Final = object()


def _finite(value: Any) -> float | None:
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int and -_BIG < value < _BIG:
        return float(value)
    return None


def _pod_fast(item: Any) -> PodValue | None:
    if type(item) is not dict:
        return None
    namespace, name, uid = item.get("namespace"), item.get("pod"), item.get("uid", _MISSING)
    utilization = _finite(item.get("utilization"))
    sample_time = _finite(item.get("sampleTime"))
    if (
        type(namespace) is not str
        or not namespace
        or type(name) is not str
        or not name
        or (uid is not None and type(uid) is not str)
        or utilization is None
        or not 0.0 <= utilization <= 100.0
        or sample_time is None
        or sample_time <= 0
    ):
        return None
    return PodValue(
        Namespace(namespace), PodName(name), PodUID(uid) if uid else None, utilization, sample_time
    )


def _gpu_fast(item: Any) -> GpuValue | None:
    if type(item) is not dict:
        return None
    index, uuid, mig = item.get("index"), item.get("uuid"), item.get("mig")
    status, raw = item.get("status"), item.get("utilization", _MISSING)
    utilization = None if raw is None else _finite(raw)
    if (
        type(index) is not int
        or index < 0
        or type(uuid) is not str
        or type(mig) is not bool
        or type(status) is not str
        or (raw is not None and (utilization is None or not 0.0 <= utilization <= 100.0))
        or (status != OK and utilization is not None)
    ):
        return None
    return GpuValue(index, uuid, mig, status, utilization)


# --- typed field access --------------------------------------------------------------------------


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MalformedSnapshot(f"{where}: an object is required")
    return value


def _field(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise MalformedSnapshot(f"{where}.{key}: missing")
    return obj[key]


def _list(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = _field(obj, key, where)
    if not isinstance(value, list):
        raise MalformedSnapshot(f"{where}.{key}: a list is required")
    return value


def _bool(obj: Mapping[str, Any], key: str, where: str) -> bool:
    value = _field(obj, key, where)
    if not isinstance(value, bool):
        raise MalformedSnapshot(f"{where}.{key}: true or false is required")
    return value


def _string(obj: Mapping[str, Any], key: str, where: str, *, nullable: bool = False) -> str:
    value = _field(obj, key, where)
    if value is None and nullable:
        return ""
    if not isinstance(value, str):
        raise MalformedSnapshot(f"{where}.{key}: a string is required")
    return value


def _number(
    obj: Mapping[str, Any], key: str, where: str, *, nullable: bool = False
) -> float | None:
    value = _field(obj, key, where)
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedSnapshot(f"{where}.{key}: a number is required")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        number = math.inf
    if not math.isfinite(number):  # 1e999 is read as inf
        raise MalformedSnapshot(f"{where}.{key}: not finite")
    return number


def _percent(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    value = _number(obj, key, where, nullable=True)
    if value is not None and not 0.0 <= value <= 100.0:
        raise MalformedSnapshot(f"{where}.{key}: {value} is outside [0, 100]")
    return value


def _required_percent(obj: Mapping[str, Any], key: str, where: str) -> float:
    value = _percent(obj, key, where)
    if value is None:
        raise MalformedSnapshot(f"{where}.{key}: null")
    return value
