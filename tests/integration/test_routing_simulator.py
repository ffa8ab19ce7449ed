"""Routing strategies and the cascade, driven end to end through the provider simulator.

A switch app routes to three provider accounts served by the simulator: ``stripe-us`` and
``stripe-b`` (Stripe) and ``adyen-eu`` (Adyen). Where money is involved the tests assert on the
simulator's books (what it *performed*), not on what the switch says. Routing statistics are a
:class:`MemoryRoutingStats` with a clock the test moves, so windows and cool-downs pass without
sleeping.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import pytest_asyncio
from litestar import Litestar

from adapters.simulator import SimulatorServer
from adapters.simulator.knobs import Fault
from switch.config import Settings
from switch.merchants import create_merchant, set_merchant_providers
from switch.routing.stats import MemoryRoutingStats
from switch.routing.strategies import PPM
from tests.api.helpers import card, fresh_card_number
from tests.conftest import MerchantKey, running_app, temporary_database

US_CARD = "424242"  # BIN table: US
DE_CARD = "40000027"  # BIN table: DE (in the EEA)
AMOUNT = 10_000

# Fee schedules chosen so every fee is exact (no rounding) and the cheapest account flips with the
# card's country: adyen-eu is cheaper for EEA cards, stripe-us for US cards (see the cheapest test).
PROVIDERS = """
[accounts.stripe-us]
provider = "stripe"
api_key = "sk_test_us"
base_url = "{stripe}"
timeout_s = 2.0
lookup_consistency_s = 2
country = "US"
settlement_currency = "USD"
fx_markup_bps = 50
[[accounts.stripe-us.fees]]
payment_method = "card"
percent_bps = "150"
fixed = 20
fixed_currency = "EUR"

[accounts.stripe-b]
provider = "stripe"
api_key = "sk_test_b"
base_url = "{stripe}"
timeout_s = 2.0
lookup_consistency_s = 2

[accounts.adyen-eu]
provider = "adyen"
api_key = "AQE_simulator"
account_id = "SwitchECOM"
base_url = "{adyen}"
timeout_s = 2.0
country = "NL"
region = "EEA"
settlement_currency = "EUR"
[[accounts.adyen-eu.fees]]
payment_method = "card"
percent_bps = "120"
fixed = 10
cross_border_bps = "100"
"""
ACCOUNTS = ("stripe-us", "stripe-b", "adyen-eu")
LATER = 3600


class Clock:
    """Seconds since the epoch, moved by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def routing_database(server_url: str) -> Iterator[str]:
    with temporary_database(server_url, "switch_routing_sim_") as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(port=0) as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def switch_app(sim, routing_database, tmp_path_factory) -> AsyncIterator[Litestar]:
    path = tmp_path_factory.mktemp("routing") / "providers.toml"
    path.write_text(PROVIDERS.format(stripe=sim.url_for("stripe"), adyen=sim.url_for("adyen")))
    settings = Settings(
        database_url=routing_database,
        providers_file=str(path),
        rate_limit_per_s=1_000_000,
        rate_limit_burst=1_000_000,
        # EEA cards would otherwise need 3-D Secure; routing, not SCA, is under test here.
        sca_acquirer_region="other",
    )
    async with running_app(settings) as app:
        yield app


@pytest_asyncio.fixture(scope="module")
async def client(switch_app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=switch_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://switch.test", timeout=30) as http:
        yield http


@pytest.fixture
def clock(switch_app) -> Clock:
    """Fresh routing statistics on a hand-moved clock for each test."""
    moved = Clock()
    switch_app.state.router.stats = MemoryRoutingStats(clock=moved)
    return moved


@pytest_asyncio.fixture
async def merchant(switch_app, sim, clock) -> MerchantKey:
    sim.sim.reset()
    sim.sim.config.providers.clear()  # every knob back to its default: instant, always approving
    created, key = await create_merchant(switch_app.state.pool, "routing-" + secrets.token_hex(4))
    await set_merchant_providers(switch_app.state.pool, created.id, ACCOUNTS)
    return MerchantKey(created.id, key)


def _config(
    strategy: str,
    candidates: list[str],
    *,
    weights: dict[str, int] | None = None,
    cascade: dict[str, Any] | None = None,
    reliable: dict[str, Any] | None = None,
) -> dict[str, Any]:
    default: dict[str, Any] = {"strategy": strategy, "candidates": candidates}
    if weights is not None:
        default["weights"] = weights
    document: dict[str, Any] = {"default": default}
    if cascade is not None:
        document["cascade"] = cascade
    if reliable is not None:
        document["reliable"] = reliable
    return document


async def _put(client: httpx.AsyncClient, merchant: MerchantKey, document: dict[str, Any]) -> int:
    response = await client.put("/v1/routing", json=document, headers=merchant.headers)
    assert response.status_code == 200, response.text
    return response.json()["version"]


def _body(prefix: str = US_CARD, reference: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"amount": AMOUNT, "currency": "EUR", "payment_method": card(fresh_card_number(prefix))}
    if reference is not None:
        body["reference"] = reference
    return body


async def _pay(client: httpx.AsyncClient, merchant: MerchantKey, prefix: str = US_CARD, **extra: Any) -> dict:
    response = await client.post("/v1/payments", json=_body(prefix, **extra), headers=merchant.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _simulate(client: httpx.AsyncClient, merchant: MerchantKey, prefix: str = US_CARD) -> dict:
    response = await client.post("/v1/routing/simulate", json=_body(prefix), headers=merchant.headers)
    assert response.status_code == 200, response.text
    return response.json()


def _candidate(simulation: dict, account: str) -> dict:
    return next(c for c in simulation["candidates"] if c["account"] == account)


def _charged(sim: SimulatorServer, payment_id: str) -> list[str]:
    """Simulated providers that performed an authorization of the payment, one entry per charge."""
    return [m.provider for m in sim.sim.books.for_payment(payment_id) if m.kind == "authorize"]


def _attempts(payment: dict) -> list[tuple[str, str]]:
    return [(a["provider"], a["outcome"]) for a in payment["routing"]["attempts"]]


def _cascades(app: Litestar, source: str, target: str, reason: str) -> float:
    labels = {"from_account": source, "to_account": target, "reason": reason}
    return app.state.metrics.registry.get_sample_value("switch_cascades_total", labels) or 0.0


def _requests_received(sim: SimulatorServer, provider: str) -> list[bytes]:
    return [body for name, method, _, body in sim.sim.requests_log if name == provider and method == "POST"]


# ------------------------------------------------------------------------------------ reliable


async def test_reliable_moves_traffic_off_a_degraded_provider_and_back_after_it_recovers(
    switch_app, client, merchant, sim, clock
):
    """N = 10 payments to adapt; shares over the next K = 30 payments; window 10 s, exploration 10 %."""
    await _put(
        client,
        merchant,
        _config(
            "reliable",
            ["stripe-us", "adyen-eu"],
            reliable={"window_s": 10, "exploration_percent": 10, "min_samples": 5},
        ),
    )

    async def share_of_stripe(count: int) -> float:
        served = []
        for _ in range(count):
            payment = await _pay(client, merchant)
            assert len(payment["routing"]["attempts"]) == 1, payment["routing"]  # soft declines never listed
            served.append(payment["routing"]["attempts"][0]["provider"])
            expected = {"stripe-us": ["stripe"], "adyen-eu": ["adyen"]}[served[-1]]
            assert _charged(sim, payment["id"]) == (expected if payment["status"] == "captured" else [])
        return served.count("stripe-us") / count

    # Healthy: both approve everything, so the first candidate keeps (nearly) all of the traffic.
    assert await share_of_stripe(10) >= 0.5
    knobs = sim.sim.knobs("stripe")
    knobs.approval_rate, knobs.decline_mix = 0.2, {"do_not_honor": 1.0}
    await share_of_stripe(10)  # N: enough declines for its success rate to fall behind
    degraded = await share_of_stripe(30)
    assert degraded <= 0.4, degraded  # only exploration (10 %) still reaches it
    simulation = await _simulate(client, merchant)
    assert simulation["plan"][0] == "adyen-eu"
    assert _candidate(simulation, "stripe-us")["success_rate"] < _candidate(simulation, "adyen-eu")["success_rate"]
    # Recovery: the declines age out of the 10 s window (the injected clock, not a sleep).
    knobs.approval_rate, knobs.decline_mix = 1.0, {}
    clock.advance(20)
    recovered = await share_of_stripe(30)
    assert recovered >= 0.6, recovered
    # Money: every charge the books show is one of this test's payments, at most one per payment.
    per_payment = Counter(m.payment_id for m in sim.sim.books.movements if m.kind == "authorize")
    assert per_payment and max(per_payment.values()) == 1


async def test_the_breaker_opens_after_consecutive_technical_failures_and_half_opens_after_its_cool_down(
    switch_app, client, merchant, sim, clock
):
    await _put(
        client,
        merchant,
        _config("priority", ["stripe-us", "adyen-eu"], reliable={"breaker_failures": 3, "breaker_cooldown_s": 30}),
    )
    sim.sim.knobs("stripe").rate_limit_rate = 1.0  # every request answers 429: technical, nothing performed
    for failures in range(1, 4):
        payment = await _pay(client, merchant)
        assert _attempts(payment) == [("stripe-us", "technical"), ("adyen-eu", "approved")]
        assert _charged(sim, payment["id"]) == ["adyen"]
        stripe = _candidate(await _simulate(client, merchant), "stripe-us")
        if failures < 3:
            assert (stripe["eligible"], stripe["reason"]) == (True, "eligible"), stripe
    assert (stripe["eligible"], stripe["reason"]) == (False, "circuit open"), stripe
    assert (await _simulate(client, merchant))["plan"] == ["adyen-eu"]
    stripe_requests = sim.sim.stats["stripe"]["requests"]
    payment = await _pay(client, merchant)
    assert _attempts(payment) == [("adyen-eu", "approved")]
    assert sim.sim.stats["stripe"]["requests"] == stripe_requests  # the open circuit kept it away
    clock.advance(31)
    stripe = _candidate(await _simulate(client, merchant), "stripe-us")
    assert stripe["eligible"] is True
    assert stripe["reason"] == "probe: circuit half-open after its cool-down"
    sim.sim.knobs("stripe").rate_limit_rate = 0.0
    probe = await _pay(client, merchant)
    assert _attempts(probe) == [("stripe-us", "approved")]
    assert _charged(sim, probe["id"]) == ["stripe"]
    stripe = _candidate(await _simulate(client, merchant), "stripe-us")
    assert (stripe["eligible"], stripe["reason"]) == (True, "eligible")  # the probe's success closed it


# ------------------------------------------------------------------------------------ cascade

PRIORITY = ["stripe-us", "adyen-eu"]


async def test_a_technical_refusal_cascades_and_the_payment_is_charged_once_at_the_next_account_only(
    switch_app, client, merchant, sim
):
    await _put(client, merchant, _config("priority", PRIORITY))
    before = _cascades(switch_app, "stripe-us", "adyen-eu", "technical")
    # 429 three times: the adapter's two retries are refused too; nothing was processed.
    sim.sim.knobs("stripe").faults.append(Fault(kind="refuse", status=429, count=3, retry_after="0"))
    reference = "order-" + secrets.token_hex(4)
    payment = await _pay(client, merchant, reference=reference)
    assert _attempts(payment) == [("stripe-us", "technical"), ("adyen-eu", "approved")]
    assert (payment["status"], payment["provider"], payment["reference"]) == ("captured", "adyen-eu", reference)
    assert _charged(sim, payment["id"]) == ["adyen"]
    assert _cascades(switch_app, "stripe-us", "adyen-eu", "technical") == before + 1
    # Both providers were asked for the same payment; Stripe got the merchant's reference.
    stripe_forms = [parse_qs(body.decode()) for body in _requests_received(sim, "stripe")]
    assert stripe_forms and all(form["metadata[payment_id]"] == [payment["id"]] for form in stripe_forms)
    assert all(form["description"] == [reference] for form in stripe_forms)
    (adyen_body,) = [json.loads(body) for body in _requests_received(sim, "adyen")]
    assert adyen_body["merchantOrderReference"] == payment["id"]


async def test_a_listed_soft_decline_cascades_and_an_unlisted_one_does_not(switch_app, client, merchant, sim):
    knobs = sim.sim.knobs("stripe")
    knobs.approval_rate, knobs.decline_mix = 0.0, {"do_not_honor": 1.0}
    await _put(client, merchant, _config("priority", PRIORITY, cascade={"soft_decline_codes": ["do_not_honor"]}))
    before = _cascades(switch_app, "stripe-us", "adyen-eu", "soft_decline")
    listed = await _pay(client, merchant)
    assert _attempts(listed) == [("stripe-us", "declined_soft"), ("adyen-eu", "approved")]
    assert listed["routing"]["attempts"][0]["code"] == "do_not_honor"
    assert listed["status"] == "captured"
    assert _charged(sim, listed["id"]) == ["adyen"]
    assert _cascades(switch_app, "stripe-us", "adyen-eu", "soft_decline") == before + 1

    await _put(client, merchant, _config("priority", PRIORITY, cascade={"soft_decline_codes": []}))
    unlisted = await _pay(client, merchant)
    assert _attempts(unlisted) == [("stripe-us", "declined_soft")]
    assert unlisted["status"] == "declined"
    assert _charged(sim, unlisted["id"]) == []
    assert _cascades(switch_app, "stripe-us", "adyen-eu", "soft_decline") == before + 1


async def test_a_hard_decline_never_cascades(switch_app, client, merchant, sim):
    knobs = sim.sim.knobs("stripe")
    knobs.approval_rate, knobs.decline_mix = 0.0, {"stolen_card": 1.0}
    await _put(client, merchant, _config("priority", PRIORITY, cascade={"soft_decline_codes": ["do_not_honor"]}))
    payment = await _pay(client, merchant)
    assert _attempts(payment) == [("stripe-us", "declined_hard")]
    assert payment["status"] == "declined"
    assert _charged(sim, payment["id"]) == []
    assert _requests_received(sim, "adyen") == []


async def test_an_unknown_outcome_never_cascades_and_is_charged_at_most_once_after_recovery(
    switch_app, client, merchant, sim
):
    await _put(client, merchant, _config("priority", PRIORITY))
    stripe = sim.sim.knobs("stripe")
    # Performed, then answered 500: the switch cannot know, so it must not try adyen.
    stripe.faults.append(Fault(kind="error_after", status=500, match="/payment_intents", method="POST"))
    performed = await _pay(client, merchant)
    assert [a["provider"] for a in performed["routing"]["attempts"]] == ["stripe-us"]
    # A 503 answer: maybe processed, maybe not (gateway); it stays unknown, pending.
    stripe.faults.append(Fault(kind="refuse", status=503, count=20, match="/payment_intents", method="POST"))
    unanswered = await _pay(client, merchant)
    assert _attempts(unanswered) == [("stripe-us", "unknown")]
    assert unanswered["status"] == "pending"
    stripe.faults.clear()
    await switch_app.state.recovery.run_once(now=time.time() + LATER)
    assert _requests_received(sim, "adyen") == []
    assert _charged(sim, performed["id"]) == ["stripe"]
    assert _charged(sim, unanswered["id"]) == []
    shown = (await client.get(f"/v1/payments/{performed['id']}", headers=merchant.headers)).json()
    assert shown["status"] == "captured" and shown["amount_captured"] == AMOUNT


async def test_max_attempts_bounds_the_cascade_and_the_reference_is_the_same_at_every_attempt(
    switch_app, client, merchant, sim
):
    await _put(
        client, merchant, _config("priority", ["stripe-us", "stripe-b", "adyen-eu"], cascade={"max_attempts": 2})
    )
    sim.sim.knobs("stripe").rate_limit_rate = 1.0
    reference = "order-" + secrets.token_hex(4)
    payment = await _pay(client, merchant, reference=reference)
    assert _attempts(payment) == [("stripe-us", "technical"), ("stripe-b", "technical")]
    assert payment["status"] == "failed"
    assert _requests_received(sim, "adyen") == []  # the third account is past max_attempts
    assert _charged(sim, payment["id"]) == []
    forms = [parse_qs(body.decode()) for body in _requests_received(sim, "stripe")]
    keys = {form["metadata[attempt_id]"][0] for form in forms}
    assert len(keys) == 2  # two attempts (each retried by the adapter under its own key)
    assert {form["description"][0] for form in forms} == {reference}
    assert {form["metadata[payment_id]"][0] for form in forms} == {payment["id"]}


async def test_the_deadline_stops_the_cascade_once_it_has_passed(switch_app, client, merchant, sim):
    knobs = sim.sim.knobs("stripe")
    knobs.approval_rate, knobs.decline_mix = 0.0, {"do_not_honor": 1.0}
    knobs.latency.ms = 250  # the first answer arrives after the 100 ms deadline
    await _put(
        client,
        merchant,
        _config("priority", PRIORITY, cascade={"soft_decline_codes": ["do_not_honor"], "deadline_ms": 100}),
    )
    payment = await _pay(client, merchant)
    assert _attempts(payment) == [("stripe-us", "declined_soft")]
    assert _requests_received(sim, "adyen") == []
    await _put(
        client,
        merchant,
        _config("priority", PRIORITY, cascade={"soft_decline_codes": ["do_not_honor"], "deadline_ms": 5000}),
    )
    within = await _pay(client, merchant)
    assert _attempts(within) == [("stripe-us", "declined_soft"), ("adyen-eu", "approved")]
    assert _charged(sim, within["id"]) == ["adyen"]


# ------------------------------------------------------------------------------------ cheapest


def _fee(amount: int, bps: int, fixed: int) -> int:
    """By hand: these amounts and rates divide exactly, so no rounding is involved."""
    assert amount * bps % 10_000 == 0
    return amount * bps // 10_000 + fixed


async def test_cheapest_ranks_by_fee_fx_cross_border_and_expected_value(switch_app, client, merchant, sim):
    await _put(client, merchant, _config("cheapest", ["stripe-us", "adyen-eu"], reliable={"min_samples": 20}))
    adyen_eea = _fee(AMOUNT, 120, 10)  # 130: an EEA card at the NL account is not cross-border
    adyen_cross = _fee(AMOUNT, 120 + 100, 10)  # 230: a US card pays the cross-border surcharge
    stripe_fee = _fee(AMOUNT, 150, 20)  # 170: no cross-border surcharge configured
    stripe_fx = AMOUNT * 50 // 10_000  # 50: EUR payments settle in USD at a 50 bps markup

    eea = await _pay(client, merchant, DE_CARD)
    assert eea["routing"]["strategy"] == "cheapest"
    assert eea["routing"]["cost"] == {"account": "adyen-eu", "fee": adyen_eea, "fx_cost": 0}
    assert eea["routing"]["runner_up"] == {"account": "stripe-us", "fee": stripe_fee, "fx_cost": stripe_fx}
    assert _charged(sim, eea["id"]) == ["adyen"]

    us = await _pay(client, merchant, US_CARD)
    assert us["routing"]["cost"] == {"account": "stripe-us", "fee": stripe_fee, "fx_cost": stripe_fx}
    assert us["routing"]["runner_up"] == {"account": "adyen-eu", "fee": adyen_cross, "fx_cost": 0}
    assert _charged(sim, us["id"]) == ["stripe"]

    # adyen-eu stays cheaper for EEA cards but starts soft-declining ("12": not enough balance).
    adyen = sim.sim.knobs("adyen")
    adyen.approval_rate, adyen.decline_mix = 0.0, {"12": 1.0}
    declined = await _pay(client, merchant, DE_CARD)
    assert _attempts(declined) == [("adyen-eu", "declined_soft")]
    # 2 attempts, 1 success, prior 20: p = (1 + 20) / (2 + 20); EV = p * (amount - fee - fx).
    p_adyen = (1 + 20) * PPM // (2 + 20)
    simulation = await _simulate(client, merchant, DE_CARD)
    assert simulation["plan"] == ["stripe-us", "adyen-eu"]
    assert _candidate(simulation, "adyen-eu")["score"] == p_adyen * (AMOUNT - adyen_eea) // PPM
    assert _candidate(simulation, "stripe-us")["score"] == AMOUNT - stripe_fee - stripe_fx
    assert _candidate(simulation, "adyen-eu")["fee"] == adyen_eea  # still the cheaper one
    loses = await _pay(client, merchant, DE_CARD)
    assert loses["routing"]["cost"] == {"account": "stripe-us", "fee": stripe_fee, "fx_cost": stripe_fx}
    assert _attempts(loses) == [("stripe-us", "approved")]
    assert _charged(sim, loses["id"]) == ["stripe"]


# ------------------------------------------------------------------------------------ weighted


async def test_weighted_holds_70_30_over_100_payments(switch_app, client, merchant, sim):
    await _put(
        client,
        merchant,
        _config("weighted", ["stripe-us", "adyen-eu"], weights={"stripe-us": 70, "adyen-eu": 30}),
    )
    ids = [(await _pay(client, merchant))["id"] for _ in range(100)]
    charged = Counter(provider for payment_id in ids for provider in _charged(sim, payment_id))
    assert abs(charged["stripe"] - 70) <= 2 and abs(charged["adyen"] - 30) <= 2, charged
    assert sum(charged.values()) == 100
