"""Velocity counters, the same behaviour on both backends: window edges, sums, distinct cards, declines.

Time is injected through each event's ``occurred_at``. ``T0`` is a whole day since the epoch, so
it starts a bucket of every window on both backends (2 s / 5 s, 2 min, 48 min / 1 h).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from fastpath import velocity as fastpath_velocity
from switch.risk.types import PERS, WINDOWS
from switch.risk.velocity import LocalVelocity, RedisVelocity, VelocityEvent

T0 = 19_700 * 86_400.0
IP = "203.0.113.7"


@pytest_asyncio.fixture(params=["local", "redis"])
async def counters(request, redis_url) -> AsyncIterator[LocalVelocity | RedisVelocity]:
    if request.param == "local":
        yield LocalVelocity()
        return
    client = aioredis.Redis.from_url(redis_url)
    prefix = f"test:velocity:{secrets.token_hex(6)}:"
    try:
        yield RedisVelocity(client, prefix, deadline_s=2.0)
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def event(
    at: float, *, card: str | None = "fp_1", amount: int = 1_000, merchant: str = "mer_a", **keys: str
) -> VelocityEvent:
    return VelocityEvent(merchant_id=merchant, amount=amount, card=card, occurred_at=T0 + at, **keys)


async def test_the_local_backend_runs_on_the_compiled_counters():
    import os

    if os.environ.get("SWITCH_NO_EXTENSIONS"):
        pytest.skip("pure-Python run")
    assert fastpath_velocity.IMPLEMENTATION == "c"


async def test_payments_59_s_apart_share_the_1m_window_and_61_s_apart_do_not(counters):
    await counters.observe(event(0, ip=IP))
    within = await counters.observe(event(59, ip=IP))
    assert within.counts[("ip", "1m")].count == 2
    assert within.counts[("card", "1m")].count == 2
    later = await counters.observe(event(61, ip=IP))
    assert later.counts[("ip", "1m")].count == 2  # the payment at 0 s fell out, 59 s and 61 s remain
    assert later.counts[("ip", "1h")].count == 3
    alone = await counters.observe(event(59 + 61, ip=IP))
    assert alone.counts[("ip", "1m")].count == 1


async def test_payments_3599_s_apart_share_the_1h_window_and_3601_s_apart_do_not(counters):
    await counters.observe(event(0))
    assert (await counters.observe(event(3_599))).counts[("card", "1h")].count == 2
    later = await counters.observe(event(3_601))
    assert later.counts[("card", "1h")].count == 2
    assert later.counts[("card", "24h")].count == 3
    assert later.counts[("card", "1m")].count == 2


async def test_payments_86399_s_apart_share_the_24h_window_and_86401_s_apart_do_not(counters):
    await counters.observe(event(0))
    assert (await counters.observe(event(86_399))).counts[("card", "24h")].count == 2
    later = await counters.observe(event(86_401))
    assert later.counts[("card", "24h")].count == 2
    after_two_days = await counters.observe(event(3 * 86_400))
    assert {window: after_two_days.counts[("card", window)].count for window in WINDOWS} == {"1m": 1, "1h": 1, "24h": 1}


async def test_amount_sums_follow_the_windows(counters):
    await counters.observe(event(0, amount=1_250))
    await counters.observe(event(40, amount=4_000))
    reading = await counters.observe(event(90, amount=1))
    assert reading.counts[("card", "1m")].amount == 4_001
    assert reading.counts[("card", "1h")].amount == 5_251


async def test_distinct_cards_per_ip_email_and_device_count_each_card_once(counters):
    for at, card in enumerate(["fp_1", "fp_2", "fp_1", "fp_3", "fp_4", "fp_2"]):
        reading = await counters.observe(event(at, card=card, ip=IP, email="a@example.com", device="dev_9"))
    for per in ("ip", "email", "device"):
        assert reading.counts[(per, "1h")].distinct_cards == 4
        assert reading.counts[(per, "1h")].count == 6
    assert reading.counts[("card", "1h")].distinct_cards == 1
    assert reading.counts[("card", "1h")].count == 2  # fp_2 twice


async def test_distinct_cards_leave_the_window_with_their_payments(counters):
    await counters.observe(event(0, card="fp_old", ip=IP))
    reading = await counters.observe(event(61, card="fp_new", ip=IP))
    assert reading.counts[("ip", "1m")].distinct_cards == 1
    assert reading.counts[("ip", "1h")].distinct_cards == 2


async def test_distinct_cards_are_capped_at_25(counters):
    for index in range(30):
        reading = await counters.observe(event(index, card=f"fp_{index}", ip=IP))
    assert reading.counts[("ip", "1m")].distinct_cards == 25
    assert reading.counts[("ip", "1m")].count == 30


async def test_declines_count_per_card_and_per_key_given_and_expire(counters):
    await counters.record_decline("mer_a", "fp_1", T0 + 0, ip=IP)
    await counters.record_decline("mer_a", "fp_1", T0 + 1)  # a cascaded retry declined too
    reading = await counters.observe(event(2, ip=IP))
    assert reading.counts[("card", "1m")].declines == 2
    assert reading.counts[("ip", "1m")].declines == 1
    assert reading.counts[("card", "1m")].count == 1  # declines are not attempts
    later = await counters.observe(event(65, ip=IP))
    assert later.counts[("card", "1m")].declines == 0
    assert later.counts[("card", "1h")].declines == 2


async def test_keys_are_scoped_per_merchant(counters):
    await counters.observe(event(0, merchant="mer_a", ip=IP))
    await counters.record_decline("mer_a", "fp_1", T0 + 0)
    other = await counters.observe(event(1, merchant="mer_b", ip=IP))
    assert other.counts[("card", "1m")].count == 1
    assert other.counts[("ip", "1m")].count == 1
    assert other.counts[("card", "1m")].declines == 0


async def test_absent_values_have_no_reading_and_every_present_per_has_all_windows(counters):
    reading = await counters.observe(event(0, card=None, email="a@example.com", customer=""))
    assert set(reading.counts) == {("email", window) for window in WINDOWS}
    assert reading.counts[("email", "1m")].distinct_cards == 0
    full = await counters.observe(event(1, ip=IP, email="b@example.com", device="d", customer="cus_1"))
    assert set(full.counts) == {(per, window) for per in PERS for window in WINDOWS}
    nothing = await counters.observe(event(2, card=None))
    assert nothing.counts == {} and nothing.available


async def test_emails_differing_in_case_and_ips_in_notation_are_one_key(counters):
    await counters.observe(event(0, email="Ada@Example.com", ip="2001:DB8:0:0:0:0:0:1"))
    reading = await counters.observe(event(1, email=" ada@example.com", ip="2001:db8::1"))
    assert reading.counts[("email", "1m")].count == 2
    assert reading.counts[("ip", "1m")].count == 2


@pytest.mark.parametrize("amount", [-1, 10**15 + 1])
async def test_an_amount_out_of_range_is_refused_before_counting(counters, amount):
    with pytest.raises(ValueError, match="amount"):
        await counters.observe(event(0, amount=amount))
    assert (await counters.observe(event(0))).counts[("card", "1m")].count == 1
