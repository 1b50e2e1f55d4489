"""The rules file's Prometheus blocks are parsed once per load, and the source reuses them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapter.app import catalogue_holder
from adapter.core.catalogue import Catalogue
from adapter.sources.prometheus import catalogue as prometheus_catalogue
from adapter.sources.prometheus.rules import FamilyRule, GaugeRule

BUILTINS = [
    "inference_latency_p95",
    "inference_queue_depth",
    "inference_kv_cache_utilization",
    "inference_requests_running",
]


def counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"parse_rule": 0, "parse_prometheus_block": 0}
    for name in calls:
        real = getattr(prometheus_catalogue, name)

        def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls[_name] += 1
            return _real(*args)

        monkeypatch.setattr(prometheus_catalogue, name, counted)
    return calls


def test_each_rule_is_parsed_once_per_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = counting(monkeypatch)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        "prometheus: {podLabel: pod_name}\n"
        "metrics:\n"
        "  - {name: tps, source: prometheus, aggregate: sum, prometheus: {gauge: tokens}}\n"
    )
    holder = catalogue_holder(rules_file)
    assert calls == {"parse_rule": 5, "parse_prometheus_block": 1}

    first = prometheus_catalogue.rules_of(holder())
    second = prometheus_catalogue.rules_of(holder())

    assert calls == {"parse_rule": 5, "parse_prometheus_block": 1}  # rules_of never parses
    assert [rule.metric for rule in first] == [*BUILTINS, "tps"]
    assert all(a is b for a, b in zip(first, second, strict=True))
    assert all(isinstance(rule, FamilyRule) for rule in first[:4])
    assert isinstance(first[4], GaugeRule)
    assert "pod_name" in first[4].query()


def test_a_catalogue_not_read_by_the_rules_file_is_refused() -> None:
    spec = catalogue_holder(None)().metrics["inference_queue_depth"]  # type: ignore[index]
    bare = Catalogue(metrics={spec.name: type(spec)(spec.name, spec.source, spec.resources)})
    with pytest.raises(TypeError, match="inference_queue_depth has no Prometheus rule"):
        prometheus_catalogue.rules_of(bare)
