"""Pure-Python reference implementation of ``fastpath.velocity``.

Each window of ``L`` seconds is a ring of ``B`` buckets of ``L / B`` seconds. A window "now"
covers the current bucket and the ``B - 1`` before it, so it reaches back between ``L - L/B`` and
``L`` seconds. Running totals per window make a read O(1); moving to a new bucket clears the
buckets that fell out (at most ``B``, a constant). Distinct values are remembered per key, up to
``distinct_cap`` of them with the time each was last seen; when the table is full the value seen
longest ago is replaced, so it always holds the most recent ones and a window's distinct count is
exact up to the cap. The compiled twin (``_velocity_c.pyx``) runs the same algorithm on C arrays.
"""

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

from fastpath._money import INT64_MAX, check_amount, overflow_error
from fastpath._velocity_common import (
    MAX_CLOCK_SECONDS,
    check_config,
    check_distinct_values,
    clock_error,
    key_error,
)

__all__ = ["Snapshot", "VelocityCounters", "WindowStats"]

#: ``(count, amount_sum, distinct)`` for one window.
WindowStats = tuple[int, int, int]
#: One ``WindowStats`` per configured window, in configuration order.
Snapshot = tuple[WindowStats, ...]


class _KeyState:
    """Counters of one key: per window a ring of buckets plus running totals."""

    __slots__ = (
        "bucket_counts",
        "bucket_sums",
        "heads",
        "last_touch",
        "seen_at",
        "seen_hashes",
        "total_counts",
        "total_sums",
    )

    def __init__(self, epochs: list[int], buckets: int, now_ms: int) -> None:
        self.heads = epochs
        self.total_counts = [0] * len(epochs)
        self.total_sums = [0] * len(epochs)
        self.bucket_counts = [[0] * buckets for _ in epochs]
        self.bucket_sums = [[0] * buckets for _ in epochs]
        self.seen_hashes: list[int] = []
        self.seen_at: list[int] = []
        self.last_touch = now_ms


class VelocityCounters:
    """Sliding-window count, amount sum and capped distinct count per string key.

    Memory is bounded twice: a key untouched for its longest window is evicted (its counters are
    all zero by then), and at ``max_keys`` the least recently updated key makes room.
    """

    def __init__(
        self,
        windows: Sequence[int] = (60, 3600, 86400),
        *,
        buckets: int = 30,
        max_keys: int = 100_000,
        distinct_cap: int = 25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure the counters.

        Args:
            windows: Window lengths in whole seconds (default 1 min, 1 h, 24 h).
            buckets: Buckets per window: the window's time resolution is ``window / buckets``.
            max_keys: At most this many keys are held; the least recently updated goes first.
            distinct_cap: Distinct values remembered per key; distinct counts stop there.
            clock: Returns seconds as a float or int; only differences matter. Injectable
                for tests. A reading earlier than the previous one counts as the previous one.

        Raises:
            ValueError: a parameter is out of range (see ``_velocity_common.check_config``).
        """
        self._windows = check_config(windows, buckets, max_keys, distinct_cap)
        self._buckets = buckets
        self._max_keys = max_keys
        self._distinct_cap = distinct_cap
        self._clock = clock
        self._widths = [window * 1000 // buckets for window in self._windows]
        self._longest_ms = max(self._windows) * 1000
        self._last_ms = 0
        self._keys: OrderedDict[str, _KeyState] = OrderedDict()

    @property
    def windows(self) -> tuple[int, ...]:
        """The window lengths in seconds, in snapshot order."""
        return self._windows

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def _now(self) -> int:
        seconds = float(self._clock())
        milliseconds = seconds * 1000.0
        if not 0.0 <= seconds < MAX_CLOCK_SECONDS:
            raise clock_error(seconds)
        # Never step back: a clock that does would otherwise un-expire buckets.
        now = max(int(milliseconds), self._last_ms)
        self._last_ms = now
        return now

    def _advance(self, state: _KeyState, now_ms: int) -> None:
        """Move every window's ring to the bucket of ``now_ms``, clearing what fell out."""
        for window, width in enumerate(self._widths):
            epoch = now_ms // width
            head = state.heads[window]
            if epoch <= head:
                continue
            counts = state.bucket_counts[window]
            sums = state.bucket_sums[window]
            if epoch - head >= self._buckets:
                counts[:] = [0] * self._buckets
                sums[:] = [0] * self._buckets
                state.total_counts[window] = 0
                state.total_sums[window] = 0
            else:
                for step in range(head + 1, epoch + 1):
                    slot = step % self._buckets
                    state.total_counts[window] -= counts[slot]
                    state.total_sums[window] -= sums[slot]
                    counts[slot] = 0
                    sums[slot] = 0
            state.heads[window] = epoch

    def _snapshot(self, state: _KeyState) -> Snapshot:
        stats = []
        for window, width in enumerate(self._widths):
            start = (state.heads[window] - self._buckets + 1) * width
            distinct = sum(1 for seen in state.seen_at if seen >= start)
            stats.append((state.total_counts[window], state.total_sums[window], distinct))
        return tuple(stats)

    def _evict_idle(self, now_ms: int) -> int:
        evicted = 0
        # The OrderedDict runs from least to most recently updated, so idle keys are at its front.
        while self._keys:
            oldest = next(iter(self._keys.values()))
            if oldest.last_touch + self._longest_ms > now_ms:
                break
            self._keys.popitem(last=False)
            evicted += 1
        return evicted

    def _check_room(self, key: str, state: _KeyState | None, amount: int, times: int, now_ms: int) -> None:
        """Raise before any change if adding ``amount`` ``times`` would overflow a sum."""
        totals = [0]
        if state is not None:
            self._advance(state, now_ms)
            totals = state.total_sums
        for total in totals:
            if total + amount * times > INT64_MAX:
                raise overflow_error(f"amount sum of key {key!r}")

    def _record(self, key: str, amount: int, distinct_hash: int | None, now_ms: int) -> Snapshot:
        state = self._keys.get(key)
        if state is None:
            if len(self._keys) >= self._max_keys:
                self._keys.popitem(last=False)
            state = _KeyState([now_ms // width for width in self._widths], self._buckets, now_ms)
            self._keys[key] = state
        else:
            self._advance(state, now_ms)
            self._keys.move_to_end(key)
        state.last_touch = now_ms
        for window in range(len(self._widths)):
            slot = state.heads[window] % self._buckets
            state.bucket_counts[window][slot] += 1
            state.bucket_sums[window][slot] += amount
            state.total_counts[window] += 1
            state.total_sums[window] += amount
        if distinct_hash is not None and self._distinct_cap:
            self._see(state, distinct_hash, now_ms)
        return self._snapshot(state)

    def _see(self, state: _KeyState, distinct_hash: int, now_ms: int) -> None:
        hashes = state.seen_hashes
        if distinct_hash in hashes:
            state.seen_at[hashes.index(distinct_hash)] = now_ms
        elif len(hashes) < self._distinct_cap:
            hashes.append(distinct_hash)
            state.seen_at.append(now_ms)
        else:
            # The value seen longest ago is the first to leave every window: replace it.
            oldest = state.seen_at.index(min(state.seen_at))
            hashes[oldest] = distinct_hash
            state.seen_at[oldest] = now_ms

    def add(self, key: str, amount: int, distinct_value: Hashable | None = None) -> Snapshot:
        """Count one event for ``key`` and return its counters including it.

        Args:
            key: e.g. ``"card:tok_..."``, ``"ip:203.0.113.9"``; prefix keys by dimension.
            amount: Minor units, 0 to 10^15 (0 counts an event without an amount).
            distinct_value: A value whose distinct occurrences are counted per window, e.g.
                the card token for an IP key; ``None`` counts nothing distinct.

        Returns:
            Per window: ``(count, amount_sum, distinct)``.

        Raises:
            TypeError: ``key`` is not a str, ``amount`` not an int, or the value unhashable.
            ValueError: ``amount`` out of range, an amount sum would overflow int64, or the clock
                returned a negative or absurd time.
        """
        return self.add_many((key,), amount, None if distinct_value is None else (distinct_value,))[0]

    def add_many(
        self,
        keys: Sequence[str],
        amount: int,
        distinct_values: Sequence[Hashable | None] | None = None,
    ) -> list[Snapshot]:
        """Count one event for each key (an authorization's card, email, IP, device, merchant).

        Every check runs before the first counter changes: a call that raises counts nothing.

        Args:
            keys: The keys, each updated once per occurrence.
            amount: Minor units, 0 to 10^15, added to every key.
            distinct_values: One value (or ``None``) per key, see ``add``.

        Returns:
            One snapshot per key, in order, each taken right after that key's update.

        Raises:
            As ``add``; ``ValueError`` also when ``distinct_values`` does not match ``keys``.
        """
        for key in keys:
            if not isinstance(key, str):
                raise key_error(key)
        check_amount(amount, minimum=0)
        check_distinct_values(keys, distinct_values)
        hashes = [None if value is None else hash(value) for value in distinct_values or [None] * len(keys)]
        now_ms = self._now()
        self._evict_idle(now_ms)
        times: dict[str, int] = {}
        for key in keys:
            times[key] = times.get(key, 0) + 1
            self._check_room(key, self._keys.get(key), amount, times[key], now_ms)
        return [self._record(key, amount, hashes[i], now_ms) for i, key in enumerate(keys)]

    def check(self, key: str) -> Snapshot:
        """Return ``key``'s counters now, without counting an event.

        Args:
            key: The key.

        Returns:
            Per window: ``(count, amount_sum, distinct)``; zeros for an unknown key.
        """
        return self.check_many((key,))[0]

    def check_many(self, keys: Sequence[str]) -> list[Snapshot]:
        """Return the counters of several keys now; see ``check``."""
        for key in keys:
            if not isinstance(key, str):
                raise key_error(key)
        now_ms = self._now()
        empty: Snapshot = tuple((0, 0, 0) for _ in self._windows)
        result = []
        for key in keys:
            state = self._keys.get(key)
            if state is None:
                result.append(empty)
            else:
                self._advance(state, now_ms)
                result.append(self._snapshot(state))
        return result

    def evict_idle(self) -> int:
        """Drop every key untouched for its longest window now; updates do this as they go.

        Returns:
            The number of keys dropped.
        """
        return self._evict_idle(self._now())
