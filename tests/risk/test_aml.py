"""AML flags: large amounts and structuring, on memory and Redis state, with times injected."""

from __future__ import annotations

import secrets

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from fastpath import fx
from switch.risk.aml import (
    LARGE_AMOUNT_RULE,
    STRUCTURING_RULE,
    AmlConfig,
    AmlMonitor,
    AmlState,
    MemoryAmlState,
    RedisAmlState,
)
from switch.risk.engine import FiredRule, evaluate
from switch.risk.rules import CompiledRules

from .decision_helpers import facts, reading

T0 = 1_700_000_000.0


@pytest_asyncio.fixture
async def redis_client(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture(params=["memory", "redis"])
async def state(request, redis_client) -> AmlState:
    if request.param == "memory":
        yield MemoryAmlState()
        return
    prefix = f"test:aml:{secrets.token_hex(6)}:"
    yield RedisAmlState(redis_client, prefix=prefix)
    keys = [key async for key in redis_client.scan_iter(match=prefix + "*")]
    if keys:
        await redis_client.delete(*keys)


def payment(amount: int, at: float, **changes):
    return facts(amount=amount, currency="EUR", occurred_at=at, **changes)


async def test_large_amount_flags_at_the_threshold_and_not_below(state):
    monitor = AmlMonitor(state)
    assert await monitor.check(payment(999_999, T0), "pay_1") == []
    assert await monitor.check(payment(1_000_000, T0), "pay_2") == [
        FiredRule(name=LARGE_AMOUNT_RULE, action="review", value=1_000_000, threshold=1_000_000)
    ]


async def test_large_amount_is_measured_in_euro(state):
    monitor = AmlMonitor(state)
    usd = fx.convert(1_000_000, "EUR", "USD").amount_out + 10
    flags = await monitor.check(facts(amount=usd, currency="USD", occurred_at=T0), "pay_1")
    assert [flag.name for flag in flags] == [LARGE_AMOUNT_RULE]
    assert flags[0].value == fx.convert(usd, "USD", "EUR").amount_out


async def test_three_payments_just_under_the_threshold_within_24h_are_structuring(state):
    monitor = AmlMonitor(state)
    assert await monitor.check(payment(950_000, T0), "pay_1") == []
    assert await monitor.check(payment(900_000, T0 + 3_600), "pay_2") == []
    flags = await monitor.check(payment(999_999, T0 + 7_200), "pay_3")
    assert flags == [FiredRule(name=STRUCTURING_RULE, action="review", value=3, threshold=3)]


async def test_payments_below_ninety_percent_do_not_count(state):
    monitor = AmlMonitor(state)
    for index in range(5):
        assert await monitor.check(payment(899_999, T0 + index), f"pay_{index}") == []


async def test_payments_outside_the_window_do_not_count(state):
    monitor = AmlMonitor(state)
    await monitor.check(payment(950_000, T0), "pay_1")
    await monitor.check(payment(950_000, T0 + 86_000), "pay_2")
    # The first one is 24 h old exactly at the third: it has left the window.
    assert await monitor.check(payment(950_000, T0 + 86_400), "pay_3") == []
    assert [flag.name for flag in await monitor.check(payment(950_000, T0 + 86_401), "pay_4")] == [STRUCTURING_RULE]


async def test_structuring_is_counted_per_card_across_customers(state):
    monitor = AmlMonitor(state)
    for index in range(2):
        await monitor.check(payment(950_000, T0 + index, customer_id=f"cus_{index}"), f"pay_{index}")
    flags = await monitor.check(payment(950_000, T0 + 2, customer_id="cus_9"), "pay_9")
    assert [flag.name for flag in flags] == [STRUCTURING_RULE]


async def test_structuring_is_counted_per_customer_across_cards(state):
    monitor = AmlMonitor(state)
    for index in range(2):
        await monitor.check(payment(950_000, T0 + index, card_fingerprint=f"fp_{index}"), f"pay_{index}")
    flags = await monitor.check(payment(950_000, T0 + 2, card_fingerprint="fp_9"), "pay_9")
    assert [flag.name for flag in flags] == [STRUCTURING_RULE]


async def test_different_customers_and_cards_do_not_add_up(state):
    monitor = AmlMonitor(state)
    for index in range(4):
        flags = await monitor.check(
            payment(950_000, T0 + index, customer_id=f"cus_{index}", card_fingerprint=f"fp_{index}"), f"pay_{index}"
        )
        assert flags == []


async def test_the_same_payment_checked_twice_counts_once(state):
    monitor = AmlMonitor(state)
    for _ in range(3):
        assert await monitor.check(payment(950_000, T0), "pay_same") == []


async def test_a_configured_threshold_and_count_apply(state):
    monitor = AmlMonitor(state, AmlConfig(large_amount_eur=100_000, structuring_low_bps=8_000, structuring_count=2))
    assert await monitor.check(payment(80_000, T0), "pay_1") == []
    assert [flag.name for flag in await monitor.check(payment(99_000, T0 + 1), "pay_2")] == [STRUCTURING_RULE]


async def test_memory_state_is_bounded_per_key_and_in_keys():
    state = MemoryAmlState(max_keys=2)
    for index in range(10):
        count = await state.add_and_count("k", f"m{index}", T0 + index, 86_400, cap=4)
    assert count == 4
    await state.add_and_count("a", "m", T0, 60, cap=4)
    await state.add_and_count("b", "m", T0, 60, cap=4)
    assert await state.add_and_count("k", "new", T0 + 20, 86_400, cap=4) == 1  # "k" was evicted


async def test_redis_state_is_bounded_and_expires(redis_client):
    prefix = f"test:aml:{secrets.token_hex(6)}:"
    state = RedisAmlState(redis_client, prefix=prefix)
    for index in range(10):
        count = await state.add_and_count("k", f"m{index}", T0 + index, 3_600, cap=4)
    assert count == 4
    assert await redis_client.zrange(prefix + "k", 0, -1) == [b"m6", b"m7", b"m8", b"m9"]
    assert 0 < await redis_client.pttl(prefix + "k") <= 3_600_000
    await redis_client.delete(prefix + "k")


@pytest.mark.parametrize("config", [{"structuring_low_bps": 10_000}, {"structuring_count": 1}, {"large_amount_eur": 0}])
def test_invalid_config_is_rejected(config):
    with pytest.raises(ValueError):
        AmlConfig(**config)


async def test_aml_flags_open_a_review_through_the_engine(state):
    flags = await AmlMonitor(state).check(payment(2_000_000, T0), "pay_1")
    decision = evaluate(CompiledRules(rules=()), payment(2_000_000, T0), reading(), [], None, extra=flags)
    assert decision.decision == "review"
    assert [rule.name for rule in decision.rules] == [LARGE_AMOUNT_RULE]
