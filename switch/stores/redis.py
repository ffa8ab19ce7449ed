"""Redis store: shared by every worker and machine; one round trip per call.

Every call has a deadline (``deadline_s``). A call that fails or misses it raises
:class:`StoreUnavailable`, and for ``cooldown_s`` afterwards calls fail at once without touching
Redis, so an outage costs requests nothing but the fallback its caller chose (the idempotency
guard falls back to the database's durable reservation). The first call after the cooldown tries
Redis again: recovery is automatic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from switch.stores.base import Store

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

# INCRBY then set the expiry only when the key was just created, in one round trip.
_INCR_SCRIPT = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if value == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""


class StoreUnavailable(Exception):
    """The store did not answer within its deadline, or failed; nothing can be assumed of the call."""


class RedisStore(Store):
    """A :class:`Store` on Redis (hiredis parser when installed)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "switch:",
        deadline_s: float = 0.25,
        cooldown_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Connect lazily to ``url``; every key is namespaced under ``prefix``.

        Args:
            url: Redis URL.
            prefix: Namespace of every key.
            deadline_s: Longest one call may take, connecting included.
            cooldown_s: After a failure, how long calls fail at once instead of waiting on Redis.
            clock: Monotonic seconds; injectable for tests.
        """
        self._client = aioredis.Redis.from_url(
            url, decode_responses=False, socket_timeout=deadline_s, socket_connect_timeout=deadline_s
        )
        self._prefix = prefix
        self._incr = self._client.register_script(_INCR_SCRIPT)
        self._deadline_s = deadline_s
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._down_until = 0.0
        self.failures = 0

    @property
    def available(self) -> bool:
        """False while the store is cooling down after a failure."""
        return self._clock() >= self._down_until

    async def _call(self, call: Callable[[], Awaitable[_T]]) -> _T:
        if not self.available:
            raise StoreUnavailable("Redis failed recently; not tried again yet")
        try:
            async with asyncio.timeout(self._deadline_s):
                return await call()
        except (RedisError, OSError, TimeoutError) as exc:
            self.failures += 1
            if self.available:
                logger.warning("Redis store unavailable (%s); not tried for %gs", type(exc).__name__, self._cooldown_s)
            self._down_until = self._clock() + self._cooldown_s
            raise StoreUnavailable(type(exc).__name__) from None

    async def claim(self, key: str, value: bytes, ttl_s: float) -> bool:
        """SET NX PX: set only if absent."""
        px = max(1, int(ttl_s * 1000))
        return bool(await self._call(lambda: self._client.set(self._prefix + key, value, nx=True, px=px)))

    async def get(self, key: str) -> bytes | None:
        """GET."""
        return await self._call(lambda: self._client.get(self._prefix + key))

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """SET PX."""
        px = max(1, int(ttl_s * 1000))
        await self._call(lambda: self._client.set(self._prefix + key, value, px=px))

    async def delete(self, key: str) -> None:
        """DEL."""
        await self._call(lambda: self._client.delete(self._prefix + key))

    async def incr(self, key: str, amount: int, ttl_s: float) -> int:
        """INCRBY with an expiry set at creation."""
        px = max(1, int(ttl_s * 1000))
        return int(await self._call(lambda: self._incr(keys=[self._prefix + key], args=[amount, px])))

    async def ping(self) -> bool:
        """PING, under the deadline; never raises. Ignores the cooldown, so a probe sees recovery at once."""
        try:
            async with asyncio.timeout(self._deadline_s):
                answered = bool(await self._client.ping())
        except (RedisError, OSError, TimeoutError):
            return False
        if answered:
            self._down_until = 0.0
        return answered

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
