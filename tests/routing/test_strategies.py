"""Each strategy's choice on crafted statistics and fee tables."""

import random

import pytest

from adapters.base import Outcome
from switch.routing.document import CompiledRouting, PaymentFacts, Reliable, parse_document
from switch.routing.stats import MemoryRoutingStats
from switch.routing.strategies import Ranker, success_ppm

NO_PRIOR = Reliable(min_samples=0)
SUPPORTS = {"adyen-eu": {"card"}, "stripe": {"card", "konbini"}, "stripe-eu": {"card"}, "sandbox": {"card"}}


def supports(account, method):
    return method in SUPPORTS.get(account, set())


def target(strategy, candidates, weights=None):
    rule = {"name": "r", "strategy": strategy, "candidates": list(candidates)}
    if weights:
        rule["weights"] = weights
    document = parse_document(
        {"rules": [rule], "default": {"strategy": "priority", "candidates": ["sandbox"]}}, [*SUPPORTS, "ghost"]
    )
    return CompiledRouting(document).match(eur_card()).target


def eur_card(**overrides):
    values = {"amount": 10_000, "currency": "EUR", "payment_method": "card", "card_country": "DE"}
    values.update(overrides)
    return PaymentFacts(**values)


def record(stats, account, outcome, count, latency_ms=100, method="card", currency="EUR"):
    for _ in range(count):
        stats.record_now(account, method, currency, outcome, latency_ms)


@pytest.fixture
def stats(clock):
    return MemoryRoutingStats(clock=clock)


@pytest.fixture
def ranker(fee_book):
    return Ranker(fee_book)


def test_priority_keeps_configured_order_and_skips_what_cannot_take_the_payment(ranker, accounts, stats):
    ranking = ranker.rank(
        target("priority", ["ghost", "stripe", "adyen-eu", "sandbox"]),
        eur_card(payment_method="konbini", currency="JPY"),
        accounts,
        stats,
        random.Random(1),
        supports,
    )
    assert ranking.plan == ("stripe",)
    views = {view.account: view for view in ranking.candidates}
    assert not views["ghost"].eligible and views["ghost"].reason == "account not configured on this switch"
    assert not views["adyen-eu"].eligible and "konbini" in views["adyen-eu"].reason
    assert [view.account for view in ranking.candidates] == ["ghost", "stripe", "adyen-eu", "sandbox"]


def test_cheapest_picks_the_cheapest_eligible_and_shows_every_cost(ranker, accounts, stats):
    ranking = ranker.rank(
        target("cheapest", ["stripe", "adyen-eu", "stripe-eu"]), eur_card(), accounts, stats, random.Random(1), supports
    )
    assert ranking.plan == ("adyen-eu", "stripe-eu", "stripe")
    views = {view.account: view for view in ranking.candidates}
    assert (views["adyen-eu"].fee, views["adyen-eu"].fx_cost, views["adyen-eu"].score) == (151, 0, 10_000 - 151)
    assert (views["stripe-eu"].fee, views["stripe-eu"].fx_cost, views["stripe-eu"].score) == (175, 0, 10_000 - 175)
    assert (views["stripe"].fee, views["stripe"].fx_cost, views["stripe"].score) == (564, 200, 10_000 - 764)
    assert views["adyen-eu"].success_rate == 1.0
    assert "runner-up stripe-eu nets 9825" in ranking.reason


def test_cheap_provider_that_fails_loses_by_expected_value(ranker, accounts, stats):
    record(stats, "adyen-eu", Outcome.APPROVED, 10)
    record(stats, "adyen-eu", Outcome.DECLINED_SOFT, 10)
    record(stats, "stripe-eu", Outcome.APPROVED, 19)
    record(stats, "stripe-eu", Outcome.DECLINED_SOFT, 1)
    ranking = ranker.rank(
        target("cheapest", ["adyen-eu", "stripe-eu"]),
        eur_card(),
        accounts,
        stats,
        random.Random(1),
        supports,
        settings=NO_PRIOR,
    )
    assert ranking.plan == ("stripe-eu", "adyen-eu")
    views = {view.account: view for view in ranking.candidates}
    assert views["adyen-eu"].score == 500_000 * (10_000 - 151) // 1_000_000
    assert views["stripe-eu"].score == 950_000 * (10_000 - 175) // 1_000_000
    assert views["adyen-eu"].success_rate == 0.5


def test_cheapest_puts_candidates_without_fee_data_last(ranker, accounts, stats):
    SUPPORTS["stripe"].add("gopay")
    SUPPORTS["sandbox"].add("gopay")
    try:
        ranking = ranker.rank(
            target("cheapest", ["stripe", "sandbox"]),
            eur_card(payment_method="gopay", card_country=None),
            accounts,
            stats,
            random.Random(1),
            supports,
        )
    finally:
        SUPPORTS["stripe"].discard("gopay")
        SUPPORTS["sandbox"].discard("gopay")
    assert ranking.plan == ("sandbox", "stripe")
    assert ranking.candidates[0].fee is None and ranking.candidates[0].score is None


def test_reliable_ranks_by_success_rate(ranker, accounts, stats):
    record(stats, "adyen-eu", Outcome.APPROVED, 9)
    record(stats, "adyen-eu", Outcome.TECHNICAL, 1)
    record(stats, "stripe", Outcome.APPROVED, 6)
    record(stats, "stripe", Outcome.DECLINED_SOFT, 4)
    record(stats, "stripe-eu", Outcome.APPROVED, 19)
    record(stats, "stripe-eu", Outcome.DECLINED_SOFT, 1)
    settings = Reliable(min_samples=0, exploration_percent=0)
    ranking = ranker.rank(
        target("reliable", ["stripe", "adyen-eu", "stripe-eu"]),
        eur_card(),
        accounts,
        stats,
        random.Random(1),
        supports,
        settings=settings,
    )
    assert ranking.plan == ("stripe-eu", "adyen-eu", "stripe")
    assert [view.success_rate for view in ranking.candidates] == [0.6, 0.9, 0.95]


def test_hard_declines_do_not_count_against_a_provider(ranker, accounts, stats):
    record(stats, "adyen-eu", Outcome.APPROVED, 10)
    record(stats, "adyen-eu", Outcome.DECLINED_HARD, 30)
    assert stats.success_rate("adyen-eu", "card", "EUR") == (1.0, 10)


def test_new_account_is_not_starved_by_the_prior(ranker, accounts, stats):
    record(stats, "adyen-eu", Outcome.APPROVED, 95)
    record(stats, "adyen-eu", Outcome.DECLINED_SOFT, 5)
    settings = Reliable(exploration_percent=0)  # min_samples 20: optimistic prior
    ranking = ranker.rank(
        target("reliable", ["adyen-eu", "stripe-eu"]),
        eur_card(),
        accounts,
        stats,
        random.Random(1),
        supports,
        settings=settings,
    )
    assert ranking.plan[0] == "stripe-eu"
    assert success_ppm(0.95, 100, 20) == (95 + 20) * 1_000_000 // 120


def test_reliable_exploration_takes_the_configured_share(ranker, accounts, stats):
    record(stats, "stripe-eu", Outcome.APPROVED, 50)
    record(stats, "adyen-eu", Outcome.APPROVED, 30)
    record(stats, "adyen-eu", Outcome.DECLINED_SOFT, 20)
    rng = random.Random(20260101)
    compiled = target("reliable", ["adyen-eu", "stripe-eu", "stripe"])
    firsts = [
        ranker.rank(compiled, eur_card(), accounts, stats, rng, supports, settings=NO_PRIOR).plan[0]
        for _ in range(4000)
    ]
    explored = sum(1 for first in firsts if first != "stripe-eu")
    # 5 % of 4,000 is 200; a fair draw stays within +-30 %.
    assert 140 <= explored <= 260
    assert {"adyen-eu", "stripe"} <= set(firsts)


def test_reliable_exploration_off_never_explores(ranker, accounts, stats):
    record(stats, "stripe-eu", Outcome.APPROVED, 50)
    record(stats, "adyen-eu", Outcome.DECLINED_SOFT, 5)
    settings = Reliable(min_samples=0, exploration_percent=0)
    compiled = target("reliable", ["adyen-eu", "stripe-eu"])
    assert {
        ranker.rank(compiled, eur_card(), accounts, stats, random.Random(i), supports, settings=settings).plan[0]
        for i in range(200)
    } == {"stripe-eu"}


def test_latency_cut_off_excludes_a_slow_provider(ranker, accounts, stats):
    record(stats, "adyen-eu", Outcome.APPROVED, 5, latency_ms=4000)
    record(stats, "stripe-eu", Outcome.APPROVED, 5, latency_ms=200)
    settings = Reliable(min_samples=0, exploration_percent=0, latency_cutoff_ms=3000)
    ranking = ranker.rank(
        target("reliable", ["adyen-eu", "stripe-eu"]),
        eur_card(),
        accounts,
        stats,
        random.Random(1),
        supports,
        settings=settings,
    )
    assert ranking.plan == ("stripe-eu",)
    assert ranking.candidates[0].reason == "mean latency 4000 ms above the 3000 ms cut-off"


def test_breaker_opens_half_opens_and_closes(ranker, accounts, stats, clock):
    compiled = target("priority", ["adyen-eu", "stripe-eu"])
    settings = Reliable(breaker_failures=3, breaker_cooldown_s=30)

    def plan():
        return ranker.rank(compiled, eur_card(), accounts, stats, random.Random(1), supports, settings=settings)

    record(stats, "adyen-eu", Outcome.TECHNICAL, 2)
    assert plan().plan == ("adyen-eu", "stripe-eu")
    record(stats, "adyen-eu", Outcome.UNKNOWN, 1)
    assert stats.breaker("adyen-eu", 3, 30) == "open"
    opened = plan()
    assert opened.plan == ("stripe-eu",)
    assert opened.candidates[0].reason == "circuit open"
    clock.advance(29)
    assert plan().plan == ("stripe-eu",)
    clock.advance(2)
    assert stats.breaker("adyen-eu", 3, 30) == "half_open"
    assert (
        ranker.rank(
            compiled, eur_card(), accounts, stats, random.Random(1), supports, settings=settings, dry_run=True
        ).plan[0]
        == "adyen-eu"
    )
    probe = plan()
    assert probe.plan == ("adyen-eu", "stripe-eu")
    assert "probe" in probe.candidates[0].reason
    # Only one probe at a time.
    assert plan().plan == ("stripe-eu",)
    # The probe failed: open again for a full cool-down.
    record(stats, "adyen-eu", Outcome.TECHNICAL, 1)
    assert stats.breaker("adyen-eu", 3, 30) == "open"
    clock.advance(31)
    assert plan().plan == ("adyen-eu", "stripe-eu")
    record(stats, "adyen-eu", Outcome.APPROVED, 1)
    assert stats.breaker("adyen-eu", 3, 30) == "closed"
    assert plan().plan == ("adyen-eu", "stripe-eu")
    assert plan().plan == ("adyen-eu", "stripe-eu")


def test_every_circuit_open_still_tries_them_in_order(ranker, accounts, stats):
    record(stats, "adyen-eu", Outcome.TECHNICAL, 5)
    record(stats, "stripe-eu", Outcome.TECHNICAL, 5)
    ranking = ranker.rank(
        target("priority", ["adyen-eu", "stripe-eu"]), eur_card(), accounts, stats, random.Random(1), supports
    )
    assert ranking.plan == ("adyen-eu", "stripe-eu")
    assert all("tried anyway" in view.reason for view in ranking.candidates)


def test_weighted_holds_70_30_over_any_100_consecutive_decisions(ranker, accounts, stats):
    compiled = target("weighted", ["adyen-eu", "stripe-eu"], {"adyen-eu": 70, "stripe-eu": 30})
    firsts = [ranker.rank(compiled, eur_card(), accounts, stats, random.Random(1), supports).plan for _ in range(1000)]
    assert sum(1 for plan in firsts if plan[0] == "adyen-eu") == 700
    for start in range(0, 901):
        window = firsts[start : start + 100]
        assert 69 <= sum(1 for plan in window if plan[0] == "adyen-eu") <= 71
    assert all(len(plan) == 2 for plan in firsts)


def test_weighted_state_is_per_target_and_dry_run_does_not_advance_it(ranker, accounts, stats):
    first = target("weighted", ["adyen-eu", "stripe-eu"], {"adyen-eu": 1, "stripe-eu": 1})
    second = target("weighted", ["adyen-eu", "stripe-eu"], {"adyen-eu": 1, "stripe-eu": 1})

    def head(compiled, dry_run=False):
        return ranker.rank(compiled, eur_card(), accounts, stats, random.Random(1), supports, dry_run=dry_run).plan[0]

    assert head(first, dry_run=True) == "adyen-eu"
    assert head(first) == "adyen-eu"
    assert head(first, dry_run=True) == "stripe-eu"
    assert head(first) == "stripe-eu"
    assert head(second) == "adyen-eu"


def test_weighted_skips_an_open_circuit(ranker, accounts, stats):
    record(stats, "adyen-eu", Outcome.TECHNICAL, 5)
    compiled = target("weighted", ["adyen-eu", "stripe-eu"], {"adyen-eu": 90, "stripe-eu": 10})
    plans = {ranker.rank(compiled, eur_card(), accounts, stats, random.Random(1), supports).plan for _ in range(20)}
    assert plans == {("stripe-eu",)}
