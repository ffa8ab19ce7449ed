"""Redis velocity: counts shared by workers and processes, outage policies, bounded memory."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from switch.risk.velocity import REDIS_BUCKETS, CountersUnavailable, RedisVelocity, VelocityEvent

T0 = 19_700 * 86_400.0
IP = "198.51.100.23"


@pytest_asyncio.fixture
async def redis_client(redis_url) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def prefix(redis_client) -> AsyncIterator[str]:
    name = f"test:velocity:{secrets.token_hex(6)}:"
    yield name
    keys = [key async for key in redis_client.scan_iter(match=name + "*")]
    if keys:
        await redis_client.delete(*keys)


def event(at: float, card: str, **keys: str) -> VelocityEvent:
    return VelocityEvent(merchant_id="mer_shared", amount=500, card=card, ip=IP, occurred_at=T0 + at, **keys)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the with block ends


async def test_two_workers_share_counts_and_distinct_cards(redis_url, prefix):
    first, second = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    try:
        worker_a, worker_b = RedisVelocity(first, prefix), RedisVelocity(second, prefix)
        await worker_a.observe(event(0, "fp_1"))
        await worker_b.observe(event(1, "fp_2"))
        await worker_a.record_decline("mer_shared", "fp_2", T0 + 2, ip=IP)
        reading = await worker_b.observe(event(3, "fp_1"))
        assert reading.counts[("ip", "1m")].count == 3
        assert reading.counts[("ip", "1m")].distinct_cards == 2
        assert reading.counts[("ip", "1m")].declines == 1
        assert reading.counts[("card", "1m")].count == 2
    finally:
        await first.aclose()
        await second.aclose()


_CHILD = """
import asyncio, json, sys
import redis.asyncio as aioredis
from switch.risk.velocity import RedisVelocity, VelocityEvent

async def main(url, prefix, t0):
    client = aioredis.Redis.from_url(url)
    counters = RedisVelocity(client, prefix, deadline_s=5.0)
    for index, card in enumerate(["fp_child_1", "fp_child_2", "fp_shared"]):
        reading = await counters.observe(VelocityEvent(
            merchant_id="mer_shared", amount=500, card=card, ip="198.51.100.23", occurred_at=t0 + index))
    await client.aclose()
    print(json.dumps({"count": reading.counts[("ip", "1h")].count,
                      "cards": reading.counts[("ip", "1h")].distinct_cards}))

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


async def test_counts_and_distinct_cards_combine_across_two_real_processes(redis_client, redis_url, prefix):
    parent = RedisVelocity(redis_client, prefix)
    await parent.observe(event(0, "fp_parent"))
    await parent.observe(event(1, "fp_shared"))
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _CHILD, redis_url, prefix, str(T0 + 2)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    # The child saw the parent's two payments and its own three (fp_shared once across both).
    assert json.loads(child.stdout) == {"count": 5, "cards": 4}
    reading = await parent.observe(event(10, "fp_parent"))
    assert reading.counts[("ip", "1h")].count == 6
    assert reading.counts[("ip", "1h")].distinct_cards == 4


async def test_fail_open_answers_an_unavailable_reading_and_reports_it(caplog):
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=0.2)
    reported: list[tuple[str, str]] = []
    counters = RedisVelocity(
        client, "test:", policy="open", cooldown_s=0, on_unavailable=lambda op, why: reported.append((op, why))
    )
    try:
        with caplog.at_level(logging.WARNING, logger="switch.risk.velocity"):
            reading = await counters.observe(event(0, "fp_1"))
            await counters.record_decline("mer_shared", "fp_1", T0)
            again = await counters.observe(event(1, "fp_1"))
        assert reading.available is False and reading.counts == {}
        assert again.available is False
        assert [operation for operation, _ in reported] == ["observe", "record_decline", "observe"]
        assert counters.unavailable_total == 3
        warnings = [record for record in caplog.records if "velocity counters unavailable" in record.getMessage()]
        assert len(warnings) == 1  # rate-limited: one line per interval, not one per payment
    finally:
        await client.aclose()


async def test_fail_closed_raises_counters_unavailable_but_a_decline_never_raises():
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=0.2)
    counters = RedisVelocity(client, "test:", policy="closed", cooldown_s=0)
    try:
        with pytest.raises(CountersUnavailable):
            await counters.observe(event(0, "fp_1"))
        await counters.record_decline("mer_shared", "fp_1", T0)
        assert counters.unavailable_total == 2
    finally:
        await client.aclose()


async def test_a_redis_that_never_answers_is_cut_off_at_the_deadline_then_skipped_while_cooling_down():
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept and read, never answer: a hung server
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    reasons: list[str] = []
    counters = RedisVelocity(
        client, "test:", deadline_s=0.05, cooldown_s=60, on_unavailable=lambda _, why: reasons.append(why)
    )
    try:
        started = time.monotonic()
        reading = await counters.observe(event(0, "fp_1"))
        assert reading.available is False
        assert time.monotonic() - started < 1.0
        again = await counters.observe(event(1, "fp_1"))
        assert again.available is False
        assert reasons == ["TimeoutError", "cooling_down"]
    finally:
        await client.aclose()
        server.close()


async def test_every_key_expires_and_its_ttl_fits_its_window(redis_client, prefix):
    counters = RedisVelocity(redis_client, prefix)
    await counters.observe(event(0, "fp_1", email="a@example.com", device="dev_1", customer="cus_1"))
    await counters.record_decline("mer_shared", "fp_1", T0 + 1, ip=IP)
    keys = [key.decode() async for key in redis_client.scan_iter(match=prefix + "*")]
    assert len(keys) == 5 + 4  # a ring hash per key, a card set per non-card key
    assert {key.rsplit(":", 1)[1] for key in keys} == {"ring", "cards"}
    for key in keys:
        ttl = await redis_client.pttl(key)
        assert 86_400_000 < ttl <= 90_000_000, key
        assert "a@example.com" not in key and IP not in key and "fp_1" not in key


async def test_memory_per_key_stays_bounded_as_time_passes(redis_client, prefix):
    counters = RedisVelocity(redis_client, prefix)
    # One payment a minute with a new card for four hours, one decline each.
    for minute in range(240):
        at = minute * 60.0
        await counters.observe(event(at, f"fp_{minute}"))
        await counters.record_decline("mer_shared", f"fp_{minute}", T0 + at, ip=IP)
    ip_keys = [key.decode() async for key in redis_client.scan_iter(match=prefix + "*:ip:*")]
    assert len(ip_keys) == 2
    for key in ip_keys:
        if key.endswith(":cards"):
            assert await redis_client.zcard(key) == 25
        else:
            fields = [field.decode() for field in await redis_client.hkeys(key)]
            for number, window in enumerate(REDIS_BUCKETS, start=1):
                mine = [field for field in fields if field.startswith(f"{number}:")]
                assert 4 <= len(mine) <= 4 + 3 * REDIS_BUCKETS[window], window
    reading = await counters.observe(event(240 * 60.0, "fp_last"))
    assert reading.counts[("ip", "1h")].count == 59  # 29 earlier buckets of 2 min hold two each, plus this one
    assert reading.counts[("ip", "1h")].declines == 58
    assert reading.counts[("ip", "24h")].count == 241


async def test_the_redis_script_agrees_with_the_compiled_counters_on_a_random_history(redis_client, prefix):
    import random

    from switch.risk.velocity import LocalVelocity

    # Same resolution on both (30 buckets per window), so the two must agree exactly.
    redis_counters = RedisVelocity(redis_client, prefix, buckets={"1m": 30, "1h": 30, "24h": 30})
    local = LocalVelocity(buckets=30)
    rng = random.Random(20_240_601)
    at = 0.0
    for _ in range(400):
        at += rng.choice([0.0, 0.3, 1.7, 2.0, 9.0, 59.0, 61.0, 130.0, 1_800.0, 3_700.0, 50_000.0, 90_000.0])
        card = f"fp_{rng.randrange(40)}"
        ip = rng.choice(["203.0.113.1", "203.0.113.2"])
        if rng.random() < 0.2:
            for counters in (redis_counters, local):
                await counters.record_decline("mer_shared", card, T0 + at, ip=ip)
            continue
        happened = VelocityEvent(
            merchant_id="mer_shared", amount=rng.randrange(0, 50_000), card=card, ip=ip, occurred_at=T0 + at
        )
        assert await redis_counters.observe(happened) == await local.observe(happened), at


async def test_an_event_a_little_older_than_the_last_one_still_counts(redis_client, prefix):
    counters = RedisVelocity(redis_client, prefix)
    await counters.observe(event(20, "fp_1"))
    skewed = await counters.observe(event(10, "fp_2"))  # another worker's clock is 10 s behind
    assert skewed.counts[("ip", "1m")].count == 2
    assert skewed.counts[("ip", "1m")].distinct_cards == 2
    assert (await counters.observe(event(21, "fp_1"))).counts[("ip", "1m")].count == 3
