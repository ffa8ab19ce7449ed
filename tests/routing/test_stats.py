"""Routing statistics: windows, expiry and breakers in memory and shared through the real Redis."""

import secrets

import pytest
import redis.asyncio as aioredis

from adapters.base import Outcome
from switch.routing.stats import MemoryRoutingStats, RedisRoutingStats


def test_window_counts_only_recent_buckets(clock):
    stats = MemoryRoutingStats(clock=clock)
    clock.now = 1000.0  # bucket 100
    stats.record_now("a", "card", "EUR", Outcome.APPROVED, 100)
    stats.record_now("a", "card", "EUR", Outcome.TECHNICAL, 300)
    assert stats.success_rate("a", "card", "EUR", 300) == (0.5, 2)
    assert stats.mean_latency_ms("a", "card", "EUR", 300) == 200
    clock.now = 1299.0  # bucket 129: bucket 100 is still the oldest of 30
    assert stats.success_rate("a", "card", "EUR", 300) == (0.5, 2)
    assert stats.success_rate("a", "card", "EUR", 60) == (0.0, 0)
    clock.now = 1300.0  # bucket 130: gone from a 300 s window
    assert stats.success_rate("a", "card", "EUR", 300) == (0.0, 0)
    assert stats.mean_latency_ms("a", "card", "EUR", 300) is None
    assert stats.success_rate("a", "card", "EUR", 600) == (0.5, 2)


def test_keys_are_separate_per_method_and_currency(clock):
    stats = MemoryRoutingStats(clock=clock)
    stats.record_now("a", "card", "EUR", Outcome.APPROVED, 10)
    stats.record_now("a", "card", "USD", Outcome.DECLINED_SOFT, 10)
    assert stats.success_rate("a", "card", "EUR") == (1.0, 1)
    assert stats.success_rate("a", "card", "USD") == (0.0, 1)
    assert stats.success_rate("a", "gopay", "EUR") == (0.0, 0)


def test_pending_and_requires_action_are_not_attempts_but_reset_the_breaker(clock):
    stats = MemoryRoutingStats(clock=clock)
    for _ in range(4):
        stats.record_now("a", "card", "EUR", Outcome.TECHNICAL, 10)
    stats.record_now("a", "card", "EUR", Outcome.REQUIRES_ACTION, 10)
    stats.record_now("a", "card", "EUR", Outcome.PENDING, 10)
    assert stats.success_rate("a", "card", "EUR") == (0.0, 4)
    stats.record_now("a", "card", "EUR", Outcome.TECHNICAL, 10)
    assert stats.breaker("a", failures=5) == "closed"


def test_memory_is_bounded(clock):
    stats = MemoryRoutingStats(clock=clock, max_keys=10, max_window_s=60)
    for index in range(50):
        stats.record_now(f"acct{index}", "card", "EUR", Outcome.APPROVED, 1)
    assert len(stats._windows.data) == 10
    clock.advance(100)
    stats.record_now("acct49", "card", "EUR", Outcome.APPROVED, 1)
    assert len(stats._windows.data["acct49", "card", "EUR"]) == 1


@pytest.fixture
async def redis_client(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis_client):
    prefix = f"test-routing-{secrets.token_hex(6)}:"
    yield prefix
    async for key in redis_client.scan_iter(match=f"{prefix}*"):
        await redis_client.delete(key)


async def test_two_workers_share_success_rates_through_redis(redis_client, prefix, clock):
    first = RedisRoutingStats(redis_client, prefix, clock=clock)
    second = RedisRoutingStats(redis_client, prefix, clock=clock)
    for _ in range(3):
        await first.record("adyen-eu", "card", "EUR", Outcome.APPROVED, 120)
    await second.record("adyen-eu", "card", "EUR", Outcome.DECLINED_SOFT, 80)
    # Each worker sees its own records at once, the other's after a refresh.
    assert first.success_rate("adyen-eu", "card", "EUR") == (1.0, 3)
    await first.refresh()
    await second.refresh()
    assert first.success_rate("adyen-eu", "card", "EUR") == (0.75, 4)
    assert second.success_rate("adyen-eu", "card", "EUR") == (0.75, 4)
    assert second.mean_latency_ms("adyen-eu", "card", "EUR") == 110
    assert first.record_failures == second.record_failures == 0


async def test_breaker_state_is_shared_through_redis(redis_client, prefix, clock):
    first = RedisRoutingStats(redis_client, prefix, clock=clock)
    second = RedisRoutingStats(redis_client, prefix, clock=clock)
    for _ in range(3):
        await first.record("stripe", "card", "EUR", Outcome.TECHNICAL, 10)
    for _ in range(2):
        await second.record("stripe", "card", "EUR", Outcome.UNKNOWN, 10)
    await first.refresh()
    await second.refresh()
    assert first.breaker("stripe", failures=5, cooldown_s=30) == "open"
    assert second.breaker("stripe", failures=5, cooldown_s=30) == "open"
    clock.advance(31)
    assert second.breaker("stripe", failures=5, cooldown_s=30) == "half_open"
    assert second.allow_probe("stripe", failures=5, cooldown_s=30)
    assert not second.allow_probe("stripe", failures=5, cooldown_s=30)
    await second.record("stripe", "card", "EUR", Outcome.APPROVED, 10)
    await first.refresh()
    assert first.breaker("stripe", failures=5, cooldown_s=30) == "closed"


async def test_closed_buckets_are_kept_and_old_ones_expire_from_the_snapshot(redis_client, prefix, clock):
    writer = RedisRoutingStats(redis_client, prefix, clock=clock)
    reader = RedisRoutingStats(redis_client, prefix, clock=clock, max_window_s=300)
    await writer.record("a", "card", "EUR", Outcome.APPROVED, 10)
    await reader.refresh()
    clock.advance(60)
    await writer.record("a", "card", "EUR", Outcome.TECHNICAL, 10)
    await reader.refresh()
    assert reader.success_rate("a", "card", "EUR", 300) == (0.5, 2)
    assert reader.success_rate("a", "card", "EUR", 30) == (0.0, 1)
    clock.advance(300)
    await reader.refresh()
    assert reader.success_rate("a", "card", "EUR", 300) == (0.0, 0)
    assert reader._windows.data == {}


async def test_redis_outage_never_fails_and_keeps_the_last_snapshot(redis_client, prefix, clock):
    healthy = RedisRoutingStats(redis_client, prefix, clock=clock)
    await healthy.record("a", "card", "EUR", Outcome.APPROVED, 10)
    errors = []
    dead_client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        broken = RedisRoutingStats(dead_client, prefix, clock=clock, on_error=errors.append)
        await broken.record("a", "card", "EUR", Outcome.APPROVED, 10)
        await broken.record("a", "card", "EUR", Outcome.DECLINED_SOFT, 10)
        await broken.refresh()
        assert broken.record_failures == 2
        assert broken.refresh_failures == 1
        assert errors == ["record", "record", "refresh"]
        # Its own records still count locally.
        assert broken.success_rate("a", "card", "EUR") == (0.5, 2)
    finally:
        await dead_client.aclose()


async def test_background_refresh_starts_and_stops(redis_client, prefix, clock):
    writer = RedisRoutingStats(redis_client, prefix, clock=clock)
    reader = RedisRoutingStats(redis_client, prefix, clock=clock, refresh_interval_s=0.05)
    await writer.record("a", "card", "EUR", Outcome.APPROVED, 10)
    await reader.start()
    try:
        assert reader.success_rate("a", "card", "EUR") == (1.0, 1)
    finally:
        await reader.stop()
    assert reader._task is None
