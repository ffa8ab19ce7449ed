"""In-process store: a dict with lazy expiry and a size cap; correct for one worker only."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from switch.stores.base import Store


class MemoryStore(Store):
    """A bounded in-memory store. The oldest-touched keys are evicted past ``max_keys``."""

    def __init__(self, max_keys: int = 1_000_000, clock: Callable[[], float] = time.monotonic) -> None:
        """Create an empty store.

        Args:
            max_keys: Upper bound on stored keys (least recently written evicted first).
            clock: Monotonic seconds; injectable for tests.
        """
        self._data: OrderedDict[str, tuple[float, bytes | int]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    def _live(self, key: str) -> tuple[float, bytes | int] | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._data[key]
            return None
        return item

    def _set(self, key: str, value: bytes | int, ttl_s: float) -> None:
        self._data[key] = (self._clock() + ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max_keys:
            self._data.popitem(last=False)

    async def claim(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Set ``key`` only if absent; return whether this call set it."""
        if self._live(key) is not None:
            return False
        self._set(key, value, ttl_s)
        return True

    async def get(self, key: str) -> bytes | None:
        """Return the value of ``key`` or None."""
        item = self._live(key)
        if item is None or not isinstance(item[1], bytes):
            return None
        return item[1]

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """Set ``key`` unconditionally."""
        self._set(key, value, ttl_s)

    async def delete(self, key: str) -> None:
        """Remove ``key``."""
        self._data.pop(key, None)

    async def incr(self, key: str, amount: int, ttl_s: float) -> int:
        """Add ``amount`` to the counter at ``key``."""
        item = self._live(key)
        if item is None:
            self._set(key, amount, ttl_s)
            return amount
        expires, value = item
        if not isinstance(value, int):
            raise TypeError(f"key {key!r} does not hold a counter")
        self._data[key] = (expires, value + amount)
        return value + amount
