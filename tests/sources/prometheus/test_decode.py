"""The column-wise decoder of query answers equals the generic JSON path, answer for answer.

``transport.decode`` reads an answer in Prometheus' own compact layout straight
into a :class:`Columns` vector and leaves every other answer to ``json``; the
reference here is what the transport did before: ``json.loads`` of the body,
``data.result``, then ``_vector``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from adapter.core.catalogue import Aggregation
from adapter.sources.prometheus import snapshot
from adapter.sources.prometheus.rules import FamilyRule, PrometheusRule, PromLabels, parse_rule
from adapter.sources.prometheus.transport import Columns, PromSample, _vector, decode

from .helpers import latency_rule, queue_rule, spec

PREFIX = '{"status":"success","data":{"resultType":"vector","result":['


def body_of(
    rows: Sequence[dict[str, Any]], *, compact: bool = True, ascii_only: bool = True
) -> bytes:
    """An answer as Prometheus writes it (compact), or with blanks like other servers."""
    answer = {"status": "success", "data": {"resultType": "vector", "result": list(rows)}}
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(answer, separators=separators, ensure_ascii=ascii_only).encode()


def generic(body: bytes) -> Sequence[PromSample]:
    """The transport's decoding before Columns: json, data.result, _vector."""
    return _vector(json.loads(body)["data"]["result"])


def outcome(decoder: Any, body: bytes) -> tuple[str, Any]:
    """(\"ok\", comparable samples) or (\"error\", the exception's type)."""
    try:
        samples = decoder(body)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        return "error", type(e)
    return "ok", comparable(samples)


def comparable(samples: Sequence[PromSample]) -> list[tuple[Any, ...]]:
    """Labels (with their order), time and value, NaN made comparable."""
    return [
        (
            list(s.labels.items()),
            s.timestamp,
            "NaN" if math.isnan(s.value) else s.value,
            math.copysign(1.0, s.value),
        )
        for s in samples
    ]


def fast(body: bytes) -> Sequence[PromSample]:
    return _vector(decode(body))


NAMES = st.sampled_from(["le", "namespace", "pod", "adapter_part", "__name__", "x-y", "ü", 'q"'])
TEXTS = st.one_of(
    st.sampled_from(["", "ml", "p-0", "0.25", "+Inf", "n0", "a,{b", 'say "hi"', "back\\slash"]),
    st.text(max_size=6),
)
VALUES = st.one_of(
    st.sampled_from(["NaN", "+Inf", "-Inf", "-0", "0", "1e-3", "1.5E+2", " 7", "1_0", "x"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
TIMES = st.one_of(
    st.integers(min_value=0, max_value=2**60),
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
)


@st.composite
def answers(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Rows mostly sharing one set of label names (as ``sum by`` answers), sometimes not."""
    names = draw(st.lists(NAMES, unique=True, max_size=4))
    rows = []
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        own = names if draw(st.integers(0, 9)) else draw(st.lists(NAMES, unique=True, max_size=4))
        labels = {name: draw(TEXTS) for name in own}
        rows.append({"metric": labels, "value": [draw(TIMES), draw(VALUES)]})
    return rows


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(answers(), st.booleans(), st.booleans())
def test_decode_equals_the_generic_path(
    rows: list[dict[str, Any]], compact: bool, ascii_only: bool
) -> None:
    body = body_of(rows, compact=compact, ascii_only=ascii_only)
    assert outcome(fast, body) == outcome(generic, body)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["0.1", "1", "+Inf"]), st.sampled_from(["a", "b"]), TIMES, st.floats()
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_compact_answer_with_one_set_of_labels_is_read_by_column(
    series: list[tuple[str, str, float, float]],
) -> None:
    rows = [{"metric": {"le": le, "pod": pod}, "value": [at, repr(v)]} for le, pod, at, v in series]
    body = body_of(rows)
    assert isinstance(decode(body), Columns)
    assert outcome(fast, body) == outcome(generic, body)


@settings(max_examples=300)
@given(answers().filter(bool), st.data())
def test_a_damaged_answer_fails_or_decodes_exactly_as_before(
    rows: list[dict[str, Any]], data: st.DataObject
) -> None:
    """One byte changed, dropped or added anywhere: the same samples or the same error."""
    body = bytearray(body_of(rows))
    at = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    how = data.draw(st.sampled_from(["change", "drop", "add"]))
    byte = data.draw(st.sampled_from(b'{}[],:"\\x 0.-'))
    if how == "change":
        body[at] = byte
    elif how == "drop":
        del body[at]
    else:
        body.insert(at, byte)
    assert outcome(fast, bytes(body)) == outcome(generic, bytes(body))


@pytest.mark.parametrize(
    ("body", "columns"),
    [
        (PREFIX + "]}}", True),
        (PREFIX + '{"metric":{},"value":[1,"2"]}]}}', True),
        (
            PREFIX
            + '{"metric":{"a":"1"},"value":[1.5,"NaN"]},{"metric":{"a":"2"},"value":[2,"3"]}]}}',
            True,
        ),
        # another set of label names in one series: generic
        (
            PREFIX + '{"metric":{"a":"1"},"value":[1,"2"]},{"metric":{"b":"1"},"value":[1,"2"]}]}}',
            False,
        ),
        # an escaped quote, warnings, blanks, a native histogram: generic
        (PREFIX + '{"metric":{"a":"\\"q"},"value":[1,"2"]}]}}', False),
        (PREFIX + '{"metric":{},"value":[1,"2"]}]},"warnings":["w"]}', False),
        (PREFIX + '{"metric": {},"value":[1,"2"]}]}}', False),
        (PREFIX + '{"metric":{},"histogram":[1,{"count":"2"}]}]}}', False),
        # a value float() refuses: generic, which refuses it as it always did
        (PREFIX + '{"metric":{},"value":[1,"two"]}]}}', False),
    ],
)
def test_which_answers_are_read_by_column(body: str, columns: bool) -> None:
    raw = body.encode()
    assert isinstance(decode(raw), Columns) is columns
    assert outcome(fast, raw) == outcome(generic, raw)


def test_columns_index_slice_and_rows() -> None:
    raw = (
        PREFIX + '{"metric":{"le":"0.1","pod":"a"},"value":[10,"1"]},'
        '{"metric":{"le":"+Inf","pod":"a"},"value":[10.5,"NaN"]}]}}'
    ).encode()
    vector = decode(raw)
    assert isinstance(vector, Columns)
    assert len(vector) == 2
    assert vector[0] == PromSample({"le": "0.1", "pod": "a"}, 10.0, 1.0)
    assert vector[-1].labels == {"le": "+Inf", "pod": "a"}
    assert math.isnan(vector[1].value)
    assert [s.timestamp for s in vector[0:2]] == [10.0, 10.5]
    rows = list(vector.rows(("pod", "namespace", "le")))
    assert rows[0] == ("a", "", "0.1", 10.0, 1.0)
    assert rows[1][:4] == ("a", "", "+Inf", 10.5)
    assert math.isnan(rows[1][4])


def test_a_long_answer_is_read_in_chunks_as_one() -> None:
    """More than one chunk (1 MiB) of series: the same samples as json gives."""
    rows = [
        {
            "metric": {"le": le, "namespace": f"n{i % 7}", "pod": f"p-{i}"},
            "value": [1e9 + i, str(i)],
        }
        for i in range(10_000)
        for le in ("0.1", "1", "+Inf")
    ]
    body = body_of(rows)
    assert len(body) > 2 << 20
    assert isinstance(decode(body), Columns)
    assert outcome(fast, body) == outcome(generic, body)


BUCKET_LES = st.sampled_from(["0.05", "0.1", "0.5", "1", "1.0", "+Inf", "bogus", ""])
COUNTS = st.one_of(
    st.floats(min_value=0, max_value=1e6),
    st.sampled_from([math.nan, math.inf, 0.0]),
)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ml", "", "other"]),
            st.sampled_from(["a", "b", "c", ""]),
            BUCKET_LES,
            COUNTS,
            st.sampled_from([1000.0, 990.0, 940.5]),
        ),
        max_size=40,
    )
)
def test_a_histogram_snapshot_built_from_columns_equals_the_one_from_samples(
    series: list[tuple[str, str, str, float, float]],
) -> None:
    """Missing buckets and +Inf, bad le, NaN and Inf rates, unattributed and old series."""
    _assert_columns_build_as_samples(latency_rule(), "le", series)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ml", ""]),
            st.sampled_from(["a", "b", ""]),
            st.sampled_from(["value", "timestamp", "other"]),
            st.one_of(
                st.floats(min_value=0, max_value=2000), st.sampled_from([math.nan, math.inf])
            ),
            st.sampled_from([1000.0, 990.0]),
        ),
        max_size=20,
    )
)
def test_a_gauge_snapshot_built_from_columns_equals_the_one_from_samples(
    series: list[tuple[str, str, str, float, float]],
) -> None:
    """Value and timestamp parts, missing parts, NaN and Inf, stale and unattributed pods."""
    _assert_columns_build_as_samples(queue_rule(), "adapter_part", series)


def _assert_columns_build_as_samples(
    rule: PrometheusRule, label: str, series: list[tuple[str, str, str, float, float]]
) -> None:
    """The snapshot built from the column decoder equals the one built from ``json``.

    ``series``: (namespace, pod, ``label``'s value, sample value, sample time).
    """
    rows = [
        {
            "metric": {label: extra, "namespace": namespace, "pod": pod},
            "value": [at, "NaN" if math.isnan(value) else repr(value).replace("inf", "+Inf")],
        }
        for namespace, pod, extra, value, at in series
    ]
    body = body_of(rows)
    columns = decode(body)
    assume(isinstance(columns, Columns))
    built = snapshot.build(rule, _vector(columns), 1000.0, 45.0)
    reference = snapshot.build(rule, generic(body), 1000.0, 45.0)
    assert repr(sorted(built.pods.items())) == repr(sorted(reference.pods.items()))
    assert built.dropped == reference.dropped


def family_rule(metric: str, aggregate: Aggregation) -> FamilyRule:
    parsed = parse_rule(spec(metric, {"families": "all"}, aggregate), PromLabels())
    assert isinstance(parsed, FamilyRule)
    return parsed


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_family_snapshot_built_from_columns_equals_the_one_from_samples(
    data: st.DataObject,
) -> None:
    """Every family's answer with series tags (absent, known, unknown, not a number),
    buckets or gauge parts, NaN, missing and unattributed rows."""
    latency = data.draw(st.booleans())
    rule = (
        family_rule("inference_latency_p95", Aggregation.HISTOGRAM)
        if latency
        else family_rule("inference_queue_depth", Aggregation.SUM)
    )
    part = (
        ("le", BUCKET_LES) if latency else ("adapter_part", st.sampled_from(["value", "timestamp"]))
    )
    tagged = st.sampled_from([None, "0", "1", "2", "9", "x"])
    bodies = []
    for _ in rule.families:
        tag = data.draw(tagged)
        rows = []
        for _ in range(data.draw(st.integers(min_value=0, max_value=10))):
            labels = {
                part[0]: data.draw(part[1]),
                "namespace": data.draw(st.sampled_from(["ml", ""])),
                "pod": data.draw(st.sampled_from(["a", "b", "c"])),
            }
            row_tag = data.draw(st.sampled_from([tag, tag, "1"]))
            if row_tag is not None:
                labels["adapter_series"] = row_tag
            value = data.draw(COUNTS)
            text = "NaN" if math.isnan(value) else repr(value).replace("inf", "+Inf")
            rows.append({"metric": dict(sorted(labels.items())), "value": [1000.0, text]})
        bodies.append(body_of(rows))
    vectors = [decode(body) for body in bodies]
    assume(any(isinstance(vector, Columns) and len(vector) for vector in vectors))
    references = [generic(body) for body in bodies]
    built = snapshot.build_families(rule, [_vector(v) for v in vectors], 1000.0, 45.0)
    reference = snapshot.build_families(rule, references, 1000.0, 45.0)
    assert repr(sorted(built.pods.items())) == repr(sorted(reference.pods.items()))
    assert built.dropped == reference.dropped
