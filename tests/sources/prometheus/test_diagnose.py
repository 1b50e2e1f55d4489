"""``PrometheusDiagnoser``: the rule's facts and why a pod has no value (nan, stale, no_value)."""

from __future__ import annotations

from adapter.core.model import MetricName
from adapter.core.selectors import parse_selector
from adapter.sources.prometheus import PrometheusSource
from adapter.sources.prometheus.diagnose import PrometheusDiagnoser
from adapter.sources.prometheus.promql import matchers_from_selector
from adapter.sources.prometheus.transport import PromSample
from tests.fakes.clock import FakeClock
from tests.fakes.prometheus_api import FakePrometheusAPI

from .helpers import bucket_rows, latency_rule, pod
from .test_families import NOW, answering, gauge_rows, queue

LATENCY = MetricName("inference_latency_p95")


async def test_nan_stale_and_no_value() -> None:
    clock = FakeClock(1_000_000.0)
    now = clock()

    def answer(_expr: str) -> list[PromSample]:
        busy = {"0.1": 5.0, "0.5": 9.0, "+Inf": 10.0}
        idle = {"0.1": 0.0, "0.5": 0.0, "+Inf": 0.0}  # no traffic in the window: NaN
        return bucket_rows("ml", "busy", busy, now) + bucket_rows("ml", "idle", idle, now)

    source = PrometheusSource(
        FakePrometheusAPI(answer), [latency_rule()], refresh_interval=15, clock=clock
    )
    await source.refresh_once()
    diagnoser = PrometheusDiagnoser(source)
    pods = [pod("ml", "busy"), pod("ml", "idle"), pod("ml", "absent")]
    assert diagnoser.diagnose(LATENCY, pods, clock()) == {
        ("ml", "busy"): "no_value",  # has a value: only asked about pods the read left out
        ("ml", "idle"): "nan",
        ("ml", "absent"): "no_value",
    }
    clock.advance(46)  # past the 45 s staleness bound
    assert diagnoser.diagnose(LATENCY, pods[:1], clock())[("ml", "busy")] == "stale"
    facts = diagnoser.describe(LATENCY, clock())
    assert facts == {
        "form": "histogram",
        "query": latency_rule().query(),
        "windowSeconds": 120,
        "snapshotAgeSeconds": 46.0,
        "snapshotPods": 1,
        "dropped": {"nan": 1},
    }


def test_unknown_metric_and_no_snapshot_yet() -> None:
    source = PrometheusSource(FakePrometheusAPI(), [latency_rule()], clock=FakeClock(1_000_000.0))
    diagnoser = PrometheusDiagnoser(source)
    assert diagnoser.describe(MetricName("nope"), 0.0) == {}
    assert diagnoser.describe(LATENCY, 0.0)["snapshotAgeSeconds"] is None
    assert diagnoser.diagnose(LATENCY, [pod("ml", "a")], 0.0) == {("ml", "a"): "no_value"}


def test_the_query_shown_carries_the_reads_metric_selector() -> None:
    source = PrometheusSource(FakePrometheusAPI(), [latency_rule()], clock=FakeClock(1_000_000.0))
    facts = PrometheusDiagnoser(source).describe(LATENCY, 0.0, parse_selector("model=llama"))
    assert facts["query"] == (
        "sum by (namespace, pod, le) (rate(inference_duration_seconds_bucket"
        '{namespace!="",pod!="",model="llama"}[2m]))'
    )


async def test_a_built_in_read_from_server_families_shows_each_familys_query() -> None:
    rule = queue()
    clock = FakeClock(NOW)
    api = answering({"vllm:num_requests_waiting": gauge_rows("a", 3)})
    source = PrometheusSource(api, [rule], clock=clock)
    await source.refresh_once()
    diagnoser = PrometheusDiagnoser(source)
    queue_metric = MetricName("inference_queue_depth")
    facts = diagnoser.describe(queue_metric, clock(), parse_selector("model=llama"))
    assert facts["form"] == "families"
    assert "query" not in facts
    assert facts["queries"] == dict(
        rule.queries(matchers_from_selector(parse_selector("model=llama")))
    )
    assert list(facts["queries"]) == [family.name for family in rule.families]
    assert all('model="llama"' in q for q in facts["queries"].values())
    assert diagnoser.pod_facts(queue_metric, [pod("ml", "a"), pod("ml", "b")], clock()) == {
        ("ml", "a"): {"family": "vllm"}
    }
