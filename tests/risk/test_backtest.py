"""Backtesting on a generated history: counts checked against an independent tally of the history."""

from __future__ import annotations

import json
import random

import msgspec

from switch.risk.backtest import BacktestReport, HistoricPayment, backtest
from switch.risk.rules import parse_rules
from switch.risk.types import BinInfo, SanctionsMatch

from .decision_helpers import facts

T0 = 1_700_000_000.0
DAY = 86_400.0

PROPOSED = parse_rules(
    {
        "rules": [
            {
                "name": "ip-cards",
                "kind": "velocity",
                "measure": "distinct_cards",
                "per": "ip",
                "window": "1h",
                "threshold": 3,
                "action": "decline",
                "score": 80,
            },
            {"name": "big", "kind": "amount", "threshold": 100_000, "action": "review", "score": 40},
            {"name": "geo", "kind": "geo_mismatch", "action": "request_3ds", "score": 10},
            {"name": "shadow-amount", "kind": "amount", "threshold": 20_000, "action": "decline", "mode": "shadow"},
        ]
    }
)


def _one_off(index: int, at: float, amount: int, card_country: str, ip_country: str, **outcome) -> HistoricPayment:
    """A payment whose every key is its own, so no velocity rule can fire on it."""
    return HistoricPayment(
        id=f"pay_n{index}",
        facts=facts(
            amount=amount,
            occurred_at=at,
            card_fingerprint=f"fp_n{index}",
            email=f"n{index}@example.com",
            ip=f"198.51.{index // 250}.{index % 250}",
            device_id=f"dev_n{index}",
            customer_id=f"cus_n{index}",
            bin=BinInfo(bin="424242", country=card_country),
            ip_country=ip_country,
        ),
        **outcome,
    )


def _attack(burst: int, index: int, at: float, **outcome) -> HistoricPayment:
    """Card testing: one IP, a new card (and email, device, customer) each time, small amounts."""
    return HistoricPayment(
        id=f"pay_a{burst}_{index}",
        facts=facts(
            amount=100,
            occurred_at=at,
            card_fingerprint=f"fp_a{burst}_{index}",
            email=f"a{burst}_{index}@example.com",
            ip=f"203.0.113.{burst}",
            device_id=f"dev_a{burst}_{index}",
            customer_id=f"cus_a{burst}_{index}",
        ),
        **outcome,
    )


def _generated_history(seed: int) -> tuple[list[HistoricPayment], dict[str, str], dict]:
    """A shuffled history, the decision each payment must get, and the expected by-rule tallies."""
    rng = random.Random(seed)
    history: list[HistoricPayment] = []
    expected: dict[str, str] = {}
    by_rule = {"ip-cards": 0, "big": 0, "geo": 0, "shadow-amount": 0}
    # Bursts two days apart, a payment every 30 s: each burst sits well inside one hour.
    for burst in range(6):
        size = rng.randint(1, 12)
        for index in range(size):
            payment = _attack(
                burst,
                index,
                T0 + burst * 2 * DAY + index * 30,
                refunded=rng.random() < 0.2,
                disputed=rng.random() < 0.3,
            )
            history.append(payment)
            # The fourth distinct card within the hour is the first above the threshold of 3.
            expected[payment.id] = "decline" if index >= 3 else "approve"
            by_rule["ip-cards"] += index >= 3
    for index in range(120):
        amount = rng.choice([900, 15_000, 25_000, 100_000, 100_001, 250_000])
        card_country = rng.choice(["DE", "FR"])
        ip_country = card_country if rng.random() < 0.7 else rng.choice(["US", "NG", "DE"])
        payment = _one_off(
            index,
            T0 + rng.uniform(0, 12 * DAY),
            amount,
            card_country,
            ip_country,
            refunded=rng.random() < 0.1,
            disputed=rng.random() < 0.1,
        )
        history.append(payment)
        mismatch = ip_country != card_country
        expected[payment.id] = "review" if amount > 100_000 else "request_3ds" if mismatch else "approve"
        by_rule["big"] += amount > 100_000
        by_rule["geo"] += mismatch
        by_rule["shadow-amount"] += amount > 20_000
    rng.shuffle(history)
    return history, expected, by_rule


def _tally(history: list[HistoricPayment], expected: dict[str, str]) -> dict[str, int]:
    names = {"decline": "declined", "review": "reviewed", "request_3ds": "request_3ds", "approve": "approved"}
    tally = {name: 0 for name in names.values()}
    for payment in history:
        prefix = names[expected[payment.id]]
        tally[prefix] += 1
        for outcome in ("refunded", "disputed"):
            key = f"{prefix}_later_{outcome}"
            tally[key] = tally.get(key, 0) + getattr(payment, outcome)
    return tally


def test_backtest_counts_match_an_independent_tally_of_the_history():
    history, expected, by_rule = _generated_history(seed=10)
    report = backtest(PROPOSED, history, with_defaults=False)
    tally = _tally(history, expected)
    assert report.payments == len(history) == 120 + sum(1 for p in history if p.id.startswith("pay_a"))
    assert report.declined == tally["declined"] > 0
    assert report.reviewed == tally["reviewed"] > 0
    assert report.request_3ds == tally["request_3ds"] > 0
    assert report.approved == tally["approved"]
    assert report.declined + report.reviewed + report.request_3ds + report.approved == report.payments
    for decision in ("declined", "reviewed", "request_3ds", "approved"):
        for outcome in ("refunded", "disputed"):
            field = f"{decision}_later_{outcome}"
            assert getattr(report, field) == tally.get(field, 0), field
    assert report.by_rule == {name: count for name, count in by_rule.items() if count}
    flagged = {item.payment for item in report.flagged}
    assert flagged == {
        payment.id
        for payment in history
        if expected[payment.id] != "approve" and (payment.refunded or payment.disputed)
    }


def test_backtest_is_independent_of_the_input_order():
    history, _, _ = _generated_history(seed=3)
    shuffled = list(history)
    random.Random(1).shuffle(shuffled)
    first = backtest(PROPOSED, history, with_defaults=False)
    second = backtest(PROPOSED, shuffled, with_defaults=False)
    assert msgspec.to_builtins(first) == msgspec.to_builtins(second)


def test_backtest_with_the_platform_defaults_catches_card_testing():
    bursts = [5, 2, 9]
    history = [
        _attack(burst, index, T0 + burst * 2 * DAY + index * 60)
        for burst, size in enumerate(bursts)
        for index in range(size)
    ]
    report = backtest(None, history)
    caught = sum(max(0, size - 3) for size in bursts)
    assert (report.payments, report.declined, report.approved) == (16, caught, 16 - caught)
    assert report.by_rule == {"platform.card_testing_ip": caught}


def test_card_testing_spread_over_more_than_an_hour_is_not_caught():
    # One new card every 25 minutes: never more than 3 distinct cards within an hour.
    history = [_attack(0, index, T0 + index * 1_500) for index in range(8)]
    assert backtest(None, history).declined == 0


def test_earlier_declines_count_towards_later_payments():
    document = parse_rules(
        {
            "rules": [
                {
                    "name": "card-declines",
                    "kind": "velocity",
                    "measure": "declines",
                    "per": "card",
                    "window": "1h",
                    "threshold": 1,
                    "action": "decline",
                }
            ]
        }
    )
    history = [
        HistoricPayment(id=f"pay_{index}", facts=facts(occurred_at=T0 + index * 60), declined=index < 3)
        for index in range(5)
    ]
    # Declines seen before each attempt: 0, 1, 2, 3, 3: the last three exceed 1.
    report = backtest(document, history, with_defaults=False)
    assert (report.declined, report.approved) == (3, 2)


def test_recorded_sanctions_matches_are_replayed():
    match = SanctionsMatch(name="n", matched="m", entry_id="SDN-1", list_name="l", score=97.0)
    document = parse_rules({"rules": [{"name": "ofac", "kind": "sanctions", "action": "decline"}]})
    history = [
        HistoricPayment(id="pay_hit", facts=facts(occurred_at=T0), sanctions=(match,), disputed=True),
        HistoricPayment(id="pay_clean", facts=facts(occurred_at=T0 + 1, card_fingerprint="fp_2")),
    ]
    report = backtest(document, history, with_defaults=False)
    assert (report.declined, report.declined_later_disputed, report.approved) == (1, 1, 1)
    assert report.by_rule == {"ofac": 1}


def test_the_report_encodes_with_the_contract_fields():
    report = json.loads(msgspec.json.encode(backtest(None, [])))
    for field in ("payments", "declined", "reviewed", "request_3ds", "approved", "by_rule"):
        assert field in report
    assert "declined_later_refunded" in report
    assert "declined_later_disputed" in report
    assert report["payments"] == 0
    assert BacktestReport().by_rule == {}
