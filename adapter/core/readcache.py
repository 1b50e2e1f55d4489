"""Answers to metric reads, computed once per state and reused until that state changes.

The data behind a read changes once per refresh (a source's snapshot swap), per
pod event, or per config reload, while the HPAs, kubectl and Grafana read the
same shapes over and over. So the answer to a read shape (metric path, label
selector) is kept together with its rendered bodies, and a read whose state has
not changed is a dictionary lookup.

Owner: the :class:`~adapter.core.resolver.Resolver`, one cache per resolver;
nothing else reads or writes it.

Invalidation rule (the only one): an entry answers a read only while

1. the state it was computed from is still the current state: the same
   catalogue object (a reload makes a new one), the same pod index generation
   (every pod event bumps it) and the same version of the metric's source
   (every snapshot swap or rules update bumps it); and
2. the clock is in ``[computed_at, valid_until)``, where ``valid_until`` is the
   earliest moment the answer could change with no event at all: a pod's
   warm-up ends, or a value the source holds goes stale.

Anything else is recomputed by the uncached path, so a pod change, a snapshot
swap or a config reload is visible to the very next read. ``Resolver.warm``
recomputes changed entries ahead of the next read (``serve`` runs it every
second) under the same rule; it only saves the reader the work. Reads with a
metricLabelSelector, and reads of a source or pod lister that does not publish
versions (``VersionedSource``, ``VersionedPods``), are never cached.

The cache holds at most ``max_entries`` shapes and ``max_items`` values in all
(its memory is about proportional to the values: each keeps its MetricValue and
its rendered item); the oldest computed is dropped first. ``max_entries=0``
disables it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from adapter.core.model import MetricValue

Render = Callable[[str, Sequence[MetricValue]], bytes]
"""Renders a MetricValueList body for an API version (the HTTP edge supplies it)."""


@dataclass(frozen=True, slots=True)
class State:
    """What an answer was computed from. Compared by identity and version numbers only."""

    catalogue: object
    pods: int
    source: int

    def same(self, other: State | None) -> bool:
        return (
            other is not None
            and self.catalogue is other.catalogue
            and self.pods == other.pods
            and self.source == other.source
        )


@dataclass(slots=True)
class Answer:
    """The answer to one read: values (sorted by object), what was left out, and bodies.

    ``omitted`` counts pods left out by reason (``not_ready``, ``warming_up``,
    ``no_value``), replayed into the self metrics on every read served from it.
    ``bodies`` memoizes the rendered MetricValueList per API version: an Answer
    is immutable once built, so its body is too.
    """

    values: Sequence[MetricValue]
    omitted: Mapping[str, int]
    valid_until: float = float("inf")
    bodies: dict[str, bytes] = field(default_factory=dict)

    def body(self, version: str, render: Render) -> bytes:
        """The rendered body for ``version``, rendered once per Answer."""
        body = self.bodies.get(version)
        if body is None:
            body = self.bodies[version] = render(version, self.values)
        return body


@dataclass(slots=True)
class Entry:
    state: State
    computed_at: float
    answer: Answer
    last_read: float
    origin: object = None
    """What the owner needs to recompute the entry (the read it answers)."""


class ReadCache:
    """Answers by read shape, under the invalidation rule of this module."""

    def __init__(self, max_entries: int = 1024, max_items: int = 100_000) -> None:
        self._max = max_entries
        self._max_items = max_items
        self._items = 0
        self._entries: dict[Hashable, Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, state: State, now: float) -> Answer | None:
        """The cached answer for ``key`` if it is still valid in ``state`` at ``now``."""
        entry = self._entries.get(key)
        if entry is None or not valid(entry, state, now):
            return None
        entry.last_read = now
        return entry.answer

    def put(
        self,
        key: Hashable,
        state: State,
        now: float,
        answer: Answer,
        origin: object = None,
        *,
        read: bool = True,
    ) -> None:
        """Keep ``answer`` for ``key``, computed in ``state`` at ``now``. ``read=False``
        (a recomputation ahead of reads) keeps the entry's last read time."""
        if self._max <= 0:  # a cache of size 0 keeps nothing: the uncached path, always
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._items -= len(old.answer.values)
        last_read = now if read or old is None else old.last_read
        self._entries[key] = Entry(state, now, answer, last_read, origin)
        self._items += len(answer.values)
        while len(self._entries) > 1 and (
            len(self._entries) > self._max or self._items > self._max_items
        ):
            self.discard(next(iter(self._entries)))

    def items(self) -> Iterator[tuple[Hashable, Entry]]:
        """A snapshot of the entries (safe to mutate the cache while iterating)."""
        return iter(list(self._entries.items()))

    def discard(self, key: Hashable) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._items -= len(old.answer.values)

    def clear(self) -> None:
        self._entries.clear()
        self._items = 0


def valid(entry: Entry, state: State, now: float) -> bool:
    """The invalidation rule: same state, and ``computed_at <= now < valid_until``."""
    return entry.state.same(state) and entry.computed_at <= now < entry.answer.valid_until


class Expiries:
    """The moments a source's values go stale, for ``VersionedSource.valid_until``.

    A value with ``fresh_until = f`` is served while ``now <= f``; the answers
    computed at ``now`` therefore hold for every ``t < first_at_or_after(now)``.
    """

    __slots__ = ("_times",)

    def __init__(self, fresh_until: Iterable[float]) -> None:
        self._times = sorted(set(fresh_until))

    def first_at_or_after(self, now: float) -> float:
        """The earliest ``fresh_until >= now``, or ``inf`` when no held value will expire."""
        i = bisect.bisect_left(self._times, now)
        return self._times[i] if i < len(self._times) else math.inf
