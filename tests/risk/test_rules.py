"""The rule document: validation with a precise param, JSON round trip, platform defaults."""

from __future__ import annotations

import json

import pytest

from switch.risk.rules import (
    DEFAULT_NAMES,
    PLATFORM_DEFAULTS,
    AmountRule,
    DisabledDefault,
    DocumentError,
    VelocityRule,
    effective_rules,
    encode_rules,
    parse_rules,
    rules_to_builtins,
)

VELOCITY = {
    "name": "ip-cards",
    "kind": "velocity",
    "measure": "distinct_cards",
    "per": "ip",
    "window": "1h",
    "threshold": 3,
    "action": "decline",
    "score": 80,
}


def _with(rule: dict, **changes) -> dict:
    changed = {**rule, **changes}
    return {"rules": [changed]}


def _without(rule: dict, field: str) -> dict:
    return {"rules": [{key: value for key, value in rule.items() if key != field}]}


EVERY_KIND = [
    VELOCITY,
    {"name": "big", "kind": "amount", "threshold": 500_000, "currency": "EUR", "action": "review"},
    {"name": "odd", "kind": "amount_anomaly", "factor": 5, "min_history": 2, "action": "review", "mode": "shadow"},
    {"name": "geo", "kind": "geo_mismatch", "action": "request_3ds", "score": 20},
    {"name": "hr", "kind": "country", "countries": ["RU", "BY"], "match_on": ["ip"], "action": "decline"},
    {"name": "ofac", "kind": "sanctions", "min_score": 92.5, "action": "decline"},
]


def test_every_kind_parses_and_round_trips_through_json():
    document = parse_rules(json.dumps({"rules": EVERY_KIND}).encode())
    assert [rule.name for rule in document.rules] == ["ip-cards", "big", "odd", "geo", "hr", "ofac"]
    assert parse_rules(encode_rules(document)) == document
    assert parse_rules(rules_to_builtins(document)) == document
    encoded = json.loads(encode_rules(document))
    assert encoded["rules"][0]["kind"] == "velocity"
    assert encoded["rules"][3]["mode"] == "enforce"  # defaults are written out explicitly


def test_score_and_mode_default_to_zero_and_enforce():
    rule = parse_rules({"rules": [{"name": "g", "kind": "geo_mismatch", "action": "review"}]}).rules[0]
    assert (rule.score, rule.mode) == (0, "enforce")


@pytest.mark.parametrize(
    ("document", "param"),
    [
        (_with(VELOCITY, threshold=-1), "rules.0.threshold"),
        (_with(VELOCITY, threshold="3"), "rules.0.threshold"),
        (_without(VELOCITY, "threshold"), "rules.0.threshold"),
        (_with(VELOCITY, window="2m"), "rules.0.window"),
        (_with(VELOCITY, per="merchant"), "rules.0.per"),
        (_with(VELOCITY, measure="sum"), "rules.0.measure"),
        (_with(VELOCITY, per="card"), "rules.0.per"),  # distinct cards per card is meaningless
        (_with(VELOCITY, action="block"), "rules.0.action"),
        (_with(VELOCITY, score=101), "rules.0.score"),
        (_with(VELOCITY, score=-1), "rules.0.score"),
        (_with(VELOCITY, mode="dry_run"), "rules.0.mode"),
        (_with(VELOCITY, name=""), "rules.0.name"),
        (_with(VELOCITY, name="has space"), "rules.0.name"),
        (_without(VELOCITY, "name"), "rules.0.name"),
        (_without(VELOCITY, "action"), "rules.0.action"),
        (_with(VELOCITY, strategy="x"), "rules.0.strategy"),
        (_with(VELOCITY, kind="ml_score"), "rules.0.kind"),
        (_without(VELOCITY, "kind"), "rules.0.kind"),
        (_with(EVERY_KIND[1], currency="EURO"), "rules.0.currency"),
        (_with(EVERY_KIND[2], factor=0), "rules.0.factor"),
        (_with(EVERY_KIND[2], per="ip"), "rules.0.per"),
        (_with(EVERY_KIND[2], min_history=0), "rules.0.min_history"),
        (_with(EVERY_KIND[3], threshold=1), "rules.0.threshold"),
        (_with(EVERY_KIND[4], countries=[]), "rules.0.countries"),
        (_with(EVERY_KIND[4], countries=["DE", "ru"]), "rules.0.countries.1"),
        (_with(EVERY_KIND[4], countries=["DE", 7]), "rules.0.countries.1"),
        (_with(EVERY_KIND[4], match_on=["billing"]), "rules.0.match_on.0"),
        (_with(EVERY_KIND[4], match_on=[]), "rules.0.match_on"),
        (_with(EVERY_KIND[5], action="request_3ds"), "rules.0.action"),
        (_with(EVERY_KIND[5], min_score=101), "rules.0.min_score"),
        ({"rules": [VELOCITY, {**VELOCITY}]}, "rules.1.name"),
        ({"rules": [VELOCITY, "geo"]}, "rules.1"),
        ({"rules": {"a": VELOCITY}}, "rules"),
        ({}, "rules"),
        ({"rules": [], "version": 3}, "version"),
        ({"rules": [{"name": "not-a-default", "action": "allow"}]}, "rules.0.kind"),
        ({"rules": [{"name": "platform.geo_mismatch", "action": "allow", "why": "x"}]}, "rules.0.why"),
    ],
)
def test_invalid_document_names_the_offending_field(document, param):
    with pytest.raises(DocumentError) as caught:
        parse_rules(document)
    assert caught.value.param == param
    assert caught.value.message


def test_more_than_the_maximum_rules_is_rejected():
    rules = [{**VELOCITY, "name": f"r{index}"} for index in range(201)]
    with pytest.raises(DocumentError) as caught:
        parse_rules({"rules": rules})
    assert caught.value.param == "rules"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"rules"'])
def test_a_body_that_is_not_an_object_is_rejected_without_a_param(body):
    with pytest.raises(DocumentError) as caught:
        parse_rules(body)
    assert caught.value.param is None


def test_defaults_apply_beneath_a_merchant_document():
    effective = effective_rules(parse_rules({"rules": [EVERY_KIND[1]]}))
    names = [rule.name for rule in effective.rules]
    assert names == [rule.name for rule in PLATFORM_DEFAULTS] + ["big"]
    assert effective.disabled == ()
    assert [rule.name for rule in effective_rules(None).rules] == [rule.name for rule in PLATFORM_DEFAULTS]


def test_defaults_follow_the_reference_thresholds():
    defaults = {rule.name: rule for rule in PLATFORM_DEFAULTS}
    card_testing = defaults["platform.card_testing_ip"]
    assert isinstance(card_testing, VelocityRule)
    assert (card_testing.measure, card_testing.per, card_testing.window) == ("distinct_cards", "ip", "1h")
    assert (card_testing.threshold, card_testing.action) == (3, "decline")
    # "declines per card >= 3": fires above 2.
    assert defaults["platform.card_declines_1h"].threshold == 2
    assert defaults["platform.geo_mismatch"].action == "review"
    assert len(DEFAULT_NAMES) == len(PLATFORM_DEFAULTS)


def test_a_default_named_with_action_allow_is_disabled():
    document = parse_rules({"rules": [{"name": "platform.geo_mismatch", "action": "allow"}]})
    assert document.rules == [DisabledDefault(name="platform.geo_mismatch")]
    effective = effective_rules(document)
    assert "platform.geo_mismatch" not in [rule.name for rule in effective.rules]
    assert effective.disabled == ("platform.geo_mismatch",)
    assert len(effective.rules) == len(PLATFORM_DEFAULTS) - 1
    assert parse_rules(encode_rules(document)) == document


def test_a_merchant_rule_named_like_a_default_replaces_it():
    own = {"name": "platform.card_testing_ip", **{k: v for k, v in VELOCITY.items() if k != "name"}}
    own["threshold"] = 10
    effective = effective_rules(parse_rules({"rules": [own]}))
    replaced = [rule for rule in effective.rules if rule.name == "platform.card_testing_ip"]
    assert len(replaced) == 1
    assert replaced[0].threshold == 10
    assert effective.rules[-1] is replaced[0]


def test_amount_rule_without_currency_keeps_none():
    rule = parse_rules({"rules": [{"name": "a", "kind": "amount", "threshold": 5, "action": "review"}]}).rules[0]
    assert isinstance(rule, AmountRule)
    assert rule.currency is None
