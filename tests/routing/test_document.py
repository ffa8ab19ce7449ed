"""Routing documents: matching table, validation paths, encoding, rollout buckets."""

import collections
import json

import pytest

from switch.routing.document import (
    CASCADABLE_SOFT_CODES,
    CompiledRouting,
    DocumentError,
    PaymentFacts,
    implied_default,
    parse_document,
    rollout_bucket,
    to_builtins,
)

ACCOUNTS = {"adyen-eu", "stripe", "sandbox", "xendit", "midtrans"}


def facts(**overrides):
    base = {"amount": 1000, "currency": "EUR", "payment_method": "card"}
    base.update(overrides)
    return PaymentFacts(**base)


def document(*rules, default=None, **sections):
    raw = {"rules": list(rules), "default": default or {"strategy": "priority", "candidates": ["stripe", "sandbox"]}}
    raw.update(sections)
    return raw


def rule(name, when, strategy="priority", candidates=("adyen-eu",), **extra):
    return {"name": name, "when": when, "strategy": strategy, "candidates": list(candidates), **extra}


# (when, matching facts, non-matching facts)
MATCH_TABLE = [
    ({"currency": ["EUR", "USD"]}, {"currency": "USD"}, {"currency": "JPY"}),
    ({"payment_method": ["gopay"]}, {"payment_method": "gopay"}, {"payment_method": "card"}),
    ({"card_country": ["DE", "FR"]}, {"card_country": "FR"}, {"card_country": "US"}),
    ({"card_country": ["DE"]}, {"card_country": "DE"}, {"card_country": None}),
    ({"ip_country": ["NL"]}, {"ip_country": "NL"}, {"ip_country": "BE"}),
    ({"amount": {"gte": 100, "lt": 500}}, {"amount": 100}, {"amount": 500}),
    ({"amount": {"gte": 100, "lt": 500}}, {"amount": 499}, {"amount": 99}),
    ({"amount": {"lt": 500}}, {"amount": 1}, {"amount": 10_000}),
    ({"amount": {"gte": 500}}, {"amount": 500}, {"amount": 499}),
    ({"card_brand": ["visa"]}, {"card_brand": "visa"}, {"card_brand": "mastercard"}),
    ({"bin_prefix": ["4", "51"]}, {"bin": "511111"}, {"bin": "521111"}),
    ({"bin_prefix": ["4"]}, {"bin": "424242"}, {"bin": None}),
    ({"funding": ["debit", "prepaid"]}, {"funding": "prepaid"}, {"funding": "credit"}),
    ({"customer_segment": ["vip"]}, {"customer_segment": "vip"}, {"customer_segment": "new"}),
    ({"metadata": {"channel": ["web"]}}, {"metadata": {"channel": "web", "x": "y"}}, {"metadata": {"channel": "app"}}),
    ({"metadata": {"channel": ["web"]}}, {"metadata": {"channel": "web"}}, {"metadata": {}}),
    (
        {"currency": ["EUR"], "card_country": ["DE"], "amount": {"lt": 5000}},
        {"card_country": "DE", "amount": 4999},
        {"card_country": "DE", "amount": 5000},
    ),
]


@pytest.mark.parametrize(("when", "hit", "miss"), MATCH_TABLE)
def test_each_when_field_matches_and_rejects(when, hit, miss):
    compiled = CompiledRouting(parse_document(document(rule("r", when)), ACCOUNTS))
    assert compiled.match(facts(**hit)).rule == "r"
    missed = compiled.match(facts(**miss))
    assert missed.rule is None
    assert missed.target.candidates == ("stripe", "sandbox")


def test_first_matching_rule_wins():
    compiled = CompiledRouting(
        parse_document(
            document(
                rule("jpy", {"currency": ["JPY"]}, candidates=["stripe"]),
                rule("eu-cards", {"currency": ["EUR"], "payment_method": ["card"]}, candidates=["adyen-eu"]),
                rule("all-eur", {"currency": ["EUR"]}, candidates=["sandbox"]),
            ),
            ACCOUNTS,
        )
    )
    assert compiled.match(facts()).rule == "eu-cards"
    assert compiled.match(facts()).target.candidates == ("adyen-eu",)
    assert compiled.match(facts(payment_method="sepa_debit")).rule == "all-eur"
    assert compiled.match(facts(currency="JPY")).rule == "jpy"
    assert compiled.match(facts(currency="USD")).rule is None


def test_a_rule_without_conditions_matches_everything_after_earlier_rules():
    compiled = CompiledRouting(
        parse_document(document(rule("usd", {"currency": ["USD"]}), rule("rest", {}, candidates=["stripe"])), ACCOUNTS)
    )
    assert compiled.match(facts(currency="USD")).rule == "usd"
    assert compiled.match(facts(currency="JPY")).rule == "rest"


def test_residual_conditions_fall_through_to_later_rules():
    compiled = CompiledRouting(
        parse_document(
            document(
                rule("small", {"currency": ["EUR"], "amount": {"lt": 100}}),
                rule("bin", {"currency": ["EUR"], "bin_prefix": ["4"]}, candidates=["stripe"]),
            ),
            ACCOUNTS,
        )
    )
    assert compiled.match(facts(amount=50)).rule == "small"
    assert compiled.match(facts(amount=5000, bin="424242")).rule == "bin"
    assert compiled.match(facts(amount=5000, bin="5555")).rule is None


def test_weighted_target_carries_weights_in_candidate_order():
    raw = document(
        rule(
            "split", {}, strategy="weighted", candidates=["stripe", "adyen-eu"], weights={"adyen-eu": 70, "stripe": 30}
        )
    )
    match = CompiledRouting(parse_document(raw, ACCOUNTS)).match(facts())
    assert match.target.strategy == "weighted"
    assert match.target.weights == (30, 70)


def test_defaults_are_filled_in():
    parsed = parse_document(document(), ACCOUNTS)
    assert parsed.cascade.max_attempts == 2
    assert parsed.cascade.deadline_ms == 20_000
    assert parsed.cascade.soft_decline_codes == ()
    assert parsed.reliable.window_s == 300
    assert parsed.reliable.exploration_percent == 5
    assert parsed.reliable.min_samples == 20
    assert parsed.rollout.percent == 100
    assert parsed.rollout.sticky == "customer"


def test_design_example_round_trips_through_json():
    raw = {
        "rules": [
            {
                "name": "eu-cards",
                "when": {
                    "currency": ["EUR"],
                    "payment_method": ["card"],
                    "card_country": ["DE", "FR"],
                    "amount": {"gte": 0, "lt": 500000},
                    "card_brand": ["visa"],
                    "bin_prefix": ["4"],
                },
                "strategy": "cheapest",
                "candidates": ["adyen-eu", "stripe"],
            }
        ],
        "default": {"strategy": "priority", "candidates": ["stripe", "sandbox"]},
        "cascade": {"max_attempts": 2, "soft_decline_codes": ["do_not_honor"], "deadline_ms": 20000},
        "rollout": {"percent": 100},
    }
    parsed = parse_document(json.dumps(raw).encode(), ACCOUNTS)
    built = to_builtins(parsed)
    assert built["rules"] == raw["rules"]
    assert built["cascade"] == raw["cascade"]
    assert built["default"] == raw["default"]
    assert parse_document(built, ACCOUNTS) == parsed
    assert parsed.cascade.policy().soft_decline_codes == frozenset({"do_not_honor"})


def test_implied_default_is_priority_over_the_merchants_accounts():
    implied = implied_default(["stripe", "sandbox"])
    compiled = CompiledRouting(implied)
    match = compiled.match(facts())
    assert match.rule is None
    assert match.target.strategy == "priority"
    assert match.target.candidates == ("stripe", "sandbox")


def _long(count):
    return [rule(f"r{index}", {}) for index in range(count)]


INVALID = [
    (document(rule("r", {}, strategy="fastest")), "rules.0.strategy"),
    (document(rule("r", {}), rule("r2", {}, strategy=7)), "rules.1.strategy"),
    (document(rule("r", {"amount": {"gte": 500, "lt": 100}})), "rules.0.when.amount.lt"),
    (document(rule("r", {}), rule("s", {"amount": {"gte": 5, "lt": 5}})), "rules.1.when.amount.lt"),
    (document(rule("r", {"amount": {"gte": -1}})), "rules.0.when.amount.gte"),
    (document(rule("r", {"amount": {}})), "rules.0.when.amount"),
    (document(default={"strategy": "priority", "candidates": ["stripe", "sandbox", "nope"]}), "default.candidates.2"),
    (document(default={"strategy": "priority", "candidates": ["stripe", "stripe"]}), "default.candidates.1"),
    (document(default={"strategy": "priority", "candidates": []}), "default.candidates"),
    (document(default={"strategy": "cheap", "candidates": ["stripe"]}), "default.strategy"),
    ({"rules": []}, "default"),
    (document(cascade={"max_attempts": 6}), "cascade.max_attempts"),
    (document(cascade={"max_attempts": 0}), "cascade.max_attempts"),
    (document(cascade={"deadline_ms": 99}), "cascade.deadline_ms"),
    (document(cascade={"deadline_ms": 60_001}), "cascade.deadline_ms"),
    (document(cascade={"soft_decline_codes": ["do_not_honor", "stolen_card"]}), "cascade.soft_decline_codes.1"),
    (document(cascade={"soft_decline_codes": ["insufficient_funds"]}), "cascade.soft_decline_codes.0"),
    (document(cascade={"soft_decline_codes": ["made_up"]}), "cascade.soft_decline_codes.0"),
    (document(rollout={"percent": 0}), "rollout.percent"),
    (document(rollout={"percent": 101}), "rollout.percent"),
    (document(rollout={"sticky": "device"}), "rollout.sticky"),
    (document(reliable={"exploration_percent": 51}), "reliable.exploration_percent"),
    (document(reliable={"window_s": 5}), "reliable.window_s"),
    (document(reliable={"breaker_failures": 0}), "reliable.breaker_failures"),
    (document(reliable={"extra": 1}), "reliable.extra"),
    (document(rule("r", {"currency": ["EUR", "EURO"]})), "rules.0.when.currency.1"),
    (document(rule("r", {"currency": ["XAU"]})), "rules.0.when.currency.0"),
    (document(rule("r", {"card_country": ["de"]})), "rules.0.when.card_country.0"),
    (document(rule("r", {"ip_country": ["DEU"]})), "rules.0.when.ip_country.0"),
    (document(rule("r", {"currency": []})), "rules.0.when.currency"),
    (document(rule("r", {"bin_prefix": ["4x"]})), "rules.0.when.bin_prefix.0"),
    (document(rule("r", {"bin_prefix": ["123456789"]})), "rules.0.when.bin_prefix.0"),
    (document(rule("r", {"funding": ["charge"]})), "rules.0.when.funding.0"),
    (document(rule("r", {"card_brand": ["Visa"]})), "rules.0.when.card_brand.0"),
    (document(rule("r", {"colour": ["red"]})), "rules.0.when.colour"),
    (document(rule("r", {"metadata": {"channel": "web"}})), "rules.0.when.metadata"),
    (document(rule("r", {"metadata": {"bad key": ["x"]}})), "rules.0.when.metadata"),
    (document(rule("Bad Name", {})), "rules.0.name"),
    (document(rule("r", {}), rule("r", {})), "rules.1.name"),
    (document({"when": {}, "strategy": "priority", "candidates": ["stripe"]}), "rules.0.name"),
    (document(rule("r", {}, candidates=["stripe", "ghost"])), "rules.0.candidates.1"),
    (document(rule("r", {}, candidates=["stripe"] * 2)), "rules.0.candidates.1"),
    (document(rule("r", {}, candidates=[f"a{i}" for i in range(21)])), "rules.0.candidates"),
    (document(*_long(101)), "rules"),
    (document(rule("r", {}, weights={"adyen-eu": 1})), "rules.0.weights"),
    (document(rule("r", {}, strategy="weighted")), "rules.0.weights"),
    (
        document(rule("r", {}, strategy="weighted", candidates=["stripe", "adyen-eu"], weights={"stripe": 1})),
        "rules.0.weights",
    ),
    (
        document(rule("r", {}, strategy="weighted", candidates=["stripe"], weights={"stripe": 1, "sandbox": 1})),
        "rules.0.weights.sandbox",
    ),
    (
        document(rule("r", {}, strategy="weighted", candidates=["stripe"], weights={"stripe": 0})),
        "rules.0.weights.stripe",
    ),
    (document(rule("r", {}, unknown=True)), "rules.0.unknown"),
    ({**document(), "version": 3}, "version"),
]


@pytest.mark.parametrize(("raw", "param"), INVALID, ids=[param for _, param in INVALID])
def test_invalid_document_names_the_offending_field(raw, param):
    with pytest.raises(DocumentError) as raised:
        parse_document(raw, ACCOUNTS)
    assert raised.value.param == param
    assert raised.value.message
    # The same from the JSON body.
    with pytest.raises(DocumentError) as from_json:
        parse_document(json.dumps(raw).encode(), ACCOUNTS)
    assert from_json.value.param == param


def test_hard_decline_code_error_says_why():
    with pytest.raises(DocumentError) as raised:
        parse_document(document(cascade={"soft_decline_codes": ["stolen_card"]}), ACCOUNTS)
    assert "stolen_card" in raised.value.message
    assert "never approve" in raised.value.message


@pytest.mark.parametrize("code", sorted(CASCADABLE_SOFT_CODES))
def test_every_cascadable_code_is_accepted(code):
    parsed = parse_document(document(cascade={"soft_decline_codes": [code]}), ACCOUNTS)
    assert parsed.cascade.soft_decline_codes == (code,)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"null", b'"text"'])
def test_malformed_body_is_a_document_error(body):
    with pytest.raises(DocumentError) as raised:
        parse_document(body, ACCOUNTS)
    assert raised.value.param is None


def test_rollout_bucket_is_stable_and_in_range():
    assert rollout_bucket("cus_42", 3) == rollout_bucket("cus_42", 3)
    assert all(0 <= rollout_bucket(f"cus_{index}", 7) < 100 for index in range(1000))
    # Known value: the same in every process (blake2b, never hash()).
    assert (
        rollout_bucket("ada@example.com", 2)
        == int.from_bytes(__import__("hashlib").blake2b(b"2:ada@example.com", digest_size=8).digest(), "big") % 100
    )


def test_rollout_buckets_are_roughly_uniform():
    counts = collections.Counter(rollout_bucket(f"shopper-{index}", 5) // 10 for index in range(20_000))
    # Ten deciles of 2,000 expected each; a fair hash stays well within 15 %.
    assert set(counts) == set(range(10))
    assert all(1700 <= count <= 2300 for count in counts.values())
    canary = sum(1 for index in range(20_000) if rollout_bucket(f"shopper-{index}", 5) < 10)
    assert 1700 <= canary <= 2300


def test_rollout_bucket_changes_with_the_version():
    moved = sum(1 for index in range(1000) if rollout_bucket(f"s{index}", 1) != rollout_bucket(f"s{index}", 2))
    assert moved > 900
