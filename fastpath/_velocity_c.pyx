# cython: annotation_typing=False
# (annotations document the API; the C types are declared with cdef, and arguments are checked
# by the shared helpers so that both implementations raise the same errors)
"""Compiled implementation of ``fastpath.velocity``; ``_velocity_py.py`` is the readable reference.

Same algorithm, with every key's counters in one fixed-size record of int64s inside a growable
slab (slots are reused through a free list), and the LRU order kept as an intrusive doubly
linked list of slot numbers. Python objects appear only at the edges: the key -> slot dict, the
clock call, hashing the distinct value and building the returned snapshots.

Record layout (``W`` windows, ``B`` buckets, ``C`` distinct cap), one int64 per cell:

    [last_touch] [seen_count] heads[W] total_counts[W] total_sums[W]
    bucket_counts[W * B] bucket_sums[W * B] seen_hashes[C] seen_at[C]
"""

from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject_Hash
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memset

import time
from collections.abc import Callable, Hashable, Sequence

from fastpath._money import check_amount, overflow_error
from fastpath._velocity_common import (
    MAX_CLOCK_SECONDS,
    check_config,
    check_distinct_values,
    clock_error,
    key_error,
)

__all__ = ["Snapshot", "VelocityCounters", "WindowStats"]

WindowStats = tuple[int, int, int]
Snapshot = tuple[WindowStats, ...]

cdef int64_t _INT64_MAX = 0x7FFFFFFFFFFFFFFF
cdef int64_t _MAX_AMOUNT = 1000000000000000
cdef double _MAX_CLOCK_SECONDS = MAX_CLOCK_SECONDS
# Most authorizations update a handful of keys; batches up to this size need no heap scratch.
DEF _STACK_KEYS = 16


cdef inline int64_t _amount(object amount) except -1:
    """Typed fast check of an amount (0 allowed); the shared helper raises the precise error."""
    cdef int overflow = 0
    cdef long long value
    if type(amount) is int:
        value = PyLong_AsLongLongAndOverflow(amount, &overflow)
        if overflow == 0 and 0 <= value <= _MAX_AMOUNT:
            return value
    return check_amount(amount, minimum=0)


cdef inline bint _fits(int64_t total, int64_t value, int64_t times) noexcept nogil:
    """Whether ``total + value * times`` fits int64, computed without overflowing."""
    # total >= 0, so the room is never negative; value * times > room <=> times > room // value.
    return value == 0 or times <= (_INT64_MAX - total) // value


cdef class VelocityCounters:
    """Sliding-window count, amount sum and capped distinct count per string key.

    Memory is bounded twice: a key untouched for its longest window is evicted (its counters are
    all zero by then), and at ``max_keys`` the least recently updated key makes room. Each key
    costs ``8 * (2 + 3W + 2WB + 2C)`` bytes of counters (1.9 KB with the defaults).
    """

    cdef tuple _windows
    cdef int _window_count
    cdef int _buckets
    cdef int _distinct_cap
    cdef Py_ssize_t _max_keys
    cdef object _clock
    cdef int64_t* _widths
    cdef int64_t _longest_ms
    cdef int64_t _last_ms
    # Offsets into a record, and its length.
    cdef Py_ssize_t _o_heads, _o_total_counts, _o_total_sums, _o_bucket_counts, _o_bucket_sums
    cdef Py_ssize_t _o_seen_hashes, _o_seen_at, _stride
    cdef int64_t* _slab
    cdef Py_ssize_t* _prev
    cdef Py_ssize_t* _next
    cdef Py_ssize_t _capacity, _used, _free, _lru, _mru
    cdef dict _index
    cdef list _slot_keys

    def __cinit__(self, *args: object, **kwargs: object) -> None:
        self._widths = NULL
        self._slab = NULL
        self._prev = NULL
        self._next = NULL

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
        if self._widths != NULL:
            raise RuntimeError("VelocityCounters is already initialised")
        self._windows = check_config(windows, buckets, max_keys, distinct_cap)
        self._window_count = len(self._windows)
        self._buckets = buckets
        self._distinct_cap = distinct_cap
        self._max_keys = max_keys
        self._clock = clock
        self._widths = <int64_t*>malloc(self._window_count * sizeof(int64_t))
        if self._widths == NULL:
            raise MemoryError()
        cdef int w
        for w in range(self._window_count):
            self._widths[w] = <int64_t>self._windows[w] * 1000 // buckets
        self._longest_ms = <int64_t>max(self._windows) * 1000
        self._last_ms = 0
        cdef Py_ssize_t windows_n = self._window_count
        self._o_heads = 2
        self._o_total_counts = self._o_heads + windows_n
        self._o_total_sums = self._o_total_counts + windows_n
        self._o_bucket_counts = self._o_total_sums + windows_n
        self._o_bucket_sums = self._o_bucket_counts + windows_n * buckets
        self._o_seen_hashes = self._o_bucket_sums + windows_n * buckets
        self._o_seen_at = self._o_seen_hashes + distinct_cap
        self._stride = self._o_seen_at + distinct_cap
        self._capacity = 0
        self._used = 0
        self._free = -1
        self._lru = -1
        self._mru = -1
        self._index = {}
        self._slot_keys = []

    def __dealloc__(self) -> None:
        free(self._widths)
        free(self._slab)
        free(self._prev)
        free(self._next)

    @property
    def windows(self) -> tuple[int, ...]:
        """The window lengths in seconds, in snapshot order."""
        return self._windows

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    # -- time ---------------------------------------------------------------------------------

    cdef int64_t _now(self) except -1:
        cdef double seconds = self._clock()
        if not (0.0 <= seconds < _MAX_CLOCK_SECONDS):
            raise clock_error(seconds)
        # Never step back: a clock that does would otherwise un-expire buckets.
        cdef int64_t now = <int64_t>(seconds * 1000.0)
        if now < self._last_ms:
            now = self._last_ms
        self._last_ms = now
        return now

    # -- one record ---------------------------------------------------------------------------

    cdef inline int64_t* _record(self, Py_ssize_t slot) noexcept nogil:
        return self._slab + slot * self._stride

    cdef void _advance(self, int64_t* record, int64_t now_ms) noexcept nogil:
        """Move every window's ring to the bucket of ``now_ms``, clearing what fell out."""
        cdef int w
        cdef int64_t epoch, head, step, buckets = self._buckets
        cdef int64_t* counts
        cdef int64_t* sums
        cdef Py_ssize_t cell
        for w in range(self._window_count):
            epoch = now_ms // self._widths[w]
            head = record[self._o_heads + w]
            if epoch <= head:
                continue
            counts = record + self._o_bucket_counts + w * buckets
            sums = record + self._o_bucket_sums + w * buckets
            if epoch - head >= buckets:
                memset(counts, 0, buckets * sizeof(int64_t))
                memset(sums, 0, buckets * sizeof(int64_t))
                record[self._o_total_counts + w] = 0
                record[self._o_total_sums + w] = 0
            else:
                for step in range(head + 1, epoch + 1):
                    cell = step % buckets
                    record[self._o_total_counts + w] -= counts[cell]
                    record[self._o_total_sums + w] -= sums[cell]
                    counts[cell] = 0
                    sums[cell] = 0
            record[self._o_heads + w] = epoch

    cdef void _count(self, int64_t* record, int64_t amount, bint has_hash, int64_t distinct_hash, int64_t now_ms) noexcept nogil:
        cdef int w
        cdef Py_ssize_t cell
        record[0] = now_ms
        for w in range(self._window_count):
            cell = record[self._o_heads + w] % self._buckets
            record[self._o_bucket_counts + w * self._buckets + cell] += 1
            record[self._o_bucket_sums + w * self._buckets + cell] += amount
            record[self._o_total_counts + w] += 1
            record[self._o_total_sums + w] += amount
        if has_hash and self._distinct_cap:
            self._see(record, distinct_hash, now_ms)

    cdef void _see(self, int64_t* record, int64_t distinct_hash, int64_t now_ms) noexcept nogil:
        cdef int64_t* hashes = record + self._o_seen_hashes
        cdef int64_t* seen_at = record + self._o_seen_at
        cdef int64_t seen = record[1]
        cdef Py_ssize_t i, oldest = 0
        for i in range(seen):
            if hashes[i] == distinct_hash:
                seen_at[i] = now_ms
                return
        if seen < self._distinct_cap:
            hashes[seen] = distinct_hash
            seen_at[seen] = now_ms
            record[1] = seen + 1
            return
        # The value seen longest ago is the first to leave every window: replace it.
        for i in range(1, seen):
            if seen_at[i] < seen_at[oldest]:
                oldest = i
        hashes[oldest] = distinct_hash
        seen_at[oldest] = now_ms

    cdef tuple _snapshot(self, int64_t* record):
        cdef tuple result = PyTuple_New(self._window_count)
        cdef int w
        cdef Py_ssize_t i
        cdef int64_t start, distinct, seen = record[1]
        cdef int64_t* seen_at = record + self._o_seen_at
        for w in range(self._window_count):
            start = (record[self._o_heads + w] - self._buckets + 1) * self._widths[w]
            distinct = 0
            for i in range(seen):
                if seen_at[i] >= start:
                    distinct += 1
            stats = (record[self._o_total_counts + w], record[self._o_total_sums + w], distinct)
            # PyTuple_SET_ITEM steals a reference; Cython keeps its own, so add one.
            Py_INCREF(stats)
            PyTuple_SET_ITEM(result, w, stats)
        return result

    # -- slots and LRU ------------------------------------------------------------------------

    cdef void _unlink(self, Py_ssize_t slot) noexcept nogil:
        cdef Py_ssize_t before = self._prev[slot], after = self._next[slot]
        if before >= 0:
            self._next[before] = after
        else:
            self._lru = after
        if after >= 0:
            self._prev[after] = before
        else:
            self._mru = before

    cdef void _push_mru(self, Py_ssize_t slot) noexcept nogil:
        self._prev[slot] = self._mru
        self._next[slot] = -1
        if self._mru >= 0:
            self._next[self._mru] = slot
        else:
            self._lru = slot
        self._mru = slot

    cdef int _drop(self, Py_ssize_t slot) except -1:
        self._unlink(slot)
        key = self._slot_keys[slot]
        del self._index[key]
        self._slot_keys[slot] = None
        self._next[slot] = self._free
        self._free = slot
        return 0

    cdef int _evict_idle(self, int64_t now_ms) except -1:
        cdef int evicted = 0
        # The list runs from least to most recently updated, so idle keys are at its LRU end.
        while self._lru >= 0 and self._record(self._lru)[0] + self._longest_ms <= now_ms:
            self._drop(self._lru)
            evicted += 1
        return evicted

    cdef Py_ssize_t _new_slot(self) except -1:
        cdef Py_ssize_t slot, capacity
        cdef int64_t* slab
        cdef Py_ssize_t* prev
        cdef Py_ssize_t* nxt
        if self._free >= 0:
            slot = self._free
            self._free = self._next[slot]
            return slot
        if self._used == self._capacity:
            capacity = min(max(16, self._capacity * 2), self._max_keys)
            slab = <int64_t*>realloc(self._slab, capacity * self._stride * sizeof(int64_t))
            if slab == NULL:
                raise MemoryError()
            self._slab = slab
            prev = <Py_ssize_t*>realloc(self._prev, capacity * sizeof(Py_ssize_t))
            if prev == NULL:
                raise MemoryError()
            self._prev = prev
            nxt = <Py_ssize_t*>realloc(self._next, capacity * sizeof(Py_ssize_t))
            if nxt == NULL:
                raise MemoryError()
            self._next = nxt
            self._capacity = capacity
        slot = self._used
        self._used += 1
        self._slot_keys.append(None)
        return slot

    cdef int64_t* _touch(self, object key, int64_t now_ms) except NULL:
        """Return ``key``'s record advanced to now and moved to the MRU end, creating it."""
        cdef Py_ssize_t slot
        cdef int64_t* record
        cdef int w
        found = self._index.get(key)
        if found is not None:
            slot = found
            record = self._record(slot)
            self._advance(record, now_ms)
            if slot != self._mru:
                self._unlink(slot)
                self._push_mru(slot)
            return record
        if len(self._index) >= self._max_keys:
            self._drop(self._lru)
        slot = self._new_slot()
        record = self._record(slot)
        memset(record, 0, self._stride * sizeof(int64_t))
        for w in range(self._window_count):
            record[self._o_heads + w] = now_ms // self._widths[w]
        self._index[key] = slot
        self._slot_keys[slot] = key
        self._push_mru(slot)
        return record

    # -- public API ---------------------------------------------------------------------------

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
        cdef Py_ssize_t i, j, times, count = len(keys)
        cdef int w
        cdef int64_t stack_hashes[_STACK_KEYS]
        cdef bint stack_has[_STACK_KEYS]
        cdef Py_ssize_t stack_slots[_STACK_KEYS]
        cdef int64_t* hashes = stack_hashes
        cdef bint* has_hash = stack_has
        cdef Py_ssize_t* slots = stack_slots
        cdef bint small_batch
        cdef int64_t* record
        cdef int64_t value, now_ms
        for key in keys:
            if not isinstance(key, str):
                raise key_error(key)
        value = _amount(amount)
        if distinct_values is not None:
            check_distinct_values(keys, distinct_values)
        if count > _STACK_KEYS:
            hashes = <int64_t*>malloc(count * sizeof(int64_t))
            has_hash = <bint*>malloc(count * sizeof(bint))
            slots = <Py_ssize_t*>malloc(count * sizeof(Py_ssize_t))
            if hashes == NULL or has_hash == NULL or slots == NULL:
                free(hashes)
                free(has_hash)
                free(slots)
                raise MemoryError()
        try:
            for i in range(count):
                distinct = None if distinct_values is None else distinct_values[i]
                has_hash[i] = distinct is not None
                hashes[i] = PyObject_Hash(distinct) if has_hash[i] else 0
            now_ms = self._now()
            self._evict_idle(now_ms)
            # A new key starts at zero, so it can only overflow when repeated in this very batch;
            # that takes over 9,000 repeats of the largest amount, so the bound skips the scan.
            small_batch = _fits(0, value, count)
            for i in range(count):
                key = keys[i]
                found = self._index.get(key)
                slots[i] = -1 if found is None else <Py_ssize_t>found
                times = 1
                if slots[i] >= 0:
                    # Equal keys share a slot: comparing slot numbers avoids string compares.
                    for j in range(i):
                        if slots[j] == slots[i]:
                            times += 1
                elif small_batch:
                    continue
                else:
                    for j in range(i):
                        if keys[j] == key:
                            times += 1
                if slots[i] < 0:
                    if not _fits(0, value, times):
                        raise overflow_error(f"amount sum of key {key!r}")
                    continue
                record = self._record(slots[i])
                self._advance(record, now_ms)
                for w in range(self._window_count):
                    if not _fits(record[self._o_total_sums + w], value, times):
                        raise overflow_error(f"amount sum of key {key!r}")
            result = [None] * count
            for i in range(count):
                record = self._touch(keys[i], now_ms)
                self._count(record, value, has_hash[i], hashes[i], now_ms)
                result[i] = self._snapshot(record)
            return result
        finally:
            if hashes != stack_hashes:
                free(hashes)
                free(has_hash)
                free(slots)

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
        cdef int64_t now_ms = self._now()
        cdef int64_t* record
        empty = tuple([(0, 0, 0)] * self._window_count)
        result = []
        for key in keys:
            found = self._index.get(key)
            if found is None:
                result.append(empty)
            else:
                record = self._record(<Py_ssize_t>found)
                self._advance(record, now_ms)
                result.append(self._snapshot(record))
        return result

    def evict_idle(self) -> int:
        """Drop every key untouched for its longest window now; updates do this as they go.

        Returns:
            The number of keys dropped.
        """
        return self._evict_idle(self._now())
