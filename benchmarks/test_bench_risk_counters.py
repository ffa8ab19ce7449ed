"""Microbenchmarks of the velocity counters' ``observe``: 5 keys x 3 windows, both backends.

Run: ``SWITCH_TEST_REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/pytest benchmarks/test_bench_risk_counters.py
--benchmark-only`` (the Redis one is skipped without a Redis URL). Results: ``benchmarks/RESULTS.md``.
Local: one call, no awaiting inside (the coroutine is driven directly, no event loop overhead).
Redis: sequential calls on one connection, each one EVALSHA round trip; the reported time is per call.
"""

import asyncio
import itertools
import os
import secrets

import pytest

from switch.risk.velocity import LocalVelocity, RedisVelocity, VelocityEvent

T0 = 19_700 * 86_400.0
BATCH = 200


def _events():
    # A new card every payment from one IP, email and device: the card-testing shape, the costliest
    # for distinct counting; time moves 10 ms a payment so buckets roll over as in production.
    for index in itertools.count():
        yield VelocityEvent(
            merchant_id="mer_bench",
            amount=1_999,
            card=f"fp_{index % 5000}",
            email="shopper@example.com",
            ip="203.0.113.9",
            device="dev_7f3a9c",
            customer="cus_123",
            occurred_at=T0 + index * 0.01,
        )


def _drive(coroutine):
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("LocalVelocity.observe awaited something")


@pytest.mark.benchmark(group="risk_counters_observe")
def test_bench_observe_local(benchmark):
    counters = LocalVelocity()
    events = _events()
    reading = benchmark(lambda: _drive(counters.observe(next(events))))
    assert len(reading.counts) == 15


@pytest.mark.benchmark(group="risk_counters_observe")
def test_bench_observe_redis_per_200_calls(benchmark):
    url = os.environ.get("SWITCH_TEST_REDIS_URL")
    if not url:
        pytest.skip("SWITCH_TEST_REDIS_URL is not set")
    import redis.asyncio as aioredis

    loop = asyncio.new_event_loop()
    client = aioredis.Redis.from_url(url)
    prefix = f"bench:velocity:{secrets.token_hex(4)}:"
    counters = RedisVelocity(client, prefix, deadline_s=1.0)
    events = _events()

    async def batch():
        for _ in range(BATCH):
            reading = await counters.observe(next(events))
        return reading

    try:
        reading = benchmark.pedantic(lambda: loop.run_until_complete(batch()), rounds=15, warmup_rounds=1)
        assert reading.available and len(reading.counts) == 15
        per_call_us = benchmark.stats.stats.mean / BATCH * 1e6
        benchmark.extra_info["us_per_observe"] = round(per_call_us, 1)
        print(f"\nRedisVelocity.observe: {per_call_us:.1f} us per call (mean of {BATCH}-call batches)")
    finally:

        async def cleanup():
            keys = [key async for key in client.scan_iter(match=prefix + "*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()

        loop.run_until_complete(cleanup())
        loop.close()
