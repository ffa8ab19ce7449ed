"""The decision engine: each rule kind at and past its edge, shadow mode, precedence, the contract."""

from __future__ import annotations

import json

import pytest

from fastpath import fx
from switch.risk.engine import FiredRule, encode_decision, evaluate
from switch.risk.rules import CompiledRules, effective_rules, parse_rules
from switch.risk.sca import ScaDecision
from switch.risk.types import BinInfo, SanctionsMatch, VelocityReading, WindowCounts

from .decision_helpers import facts, reading


def only(*rules: dict) -> CompiledRules:
    """The merchant's rules alone, without the platform defaults, to test one kind at a time."""
    document = parse_rules({"rules": list(rules)})
    return CompiledRules(rules=tuple(document.rules))


def velocity_rule(measure: str, per: str, window: str, threshold: int, **extra) -> dict:
    return {
        "name": "v",
        "kind": "velocity",
        "measure": measure,
        "per": per,
        "window": window,
        "threshold": threshold,
        "action": "decline",
        **extra,
    }


MATCH = SanctionsMatch(
    name="Ivan Petrovich Sidorov",
    matched="Ivan Sidorov",
    entry_id="SDN-1001",
    list_name="synthetic-sdn",
    score=94.0,
    programs=("TEST",),
)


@pytest.mark.parametrize(
    ("measure", "per", "window"),
    [
        ("count", "card", "1m"),
        ("count", "email", "24h"),
        ("amount", "customer", "1h"),
        ("distinct_cards", "ip", "1h"),
        ("distinct_cards", "device", "24h"),
        ("declines", "card", "1h"),
        ("declines", "ip", "1m"),
    ],
)
def test_velocity_fires_above_its_threshold_and_not_at_it(measure, per, window):
    rules = only(velocity_rule(measure, per, window, 3))
    at_edge = reading({(per, window): WindowCounts(**{measure: 3})})
    past_edge = reading({(per, window): WindowCounts(**{measure: 4})})
    assert evaluate(rules, facts(), at_edge).rules == []
    decision = evaluate(rules, facts(), past_edge)
    assert decision.decision == "decline"
    assert decision.decline_code == "risk_blocked"
    assert decision.rules == [FiredRule(name="v", action="decline", value=4, threshold=3, mode="enforce")]


def test_velocity_reads_only_its_own_key_and_window():
    rules = only(velocity_rule("count", "ip", "1m", 3))
    elsewhere = reading({("ip", "1h"): WindowCounts(count=50), ("card", "1m"): WindowCounts(count=50)})
    assert evaluate(rules, facts(), elsewhere).decision == "approve"


def test_velocity_of_a_key_the_payment_lacks_does_not_fire():
    rules = only(velocity_rule("count", "device", "1m", 0))
    reading_without_device = VelocityReading(counts={("ip", "1m"): WindowCounts(count=9)})
    assert evaluate(rules, facts(device_id=None), reading_without_device).rules == []


def test_rules_over_unavailable_velocity_do_not_fire_and_are_named_unevaluated():
    rules = only(
        velocity_rule("count", "ip", "1m", 0),
        {"name": "odd", "kind": "amount_anomaly", "factor": 2, "action": "review"},
        {"name": "big", "kind": "amount", "threshold": 100, "action": "review"},
    )
    decision = evaluate(rules, facts(), VelocityReading(available=False))
    assert [rule.name for rule in decision.rules] == ["big"]
    assert decision.decision == "review"
    assert decision.unevaluated == ("v", "odd")


def test_amount_fires_above_its_threshold_and_not_at_it():
    rules = only({"name": "big", "kind": "amount", "threshold": 50_000, "action": "review", "score": 25})
    assert evaluate(rules, facts(amount=50_000), reading()).decision == "approve"
    decision = evaluate(rules, facts(amount=50_001), reading())
    assert (decision.decision, decision.score) == ("review", 25)
    assert decision.rules[0].value == 50_001
    assert decision.rules[0].threshold == 50_000


def test_amount_with_a_currency_compares_the_converted_amount():
    rules = only({"name": "big", "kind": "amount", "threshold": 10_000, "currency": "EUR", "action": "review"})
    below = fx.convert(10_000, "EUR", "JPY").amount_out - 100  # a little under EUR 100 in yen
    above = fx.convert(10_000, "EUR", "JPY").amount_out + 100
    assert evaluate(rules, facts(amount=below, currency="JPY"), reading()).rules == []
    fired = evaluate(rules, facts(amount=above, currency="JPY"), reading()).rules
    assert [rule.name for rule in fired] == ["big"]
    assert fired[0].value == fx.convert(above, "JPY", "EUR").amount_out
    assert fired[0].value > 10_000


def test_amount_anomaly_fires_past_factor_times_the_earlier_mean():
    rules = only({"name": "odd", "kind": "amount_anomaly", "factor": 5, "min_history": 3, "action": "review"})
    # Three earlier payments of 1,000 each; mean 1,000, so the edge is 5,000.
    at_edge = reading({("customer", "24h"): WindowCounts(count=4, amount=3_000 + 5_000)})
    assert evaluate(rules, facts(amount=5_000), at_edge).rules == []
    past = reading({("customer", "24h"): WindowCounts(count=4, amount=3_000 + 5_001)})
    fired = evaluate(rules, facts(amount=5_001), past).rules
    assert fired == [FiredRule(name="odd", action="review", value=5_001, threshold=5_000)]


def test_amount_anomaly_needs_the_minimum_history():
    rules = only({"name": "odd", "kind": "amount_anomaly", "factor": 2, "min_history": 3, "action": "review"})
    two_before = reading({("customer", "24h"): WindowCounts(count=3, amount=200 + 100_000)})
    assert evaluate(rules, facts(amount=100_000), two_before).rules == []
    three_before = reading({("customer", "24h"): WindowCounts(count=4, amount=300 + 100_000)})
    assert evaluate(rules, facts(amount=100_000), three_before).decision == "review"


def test_geo_mismatch_fires_only_when_both_countries_are_known_and_differ():
    rules = only({"name": "geo", "kind": "geo_mismatch", "action": "review"})
    assert evaluate(rules, facts(ip_country="DE"), reading()).rules == []
    assert evaluate(rules, facts(ip_country=None), reading()).rules == []
    assert evaluate(rules, facts(bin=BinInfo(bin="424242")), reading()).rules == []
    assert evaluate(rules, facts(bin=None, ip_country="US"), reading()).rules == []
    fired = evaluate(rules, facts(ip_country="NG"), reading()).rules
    assert fired == [FiredRule(name="geo", action="review", value="NG", threshold="DE")]


def test_country_matches_card_and_ip_country_by_default():
    rules = only({"name": "hr", "kind": "country", "countries": ["KP", "IR"], "action": "decline"})
    assert evaluate(rules, facts(), reading()).decision == "approve"
    by_card = evaluate(rules, facts(bin=BinInfo(bin="400000", country="IR")), reading())
    assert by_card.rules == [FiredRule(name="hr", action="decline", value="IR", threshold=["IR", "KP"])]
    assert evaluate(rules, facts(ip_country="KP"), reading()).decision == "decline"
    assert evaluate(rules, facts(customer_country="KP"), reading()).decision == "approve"


def test_country_match_on_customer_only_ignores_card_and_ip():
    rules = only({"name": "c", "kind": "country", "countries": ["KP"], "match_on": ["customer"], "action": "review"})
    assert evaluate(rules, facts(ip_country="KP"), reading()).rules == []
    assert evaluate(rules, facts(customer_country="KP"), reading()).decision == "review"


def test_sanctions_decline_is_a_sanctions_hit_with_the_matched_entry():
    rules = only({"name": "ofac", "kind": "sanctions", "action": "decline"})
    assert evaluate(rules, facts(), reading(), []).rules == []
    decision = evaluate(rules, facts(), reading(), [MATCH])
    assert decision.decision == "decline"
    assert decision.decline_code == "sanctions_hit"
    assert decision.sanctions_match == MATCH
    assert decision.rules == [FiredRule(name="ofac", action="decline", value=94.0, threshold=None)]


def test_sanctions_review_opens_a_review_with_the_matched_entry():
    weaker = SanctionsMatch(name="x", matched="y", entry_id="SDN-2", list_name="l", score=88.0)
    decision = evaluate(effective_rules(None), facts(), reading(), [weaker, MATCH])
    assert decision.decision == "review"
    assert decision.decline_code is None
    assert decision.sanctions_match == MATCH  # the best match goes on the review
    assert [rule.name for rule in decision.rules] == ["platform.sanctions"]


def test_sanctions_min_score_is_an_inclusive_floor():
    rules = only({"name": "ofac", "kind": "sanctions", "min_score": 94.5, "action": "decline"})
    assert evaluate(rules, facts(), reading(), [MATCH]).rules == []
    rules = only({"name": "ofac", "kind": "sanctions", "min_score": 94.0, "action": "decline"})
    assert evaluate(rules, facts(), reading(), [MATCH]).decline_code == "sanctions_hit"


def test_a_sanctions_hit_wins_the_decline_code_over_other_declines():
    rules = only(
        velocity_rule("count", "ip", "1m", 0),
        {"name": "ofac", "kind": "sanctions", "action": "decline"},
    )
    assert evaluate(rules, facts(), reading(), [MATCH]).decline_code == "sanctions_hit"


def test_shadow_rules_are_listed_and_never_change_decision_or_score():
    rules = only(
        {
            "name": "shadow-decline",
            "kind": "amount",
            "threshold": 0,
            "action": "decline",
            "score": 90,
            "mode": "shadow",
        },
        {"name": "shadow-ofac", "kind": "sanctions", "action": "decline", "mode": "shadow"},
    )
    decision = evaluate(rules, facts(), reading(), [MATCH])
    assert decision.decision == "approve"
    assert decision.score == 0
    assert decision.decline_code is None
    assert decision.sanctions_match is None
    assert [(rule.name, rule.mode) for rule in decision.rules] == [
        ("shadow-decline", "shadow"),
        ("shadow-ofac", "shadow"),
    ]


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        (["allow"], "approve"),
        (["request_3ds", "allow"], "request_3ds"),
        (["request_3ds", "review"], "review"),
        (["review", "decline", "request_3ds"], "decline"),
    ],
)
def test_precedence_is_decline_review_request_3ds_approve(actions, expected):
    rules = only(
        *[
            {"name": f"r{index}", "kind": "amount", "threshold": 0, "action": action}
            for index, action in enumerate(actions)
        ]
    )
    decision = evaluate(rules, facts(), reading())
    assert decision.decision == expected
    assert [rule.action for rule in decision.rules] == actions


def test_score_is_the_sum_of_enforced_fired_rules_capped_at_100():
    rules = only(
        {"name": "a", "kind": "amount", "threshold": 0, "action": "review", "score": 30},
        {"name": "b", "kind": "geo_mismatch", "action": "review", "score": 25},
        {"name": "c", "kind": "amount", "threshold": 10**12, "action": "review", "score": 40},
    )
    assert evaluate(rules, facts(ip_country="FR"), reading()).score == 55
    rules = only(
        *[
            {"name": f"r{index}", "kind": "amount", "threshold": 0, "action": "review", "score": 45}
            for index in range(3)
        ]
    )
    assert evaluate(rules, facts(), reading()).score == 100


def test_sca_required_turns_an_approval_into_request_3ds_and_never_lowers_a_decline():
    required = ScaDecision(exemption=None, reason="above_exemption_limits", required=True)
    approve = evaluate(only(), facts(), reading(), [], required)
    assert approve.decision == "request_3ds"
    assert approve.sca_required
    decline = evaluate(only(velocity_rule("count", "ip", "1m", 0)), facts(), reading(), [], required)
    assert decline.decision == "decline"
    exempted = ScaDecision(exemption="low_value", reason="low_value", required=False)
    decision = evaluate(only(), facts(), reading(), [], exempted)
    assert decision.decision == "approve"
    assert not decision.sca_required


def test_extra_rules_from_aml_are_listed_and_open_a_review():
    flag = FiredRule(name="aml.large_amount", action="review", value=1_200_000, threshold=1_000_000)
    decision = evaluate(only(), facts(), reading(), [], None, extra=[flag])
    assert decision.decision == "review"
    assert decision.rules == [flag]


def test_the_decision_encodes_exactly_as_the_contract():
    exempted = ScaDecision(exemption="low_value", reason="low_value", required=False)
    rules = only({"name": "geo", "kind": "geo_mismatch", "action": "review", "score": 30})
    decision = evaluate(rules, facts(ip_country="FR"), reading(), [MATCH], exempted)
    assert json.loads(encode_decision(decision)) == {
        "decision": "review",
        "score": 30,
        "rules": [{"name": "geo", "action": "review", "value": "FR", "threshold": "DE", "mode": "enforce"}],
        "sca": {"exemption": "low_value", "reason": "low_value"},
    }
    without_sca = json.loads(encode_decision(evaluate(rules, facts(), reading())))
    assert without_sca["sca"] == {"exemption": None, "reason": "not_evaluated"}


def test_card_testing_default_declines_after_the_threshold():
    rules = effective_rules(None)
    three_cards = reading({("ip", "1h"): WindowCounts(count=3, distinct_cards=3)})
    assert evaluate(rules, facts(), three_cards).decision == "approve"
    four_cards = reading({("ip", "1h"): WindowCounts(count=4, distinct_cards=4)})
    decision = evaluate(rules, facts(), four_cards)
    assert decision.decision == "decline"
    assert decision.decline_code == "risk_blocked"
    assert [(rule.name, rule.value, rule.threshold) for rule in decision.rules] == [("platform.card_testing_ip", 4, 3)]


def test_a_disabled_default_no_longer_fires():
    disabled = effective_rules(parse_rules({"rules": [{"name": "platform.geo_mismatch", "action": "allow"}]}))
    assert evaluate(effective_rules(None), facts(ip_country="FR"), reading()).decision == "review"
    assert evaluate(disabled, facts(ip_country="FR"), reading()).rules == []


def test_compiled_rules_are_reused_across_evaluations():
    rules = only({"name": "big", "kind": "amount", "threshold": 10, "action": "review"})
    first = evaluate(rules, facts(amount=11), reading())
    second = evaluate(rules, facts(amount=9), reading())
    assert (first.decision, second.decision) == ("review", "approve")
