"""PSD2 SCA: scope, low-value exemption with its cumulative limits and reset, TRA bands, state backends."""

from __future__ import annotations

import secrets

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from fastpath import fx
from switch.risk.sca import (
    EEA_COUNTRIES,
    MemoryScaState,
    RedisScaState,
    ScaPolicy,
    ScaState,
    tra_limit_eur,
)
from switch.risk.types import BinInfo

from .decision_helpers import facts


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def redis_client(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture(params=["memory", "redis"])
async def state(request, redis_client) -> ScaState:
    if request.param == "memory":
        yield MemoryScaState()
        return
    prefix = f"test:sca:{secrets.token_hex(6)}:"
    yield RedisScaState(redis_client, prefix=prefix, ttl_s=3600)
    keys = [key async for key in redis_client.scan_iter(match=prefix + "*")]
    if keys:
        await redis_client.delete(*keys)


def eur(amount: int, **changes):
    return facts(amount=amount, currency="EUR", **changes)


async def test_non_eea_card_is_out_of_scope(state):
    policy = ScaPolicy(state)
    decision = await policy.decide(eur(50_000, bin=BinInfo(bin="400000", country="US")))
    assert (decision.exemption, decision.reason, decision.required) == (None, "out_of_scope", False)


async def test_non_eea_acquirer_is_out_of_scope(state):
    decision = await ScaPolicy(state, acquirer_region="other").decide(eur(50_000))
    assert (decision.reason, decision.required) == ("out_of_scope", False)


async def test_non_card_payment_is_out_of_scope(state):
    decision = await ScaPolicy(state).decide(eur(50_000, payment_method="sepa_debit", bin=None))
    assert decision.reason == "out_of_scope"


async def test_unknown_card_country_is_not_required(state):
    decision = await ScaPolicy(state).decide(eur(50_000, bin=BinInfo(bin="999999")))
    assert (decision.reason, decision.required) == ("card_country_unknown", False)


def test_the_eea_list_is_the_eu_and_iceland_liechtenstein_norway():
    assert {"DE", "FR", "IS", "LI", "NO"} <= EEA_COUNTRIES
    assert not {"GB", "CH", "US", "TR"} & EEA_COUNTRIES


async def test_low_value_applies_up_to_eur_30_and_not_above(state):
    policy = ScaPolicy(state)
    assert (await policy.decide(eur(3_000))).exemption == "low_value"
    above = await policy.decide(eur(3_001))
    assert (above.exemption, above.reason, above.required) == (None, "above_exemption_limits", True)


async def test_low_value_stops_after_five_exempted_payments_and_restarts_after_sca(state):
    policy = ScaPolicy(state)
    payment = eur(100)
    for _ in range(5):
        decision = await policy.decide(payment)
        assert decision.exemption == "low_value"
        await policy.record(payment, decision)
    sixth = await policy.decide(payment)
    assert (sixth.exemption, sixth.reason, sixth.required) == (None, "low_value_limit_reached", True)
    await policy.sca_completed(payment.card_fingerprint)
    assert (await policy.decide(payment)).exemption == "low_value"


async def test_low_value_stops_once_the_cumulative_amount_would_pass_eur_100(state):
    policy = ScaPolicy(state)
    for amount in (3_000, 3_000, 3_000):
        payment = eur(amount)
        decision = await policy.decide(payment)
        assert decision.exemption == "low_value"
        await policy.record(payment, decision)
    assert await state.count_and_sum("fp_card_1") == (3, 9_000)
    # 9,000 + 1,000 = EUR 100 exactly: still exempt.
    assert (await policy.decide(eur(1_000))).exemption == "low_value"
    over = await policy.decide(eur(1_001))
    assert (over.reason, over.required) == ("low_value_limit_reached", True)


async def test_counters_are_per_card(state):
    policy = ScaPolicy(state)
    for _ in range(5):
        payment = eur(100)
        await policy.record(payment, await policy.decide(payment))
    assert (await policy.decide(eur(100))).required
    assert (await policy.decide(eur(100, card_fingerprint="fp_other"))).exemption == "low_value"


async def test_a_required_decision_is_not_recorded(state):
    policy = ScaPolicy(state)
    payment = eur(50_000)
    decision = await policy.decide(payment)
    await policy.record(payment, decision)
    assert await state.count_and_sum("fp_card_1") == (0, 0)


@pytest.mark.parametrize(
    ("fraud_rate", "limit"),
    [(None, 0), (1_301, 0), (1_300, 10_000), (601, 10_000), (600, 25_000), (101, 25_000), (100, 50_000), (0, 50_000)],
)
def test_tra_bands_follow_the_fraud_rate(fraud_rate, limit):
    assert tra_limit_eur(fraud_rate) == limit


@pytest.mark.parametrize(
    ("fraud_rate", "exempt", "required"),
    [(1_300, 10_000, 10_001), (600, 25_000, 25_001), (100, 50_000, 50_001)],
)
async def test_tra_exempts_up_to_the_band_and_requires_sca_above(state, fraud_rate, exempt, required):
    policy = ScaPolicy(state, fraud_rate_centibps=fraud_rate)
    decision = await policy.decide(eur(exempt))
    assert (decision.exemption, decision.required) == ("transaction_risk_analysis", False)
    decision = await policy.decide(eur(required))
    assert (decision.exemption, decision.reason, decision.required) == (None, "above_exemption_limits", True)


async def test_tra_takes_over_when_low_value_is_exhausted(state):
    policy = ScaPolicy(state, fraud_rate_centibps=1_300)
    for _ in range(5):
        payment = eur(100)
        await policy.record(payment, await policy.decide(payment))
    decision = await policy.decide(eur(100))
    assert decision.exemption == "transaction_risk_analysis"


async def test_other_currencies_are_converted_to_euro(state):
    policy = ScaPolicy(state)
    just_under = fx.convert(3_000, "EUR", "USD").amount_out - 5
    just_over = fx.convert(3_000, "EUR", "USD").amount_out + 5
    assert fx.convert(just_under, "USD", "EUR").amount_out <= 3_000 < fx.convert(just_over, "USD", "EUR").amount_out
    under = await policy.decide(facts(amount=just_under, currency="USD"))
    assert under.exemption == "low_value"
    assert under.amount_eur == fx.convert(just_under, "USD", "EUR").amount_out
    assert (await policy.decide(facts(amount=just_over, currency="USD"))).required


async def test_memory_state_expires_on_the_injected_clock():
    clock = Clock()
    state = MemoryScaState(ttl_s=60, clock=clock)
    await state.add("fp", 1_000)
    clock.now += 59
    assert await state.count_and_sum("fp") == (1, 1_000)
    clock.now += 1
    assert await state.count_and_sum("fp") == (0, 0)


async def test_memory_state_is_bounded():
    state = MemoryScaState(max_cards=2)
    for card in ("a", "b", "c"):
        await state.add(card, 1)
    assert await state.count_and_sum("a") == (0, 0)
    assert await state.count_and_sum("c") == (1, 1)


async def test_redis_state_sets_an_expiry_and_resets(redis_client):
    prefix = f"test:sca:{secrets.token_hex(6)}:"
    state = RedisScaState(redis_client, prefix=prefix, ttl_s=120)
    await state.add("fp", 2_500)
    await state.add("fp", 500)
    assert await state.count_and_sum("fp") == (2, 3_000)
    ttl_ms = await redis_client.pttl(prefix + "fp")
    assert 0 < ttl_ms <= 120_000
    await state.reset("fp")
    assert await state.count_and_sum("fp") == (0, 0)
    assert not await redis_client.exists(prefix + "fp")
