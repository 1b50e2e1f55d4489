"""Splitting a large refresh query into shards by the pod's last character.

The one owner of sharding: which queries may be split, into how many shards,
and with which matchers. :class:`PrometheusSource` asks :class:`ShardPlanner`
how many shards each query of its next refresh gets, renders them with
:func:`shard_matchers` through the rules' ``extra`` matcher path, sends them
concurrently (each answer is decoded in the transport's worker thread as soon as
it lands, while Prometheus still evaluates the others), joins the answers with
:func:`join` and builds the snapshot once.

Contract:

- **Partition.** For K shards of a query, shard ``i < K - 1`` adds
  ``pod=~".*[<chars_i>]"`` and the last one ``pod!~".*[<chars of all the others>]"``
  (``pod`` being the query's own pod label). Prometheus anchors regexes at both
  ends, and the character sets are disjoint, so every possible label value,
  the empty one, a newline or any other character included, is accepted by
  exactly one shard (whether ``.`` matches a newline or not: a value ``.*``
  cannot cross is refused by every ``=~`` shard and so accepted by the
  ``!~`` one). Every query split here groups by the pod label (histogram,
  gauge and built-in family queries: ``... by (namespace, pod, ...)``, and an
  ``or`` matches whole label sets, the pod's included), so the shards' answers
  partition the unsplit answer: joined, they are the same series. A query
  template (``query:``) is never split, since nothing guarantees its
  ``<<matchers>>`` sit under a grouping by pod.
- **When it splits.** Per (rule, query): the first refresh (size unknown) sends
  one query; each successful answer's series count sets the next refresh's
  shards to ``ceil(series / series_per_shard)``, at most ``max_shards``. A
  failed query keeps the last known size. metricLabelSelector queries are
  never split (they are small and answered while a client waits).
- **Failure.** A query fails as a whole: any shard failing fails it exactly
  as one failed query does (the rule keeps its previous snapshot; a family rule
  fails whole, so no pod moves to a later family), and is counted as one error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import Final

from adapter.sources.prometheus.promql import LabelMatcher, MatchOp
from adapter.sources.prometheus.rules import (
    FamilyRule,
    GaugeRule,
    HistogramRule,
    PrometheusRule,
    TemplateRule,
)
from adapter.sources.prometheus.transport import Columns, PromSample

__all__ = [
    "ALPHABET",
    "DEFAULT_MAX_SHARDS",
    "DEFAULT_SERIES_PER_SHARD",
    "MAX_SHARDS",
    "RuleQuery",
    "ShardPlanner",
    "join",
    "queries_of",
    "shard_matchers",
    "shards_for",
]

ALPHABET: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
"""The characters a Kubernetes pod name ends with (a DNS-1123 name ends in ``[a-z0-9]``),
dealt round-robin to the shards; any other last character falls in the last shard."""

MAX_SHARDS: Final = 16
"""The most shards :func:`shard_matchers` makes (each named shard gets two characters
or more of :data:`ALPHABET`)."""

DEFAULT_SERIES_PER_SHARD: Final = 20_000
"""Series per shard aimed at (see ``--prometheus-max-query-shards``)."""

DEFAULT_MAX_SHARDS: Final = 4
"""The default of ``--prometheus-max-query-shards``."""


def _bracket(chars: Iterable[str]) -> str:
    """An RE2 character class of exactly ``chars``: every ASCII character but letters
    and digits is escaped (``\\``, ``]``, ``[``, ``^``, ``-`` are special inside one;
    RE2 reads any escaped ASCII punctuation or control character as itself, and
    refuses an escaped non-ASCII one, which is literal unescaped)."""
    return "[" + "".join("\\" + c if c.isascii() and not c.isalnum() else c for c in chars) + "]"


def shard_matchers(
    pod_label: str, shards: int, alphabet: str = ALPHABET
) -> tuple[tuple[LabelMatcher, ...], ...]:
    """The extra matchers of each of ``shards`` shards; ``((),)`` for one (no split).

    ``alphabet``'s characters (distinct, each ASCII punctuation, letter or digit
    or any other character) are dealt round-robin to the shards; the last shard
    is the complement of the others. Raises ValueError outside 1..MAX_SHARDS or
    when the alphabet has fewer characters than shards - 1 named shards need.
    """
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be within 1..{MAX_SHARDS}, not {shards}")
    if shards == 1:
        return ((),)
    if len(set(alphabet)) != len(alphabet) or len(alphabet) < shards:
        raise ValueError("the alphabet needs distinct characters, at least one per shard")
    named = [alphabet[i::shards] for i in range(shards - 1)]
    return (
        *((LabelMatcher(pod_label, MatchOp.RE, ".*" + _bracket(chars)),) for chars in named),
        (LabelMatcher(pod_label, MatchOp.NRE, ".*" + _bracket(chain.from_iterable(named))),),
    )


def shards_for(series: int | None, series_per_shard: int, max_shards: int) -> int:
    """``ceil(series / series_per_shard)`` within 1..max_shards; 1 when unknown."""
    if series is None or series <= 0:
        return 1
    return max(1, min(max_shards, math.ceil(series / series_per_shard)))


@dataclass(frozen=True, slots=True)
class RuleQuery:
    """One query a rule sends per refresh: rendered with extra matchers, and the
    label its series carry the pod in (what its shards match on)."""

    render: Callable[[Sequence[LabelMatcher]], str]
    pod_label: str
    splittable: bool


def queries_of(rule: PrometheusRule) -> tuple[RuleQuery, ...]:
    """The queries ``rule`` sends per refresh, in order (one per family for a
    family rule, each with its family's pod label); a template is not splittable."""
    if isinstance(rule, FamilyRule):
        return tuple(
            RuleQuery(
                partial(rule.family_query, index), rule.labels_for(index).pod, splittable=True
            )
            for index in range(len(rule.families))
        )
    if isinstance(rule, HistogramRule | GaugeRule):
        return (RuleQuery(rule.query, rule.labels.pod, splittable=True),)
    assert isinstance(rule, TemplateRule)
    return (RuleQuery(rule.query, rule.labels.pod, splittable=False),)


class ShardPlanner:
    """How many shards each (rule, query index) gets on the next refresh.

    Remembers the series count of each query's last successful answer;
    :meth:`retain` forgets rules no longer configured (a changed rule starts
    unsplit again). Not thread-safe: the source's event loop owns it.
    """

    def __init__(
        self,
        *,
        max_shards: int = DEFAULT_MAX_SHARDS,
        series_per_shard: int = DEFAULT_SERIES_PER_SHARD,
    ) -> None:
        if not 1 <= max_shards <= MAX_SHARDS:
            raise ValueError(f"max_shards must be within 1..{MAX_SHARDS}")
        if series_per_shard < 1:
            raise ValueError("series_per_shard must be at least 1")
        self._max = max_shards
        self._per_shard = series_per_shard
        self._sizes: dict[tuple[PrometheusRule, int], int] = {}

    def shards(self, rule: PrometheusRule, index: int, query: RuleQuery) -> int:
        """Shards of the next refresh's ``index``-th query of ``rule``."""
        if not query.splittable:
            return 1
        return shards_for(self._sizes.get((rule, index)), self._per_shard, self._max)

    def answered(self, rule: PrometheusRule, index: int, series: int) -> None:
        """Record the size of a successful answer (all shards joined)."""
        self._sizes[rule, index] = series

    def retain(self, rules: Iterable[PrometheusRule]) -> None:
        """Forget the sizes of rules not in ``rules``."""
        keep = set(rules)
        for key in [key for key in self._sizes if key[0] not in keep]:
            del self._sizes[key]

    def planned(self, rule: PrometheusRule) -> int:
        """PromQL queries ``rule``'s next refresh sends (its queries' shards, summed)."""
        return sum(self.shards(rule, i, q) for i, q in enumerate(queries_of(rule)))


def join(parts: Sequence[Sequence[PromSample]]) -> Sequence[PromSample]:
    """The shards' answers as one vector: :meth:`Columns.concat` when every non-empty
    part is a Columns with the same label names, else a plain list of the samples."""
    present = [part for part in parts if len(part)]
    if len(present) <= 1:
        return present[0] if present else (parts[0] if parts else [])
    columns = [part for part in present if isinstance(part, Columns)]
    if len(columns) == len(present) and len({part.names for part in columns}) == 1:
        return Columns.concat(columns)
    return list(chain.from_iterable(present))
