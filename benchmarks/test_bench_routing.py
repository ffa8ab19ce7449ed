"""Microbenchmark of one routing decision: match over 20 rules, then rank 8 candidates cheapest.

Run: ``.venv/bin/pytest benchmarks/test_bench_routing.py --benchmark-only`` (after
``python setup.py build_ext --inplace``). Target (issue 9): a decision under 20 us with the compiled
fastpath. The payment matches the last of 20 rules, the worst case for matching.
"""

import random
from types import SimpleNamespace

from adapters.base import Outcome
from fastpath import fees as fastpath_fees
from switch.routing.document import CompiledRouting, PaymentFacts, parse_document
from switch.routing.fees import build_account_routing
from switch.routing.stats import MemoryRoutingStats
from switch.routing.strategies import Ranker

NAMES = [f"acq-{index}" for index in range(8)]


def _account(index: int) -> SimpleNamespace:
    return SimpleNamespace(
        provider="adyen",
        country=["NL", "DE", "US", "GB", "FR", "IE", "SG", "JP"][index],
        region="EEA" if index in (0, 1, 4, 5) else None,
        settlement_currency=["EUR", "EUR", "USD", "GBP", "EUR", "EUR", "SGD", "JPY"][index],
        settlement_delay_days=index % 3,
        fx_markup_bps=100 + 10 * index,
        fees=[
            {
                "payment_method": "card",
                "currency": "EUR",
                "region": "EEA",
                "percent_bps": f"{120 + 15 * index}",
                "fixed": 10 + index,
            },
            {"payment_method": "card", "percent_bps": f"{250 + 10 * index}.5", "fixed": 25, "cross_border_bps": "100"},
            {"percent_bps": 300},
        ],
    )


def _setup():
    accounts = build_account_routing({name: _account(index) for index, name in enumerate(NAMES)})
    rules = [
        {
            "name": f"r{index}",
            "when": {"currency": ["USD"], "card_country": ["US"], "amount": {"gte": index}},
            "strategy": "priority",
            "candidates": NAMES[:2],
        }
        for index in range(19)
    ]
    rules.append(
        {
            "name": "eu-cards",
            "when": {
                "currency": ["EUR"],
                "payment_method": ["card"],
                "card_country": ["DE", "FR"],
                "amount": {"gte": 0, "lt": 500_000},
                "bin_prefix": ["4"],
            },
            "strategy": "cheapest",
            "candidates": NAMES,
        }
    )
    document = parse_document(
        {"rules": rules, "default": {"strategy": "priority", "candidates": ["sandbox"]}}, [*NAMES, "sandbox"]
    )
    compiled = CompiledRouting(document)
    stats = MemoryRoutingStats()
    for index, name in enumerate(NAMES):
        for attempt in range(40):
            stats.record_now(
                name, "card", "EUR", Outcome.APPROVED if attempt % (index + 3) else Outcome.DECLINED_SOFT, 150
            )
    facts = PaymentFacts(
        amount=12_345,
        currency="EUR",
        payment_method="card",
        card_country="DE",
        bin="424242",
        card_brand="visa",
        funding="credit",
    )
    return compiled, facts, accounts, stats, document


def test_bench_match_20_rules(benchmark):
    compiled, facts, *_ = _setup()
    assert benchmark(compiled.match, facts).rule == "eu-cards"


def test_bench_routing_decision_20_rules_8_cheapest(benchmark):
    compiled, facts, accounts, stats, document = _setup()
    ranker = Ranker()
    rng = random.Random(1)
    settings = document.reliable

    def supports(account, method):
        return True

    def decide():
        match = compiled.match(facts)
        return ranker.rank(match.target, facts, accounts, stats, rng, supports, settings=settings)

    ranking = benchmark(decide)
    assert len(ranking.plan) == 8
    assert ranking.strategy == "cheapest"
    benchmark.extra_info["fastpath"] = fastpath_fees.IMPLEMENTATION
