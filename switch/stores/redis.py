"""Redis store: shared by every worker and machine; one round trip per call."""

from __future__ import annotations

import redis.asyncio as aioredis

from switch.stores.base import Store

# INCRBY then set the expiry only when the key was just created, in one round trip.
_INCR_SCRIPT = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if value == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""


class RedisStore(Store):
    """A :class:`Store` on Redis (hiredis parser when installed)."""

    def __init__(self, url: str, *, prefix: str = "switch:") -> None:
        """Connect lazily to ``url``; every key is namespaced under ``prefix``."""
        self._client = aioredis.Redis.from_url(url, decode_responses=False)
        self._prefix = prefix
        self._incr = self._client.register_script(_INCR_SCRIPT)

    async def claim(self, key: str, value: bytes, ttl_s: float) -> bool:
        """SET NX PX: set only if absent."""
        return bool(await self._client.set(self._prefix + key, value, nx=True, px=max(1, int(ttl_s * 1000))))

    async def get(self, key: str) -> bytes | None:
        """GET."""
        return await self._client.get(self._prefix + key)

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """SET PX."""
        await self._client.set(self._prefix + key, value, px=max(1, int(ttl_s * 1000)))

    async def delete(self, key: str) -> None:
        """DEL."""
        await self._client.delete(self._prefix + key)

    async def incr(self, key: str, amount: int, ttl_s: float) -> int:
        """INCRBY with an expiry set at creation."""
        return int(await self._incr(keys=[self._prefix + key], args=[amount, max(1, int(ttl_s * 1000))]))

    async def ping(self) -> bool:
        """PING."""
        try:
            return bool(await self._client.ping())
        except Exception:
            return False

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
