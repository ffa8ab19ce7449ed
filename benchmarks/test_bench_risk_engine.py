"""Microbenchmark of the risk decision: 15 rules over a velocity reading of 5 keys x 3 windows.

Run: ``.venv/bin/pytest benchmarks/test_bench_risk_engine.py --benchmark-only``. Target (issue 10):
one evaluation well under 50 us in pure Python. The counters, the BIN look-up and sanctions
screening are measured by their own benchmarks; this is the decision layer alone.
"""

from switch.risk.engine import evaluate
from switch.risk.rules import PLATFORM_DEFAULTS, effective_rules, parse_rules
from switch.risk.sca import ScaDecision
from switch.risk.types import PERS, WINDOWS, BinInfo, RiskFacts, VelocityReading, WindowCounts

MERCHANT = parse_rules(
    {
        "rules": [
            {"name": "big", "kind": "amount", "threshold": 500_000, "currency": "EUR", "action": "review", "score": 20},
            {"name": "hr", "kind": "country", "countries": ["RU", "BY", "VE"], "action": "review", "score": 30},
            {
                "name": "email-1m",
                "kind": "velocity",
                "measure": "count",
                "per": "email",
                "window": "1m",
                "threshold": 5,
                "action": "decline",
                "mode": "shadow",
            },
        ]
    }
)
RULES = effective_rules(MERCHANT)
assert len(RULES.rules) == len(PLATFORM_DEFAULTS) + 3 == 15

FACTS = RiskFacts(
    merchant_id="mer_bench",
    amount=12_345,
    currency="EUR",
    payment_method="card",
    card_fingerprint="fp_bench",
    bin=BinInfo(bin="424242", country="DE", brand="visa", funding="credit"),
    email="shopper@example.com",
    ip="203.0.113.9",
    ip_country="FR",
    device_id="dev_bench",
    customer_id="cus_bench",
    customer_country="DE",
)
READING = VelocityReading(
    counts={
        (per, window): WindowCounts(count=4, amount=40_000, distinct_cards=2, declines=1)
        for per in PERS
        for window in WINDOWS
    }
)
SCA = ScaDecision(exemption="transaction_risk_analysis", reason="transaction_risk_analysis", required=False)


def test_evaluate_15_rules_5_keys_3_windows(benchmark):
    decision = benchmark(evaluate, RULES, FACTS, READING, (), SCA)
    # The geo mismatch (FR IP, DE card) fires; the 1-minute card attempts (4 > 3) decline.
    assert decision.decision == "decline"
    assert {rule.name for rule in decision.rules} == {"platform.geo_mismatch", "platform.card_attempts_1m"}
