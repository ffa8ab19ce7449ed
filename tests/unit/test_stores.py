"""One contract suite for every Store backend: in-memory and real Redis."""

from __future__ import annotations

import asyncio
import secrets

import pytest_asyncio

from switch.stores.memory import MemoryStore
from switch.stores.redis import RedisStore


@pytest_asyncio.fixture(params=["memory", "redis"])
async def store(request, redis_url):
    if request.param == "memory":
        backend = MemoryStore()
    else:
        backend = RedisStore(redis_url, prefix=f"test-{secrets.token_hex(4)}:")
    yield backend
    await backend.close()


async def test_claim_succeeds_once(store):
    assert await store.claim("k", b"a", 10) is True
    assert await store.claim("k", b"b", 10) is False
    assert await store.get("k") == b"a"


async def test_concurrent_claims_admit_exactly_one(store):
    results = await asyncio.gather(*(store.claim("race", b"x", 10) for _ in range(50)))
    assert results.count(True) == 1


async def test_put_replaces_and_delete_removes(store):
    await store.put("k", b"one", 10)
    await store.put("k", b"two", 10)
    assert await store.get("k") == b"two"
    await store.delete("k")
    assert await store.get("k") is None
    assert await store.claim("k", b"three", 10) is True


async def test_values_expire(store):
    await store.put("short", b"v", 0.05)
    await asyncio.sleep(0.12)
    assert await store.get("short") is None
    assert await store.claim("short", b"w", 10) is True


async def test_incr_counts_and_expires(store):
    assert await store.incr("n", 5, 10) == 5
    assert await store.incr("n", -2, 10) == 3
    await store.put("gone", b"x", 0.05)
    assert await store.incr("fast", 1, 0.05) == 1
    await asyncio.sleep(0.12)
    assert await store.incr("fast", 1, 10) == 1


async def test_ping_answers(store):
    assert await store.ping() is True


async def test_memory_store_is_bounded():
    small = MemoryStore(max_keys=3)
    for i in range(10):
        await small.put(f"k{i}", b"v", 60)
    assert await small.get("k0") is None
    assert await small.get("k9") == b"v"
