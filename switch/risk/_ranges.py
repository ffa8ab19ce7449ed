"""Overlapping integer ranges flattened into disjoint segments, looked up by bisection.

Both the BIN table and the IP-country table are "most specific range wins" lookups over possibly
nested ranges. Flattening them once at load time (a sweep over the range boundaries) turns every
lookup into one ``bisect`` over a sorted list of integers, however many ranges overlap.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
V = TypeVar("V")


class Span(Generic[T]):
    """One input range: ``low`` to ``high`` inclusive, ``rank`` orders overlaps (lower wins)."""

    __slots__ = ("high", "low", "rank", "value")

    def __init__(self, low: int, high: int, rank: tuple[int, ...], value: T) -> None:
        """Build a span; ``rank`` must be unique among the spans flattened together."""
        self.low = low
        self.high = high
        self.rank = rank
        self.value = value


class Segments(Generic[V]):
    """Disjoint segments covering the ranges: ``find(x)`` answers the value of x's segment."""

    __slots__ = ("_starts", "_values")

    def __init__(self, starts: list[int], values: list[V | None]) -> None:
        """Wrap sorted segment starts and each segment's value (``None`` for a gap)."""
        self._starts = starts
        self._values = values

    def find(self, point: int) -> V | None:
        """Return the value of the segment holding ``point``, or ``None``."""
        index = bisect_right(self._starts, point) - 1
        return self._values[index] if index >= 0 else None

    def __len__(self) -> int:
        return len(self._starts)


def flatten(spans: Sequence[Span[T]], combine: Callable[[list[T]], V]) -> Segments[V]:
    """Flatten overlapping spans into disjoint segments.

    Args:
        spans: The ranges.
        combine: Builds a segment's value from the values of the spans covering it, most specific
            (lowest rank) first. Called once per distinct set of covering spans.

    Returns:
        The segments; a point covered by no span finds ``None``.
    """
    opening: dict[int, list[int]] = {}
    closing: dict[int, list[int]] = {}
    for index, span in enumerate(spans):
        opening.setdefault(span.low, []).append(index)
        closing.setdefault(span.high + 1, []).append(index)
    active: set[int] = set()
    cache: dict[frozenset[int], V] = {}
    starts: list[int] = []
    values: list[V | None] = []
    for boundary in sorted(opening.keys() | closing.keys()):
        active.difference_update(closing.get(boundary, ()))
        active.update(opening.get(boundary, ()))
        value: V | None = None
        if active:
            # Many segments share one covering set (the gaps between rows inside a brand range).
            signature = frozenset(active)
            if signature not in cache:
                ordered = sorted(active, key=lambda i: spans[i].rank)
                cache[signature] = combine([spans[i].value for i in ordered])
            value = cache[signature]
        if values and values[-1] is value:
            continue  # same value as the segment before: extend it instead
        starts.append(boundary)
        values.append(value)
    return Segments(starts, values)
