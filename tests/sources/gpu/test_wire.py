"""The /snapshot reader: the collector's exact output accepted, every contract breach rejected."""

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.core.model import Namespace, PodName, PodUID
from adapter.sources.gpu import wire
from adapter.sources.gpu.wire import GpuValue, MalformedSnapshot, PodValue, parse_snapshot
from tests.sources.gpu.helpers import T0, gpu_doc, pod_doc, snapshot_doc


def good() -> dict[str, Any]:
    return snapshot_doc(
        "n1",
        [pod_doc("a", 73.25, sample_time=T0 - 1, uid="uid-a"), pod_doc("b", 0.0, sample_time=T0)],
        [55.5, None],
        sampled_at=T0,
    )


def test_a_complete_document() -> None:
    snap = parse_snapshot(json.dumps(good()))
    assert snap.node == "n1"
    assert (snap.ready, snap.simulated, snap.sampled_at, snap.window_seconds) == (
        True,
        False,
        T0,
        10,
    )
    ml = Namespace("ml")
    assert snap.pods == (
        PodValue(ml, PodName("a"), PodUID("uid-a"), 73.25, T0 - 1),
        PodValue(ml, PodName("b"), None, 0.0, T0),
    )
    assert snap.gpus == (
        GpuValue(0, "GPU-0", False, "ok", 55.5),
        GpuValue(1, "GPU-1", False, "ok", None),
    )


def test_unknown_fields_are_ignored() -> None:
    doc = good()
    doc["newField"] = {"x": 1}
    doc["pods"][0]["containers"] = []
    assert parse_snapshot(json.dumps(doc)).pods[0].utilization == 73.25


def test_a_not_ready_document_may_have_no_sample_time() -> None:
    doc = snapshot_doc("n1", ready=False)
    doc["sampledAt"] = None
    snap = parse_snapshot(json.dumps(doc))
    assert (snap.ready, snap.sampled_at) == (False, None)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value

    return apply


MALFORMED = {
    "an unrelated object": lambda d: d.clear() or d.update({"_": 1}),
    "node missing": _set("node", KeyError),
    "node empty": _set("node", ""),
    "node a number": _set("node", 3),
    "simulated a string": _set("simulated", "false"),
    "ready missing": _set("ready", KeyError),
    "sampledAt null while ready": _set("sampledAt", None),
    "sampledAt a string": _set("sampledAt", "now"),
    "sampledAt a bool": _set("sampledAt", True),
    "windowSeconds zero": _set("windowSeconds", 0),
    "pods not a list": _set("pods", {}),
    "gpus missing": _set("gpus", KeyError),
    "pod not an object": _set("pods", [1]),
    "pod name missing": _set("pods.0.pod", KeyError),
    "pod namespace empty": _set("pods.0.namespace", ""),
    "pod uid a number": _set("pods.0.uid", 7),
    "pod utilization null": _set("pods.0.utilization", None),
    "pod utilization negative": _set("pods.0.utilization", -0.5),
    "pod utilization over 100": _set("pods.0.utilization", 100.5),
    "pod utilization a string": _set("pods.0.utilization", "73"),
    "pod utilization huge": _set("pods.0.utilization", 10**400),
    "pod sampleTime missing": _set("pods.0.sampleTime", KeyError),
    "pod sampleTime zero": _set("pods.0.sampleTime", 0),
    "gpu index negative": _set("gpus.0.index", -1),
    "gpu index a float": _set("gpus.0.index", 0.5),
    "gpu utilization on a lost gpu": lambda d: d["gpus"].__setitem__(
        0, gpu_doc(0, 0.0, status="lost")
    ),
    "gpu mig missing": _set("gpus.0.mig", KeyError),
    "duplicate pod": lambda d: d["pods"].append(copy.deepcopy(d["pods"][0])),
}


@pytest.mark.parametrize("mutate", MALFORMED.values(), ids=MALFORMED.keys())
def test_contract_breaches_are_rejected(mutate: Callable[[dict[str, Any]], None]) -> None:
    doc = good()
    mutate(doc)
    with pytest.raises(MalformedSnapshot):
        parse_snapshot(json.dumps(doc))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>oops</html>",
        b"[]",
        b"\xff\xfe",
        json.dumps(good()).replace("73.25", "NaN").encode(),
        json.dumps(good()).replace("73.25", "Infinity").encode(),
        json.dumps(good()).replace("73.25", "1e999").encode(),
        b"[" * 100_000,
    ],
    ids=["empty", "html", "list", "bad utf-8", "NaN", "Infinity", "overflow", "deep nesting"],
)
def test_garbage_is_rejected(body: bytes) -> None:
    with pytest.raises(MalformedSnapshot):
        parse_snapshot(body)


def test_messages_name_the_field() -> None:
    doc = good()
    doc["pods"][0]["utilization"] = 101
    with pytest.raises(MalformedSnapshot, match=r"\$\.pods\[0\]\.utilization: 101.0 is outside"):
        parse_snapshot(json.dumps(doc))


# --- the fast paths accept exactly a subset of what the reference path accepts -------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "ml", "ok", "lost", "x"]),
    st.just([]),
)
_pod_keys = st.sampled_from(["namespace", "pod", "uid", "utilization", "sampleTime"])
_gpu_keys = st.sampled_from(["index", "uuid", "mig", "status", "utilization"])


def _parse_or_error(doc: dict[str, Any]) -> Any:
    try:
        return parse_snapshot(json.dumps(doc))
    except MalformedSnapshot:
        return "malformed"


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pod_changes=st.dictionaries(_pod_keys, st.one_of(_values, st.just(KeyError)), max_size=3),
    gpu_changes=st.dictionaries(_gpu_keys, st.one_of(_values, st.just(KeyError)), max_size=3),
)
def test_fast_paths_agree_with_the_reference(
    monkeypatch: pytest.MonkeyPatch, pod_changes: dict[str, Any], gpu_changes: dict[str, Any]
) -> None:
    doc = good()
    for key, value in pod_changes.items():
        _set(f"pods.0.{key}", value)(doc)
    for key, value in gpu_changes.items():
        _set(f"gpus.0.{key}", value)(doc)
    fast = _parse_or_error(doc)
    with monkeypatch.context() as m:
        m.setattr(wire, "_pod_fast", lambda _item: None)
        m.setattr(wire, "_gpu_fast", lambda _item: None)
        reference = _parse_or_error(doc)
    assert fast == reference
