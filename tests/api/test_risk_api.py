"""``/v1/risk/rules``: validation with its param, versions, rollback, isolation, the compiled head, backtest."""

from __future__ import annotations

import time
from typing import Any

import pytest

from switch.risk.rules import PLATFORM_DEFAULTS, VelocityRule
from tests.api.helpers import card, error_of, fresh_card_number

DEFAULT_NAMES = [rule.name for rule in PLATFORM_DEFAULTS]
VELOCITY = {
    "name": "ip_burst",
    "kind": "velocity",
    "measure": "count",
    "per": "ip",
    "window": "1h",
    "threshold": 3,
    "action": "decline",
    "score": 60,
}


async def _put(client, merchant, document: Any):
    return await client.put("/v1/risk/rules", json=document, headers=merchant.headers)


async def test_a_merchant_without_rules_gets_version_0_and_every_platform_default(client, merchant) -> None:
    response = await client.get("/v1/risk/rules", headers=merchant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "risk_rules"
    assert body["version"] == 0
    assert body["rules"] == []
    assert [rule["name"] for rule in body["defaults"]] == DEFAULT_NAMES
    assert body["defaults"][0]["kind"] == "velocity"


async def test_put_answers_the_version_with_every_parameter_and_the_defaults_left_beneath(client, merchant) -> None:
    document = {
        "rules": [
            VELOCITY,
            # Replaces the platform default of the same name; the next one is disabled.
            {"name": "platform.geo_mismatch", "kind": "geo_mismatch", "action": "decline", "score": 50},
            {"name": "platform.amount_anomaly", "action": "allow"},
        ]
    }
    response = await _put(client, merchant, document)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "risk_rules" and body["version"] == 1
    assert body["rules"][0] == {**VELOCITY, "mode": "enforce"}
    assert body["rules"][2] == {"name": "platform.amount_anomaly", "action": "allow"}
    remaining = [rule["name"] for rule in body["defaults"]]
    assert remaining == [
        name for name in DEFAULT_NAMES if name not in ("platform.geo_mismatch", "platform.amount_anomaly")
    ]
    shown = (await client.get("/v1/risk/rules", headers=merchant.headers)).json()
    assert shown["version"] == 1
    assert shown["rules"] == body["rules"]
    assert shown["defaults"] == body["defaults"]


async def test_the_compiled_head_is_the_rules_in_force_for_the_authorization_path(app, client, merchant) -> None:
    assert (await app.state.risk_documents.head(merchant.id)).active is None
    document = {"rules": [VELOCITY, {"name": "platform.card_testing_ip", "action": "allow"}]}
    assert (await _put(client, merchant, document)).status_code == 200
    head = await app.state.risk_documents.head(merchant.id)
    assert head.active_version == 1
    names = [rule.name for rule in head.active.rules]
    assert "platform.card_testing_ip" not in names
    assert head.active.disabled == ("platform.card_testing_ip",)
    assert names[-1] == "ip_burst" and isinstance(head.active.rules[-1], VelocityRule)
    assert head.active.rules[-1].threshold == 3


def _rule(**changes: Any) -> dict[str, Any]:
    rule = dict(VELOCITY)
    rule.update(changes)
    return {k: v for k, v in rule.items() if v is not None}


@pytest.mark.parametrize(
    ("document", "param"),
    [
        ([], None),
        ({"rules": [], "colour": "red"}, "colour"),
        ({}, "rules"),
        ({"rules": {}}, "rules"),
        ({"rules": [_rule(name=f"r{index}") for index in range(201)]}, "rules"),
        ({"rules": [5]}, "rules.0"),
        ({"rules": [{"name": "x", "action": "decline"}]}, "rules.0.kind"),
        ({"rules": [_rule(kind="magic")]}, "rules.0.kind"),
        ({"rules": [_rule(measure="speed")]}, "rules.0.measure"),
        ({"rules": [_rule(per="planet")]}, "rules.0.per"),
        ({"rules": [_rule(window="2h")]}, "rules.0.window"),
        ({"rules": [{k: v for k, v in VELOCITY.items() if k != "threshold"}]}, "rules.0.threshold"),
        ({"rules": [_rule(threshold=-1)]}, "rules.0.threshold"),
        ({"rules": [_rule(threshold="3")]}, "rules.0.threshold"),
        ({"rules": [_rule(colour="red")]}, "rules.0.colour"),
        ({"rules": [_rule(action="block")]}, "rules.0.action"),
        ({"rules": [_rule(score=101)]}, "rules.0.score"),
        ({"rules": [_rule(mode="dry_run")]}, "rules.0.mode"),
        ({"rules": [_rule(name="has space")]}, "rules.0.name"),
        ({"rules": [_rule(measure="distinct_cards", per="card")]}, "rules.0.per"),
        (
            {"rules": [{"name": "a", "kind": "amount", "threshold": 10, "currency": "XXQ", "action": "review"}]},
            "rules.0.currency",
        ),
        ({"rules": [{"name": "c", "kind": "country", "countries": [], "action": "decline"}]}, "rules.0.countries"),
        (
            {"rules": [{"name": "c", "kind": "country", "countries": ["DE", "fr"], "action": "decline"}]},
            "rules.0.countries.1",
        ),
        (
            {"rules": [{"name": "c", "kind": "country", "countries": ["DE"], "match_on": [], "action": "decline"}]},
            "rules.0.match_on",
        ),
        (
            {
                "rules": [
                    {"name": "c", "kind": "country", "countries": ["DE"], "match_on": ["moon"], "action": "decline"}
                ]
            },
            "rules.0.match_on.0",
        ),
        ({"rules": [{"name": "s", "kind": "sanctions", "action": "request_3ds"}]}, "rules.0.action"),
        ({"rules": [{"name": "s", "kind": "sanctions", "min_score": 101, "action": "review"}]}, "rules.0.min_score"),
        ({"rules": [{"name": "a", "kind": "amount_anomaly", "factor": 0, "action": "review"}]}, "rules.0.factor"),
        ({"rules": [VELOCITY, VELOCITY]}, "rules.1.name"),
        ({"rules": [VELOCITY, {"name": "platform.geo_mismatch", "action": "allow", "why": "noisy"}]}, "rules.1.why"),
        ({"rules": [{"name": "not_a_default", "action": "allow"}]}, "rules.0.kind"),
    ],
)
async def test_an_invalid_document_is_a_400_naming_the_field_and_stores_nothing(
    client, merchant, document, param
) -> None:
    response = await _put(client, merchant, document)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "parameter_invalid"
    assert error["param"] == param, error
    assert (await client.get("/v1/risk/rules", headers=merchant.headers)).json()["version"] == 0


async def test_malformed_json_an_empty_body_and_an_oversized_one_are_400(client, merchant) -> None:
    bad = await client.put("/v1/risk/rules", content=b'{"rules": [', headers=merchant.headers)
    assert bad.status_code == 400 and error_of(bad)["param"] is None
    empty = await client.put("/v1/risk/rules", content=b"  ", headers=merchant.headers)
    assert empty.status_code == 400 and error_of(empty)["code"] == "parameter_missing"
    huge = await client.put("/v1/risk/rules", content=b'{"rules": [' + b" " * 300_000 + b"]}", headers=merchant.headers)
    assert huge.status_code in (400, 413)
    assert (await client.get("/v1/risk/rules", headers=merchant.headers)).json()["version"] == 0


async def test_versions_are_kept_newest_first_and_rollback_activates_an_earlier_one(app, client, merchant) -> None:
    assert (await _put(client, merchant, {"rules": [VELOCITY]})).json()["version"] == 1
    assert (await _put(client, merchant, {"rules": [_rule(threshold=9)]})).json()["version"] == 2
    versions = (await client.get("/v1/risk/rules/versions", headers=merchant.headers)).json()
    assert versions["object"] == "list" and versions["has_more"] is False
    assert [(v["version"], v["active"]) for v in versions["data"]] == [(2, True), (1, False)]
    assert versions["data"][0]["rules"][0]["threshold"] == 9
    assert all(isinstance(v["created"], int) for v in versions["data"])

    rolled = await client.post("/v1/risk/rules/rollback", json={"version": 1}, headers=merchant.headers)
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["version"] == 1 and rolled.json()["rules"][0]["threshold"] == 3
    shown = (await client.get("/v1/risk/rules", headers=merchant.headers)).json()
    assert shown["version"] == 1 and shown["rules"][0]["threshold"] == 3
    head = await app.state.risk_documents.head(merchant.id)
    assert head.active_version == 1 and head.active.rules[-1].threshold == 3
    versions = (await client.get("/v1/risk/rules/versions", headers=merchant.headers)).json()["data"]
    assert [(v["version"], v["active"]) for v in versions] == [(2, False), (1, True)], "a rollback creates no version"


async def test_rollback_to_an_unknown_version_is_a_404_and_bad_bodies_are_400(client, merchant) -> None:
    missing = await client.post("/v1/risk/rules/rollback", json={"version": 4}, headers=merchant.headers)
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "resource_missing" and error_of(missing)["param"] == "version"
    for body in ({"version": "one"}, {"version": 0}, {}, {"version": 1, "force": True}):
        invalid = await client.post("/v1/risk/rules/rollback", json=body, headers=merchant.headers)
        assert invalid.status_code == 400, body
        assert error_of(invalid)["param"] in ("version", "force"), body


async def test_rule_documents_are_per_merchant(client, merchant, other_merchant) -> None:
    await _put(client, merchant, {"rules": [VELOCITY]})
    other = (await client.get("/v1/risk/rules", headers=other_merchant.headers)).json()
    assert other["version"] == 0 and other["rules"] == []
    assert (await client.get("/v1/risk/rules/versions", headers=other_merchant.headers)).json()["data"] == []
    stolen = await client.post("/v1/risk/rules/rollback", json={"version": 1}, headers=other_merchant.headers)
    assert stolen.status_code == 404


async def test_risk_rules_need_a_key(client) -> None:
    for method, path in (("GET", "/v1/risk/rules"), ("PUT", "/v1/risk/rules"), ("POST", "/v1/risk/rules/backtest")):
        response = await client.request(method, path, json={"rules": []})
        assert response.status_code == 401, path


# ---------------------------------------------------------------------------------------------- backtest


async def _pay(client, merchant, number: str, amount: int) -> dict[str, Any]:
    body = {"amount": amount, "currency": "EUR", "payment_method": card(number)}
    response = await client.post("/v1/payments", json=body, headers=merchant.headers)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "captured", response.json()
    return response.json()


PROPOSED = [
    {
        "name": "repeat_card",
        "kind": "velocity",
        "measure": "count",
        "per": "card",
        "window": "1h",
        "threshold": 1,
        "action": "decline",
        "score": 50,
    },
    {"name": "big", "kind": "amount", "threshold": 5000, "action": "review", "score": 20},
    {"name": "everything", "kind": "amount", "threshold": 0, "action": "decline", "mode": "shadow"},
]


async def test_backtest_counts_what_a_proposed_document_would_have_done_to_the_history(
    client, merchant, other_merchant
) -> None:
    start = int(time.time()) - 1
    first, second, third = fresh_card_number(), fresh_card_number(), fresh_card_number()
    # Card one three times, card two twice (the second large), card three once (large).
    a1 = await _pay(client, merchant, first, 1000)
    a2 = await _pay(client, merchant, first, 1100)
    await _pay(client, merchant, first, 1200)
    await _pay(client, merchant, second, 1300)
    await _pay(client, merchant, second, 9000)
    c1 = await _pay(client, merchant, third, 9500)
    # Later refunds: one payment the rules would have declined, one they would have reviewed.
    for payment in (a2, c1):
        refund = await client.post(f"/v1/payments/{payment['id']}/refunds", json={}, headers=merchant.headers)
        assert refund.status_code == 201, refund.text
    end = int(time.time()) + 2

    response = await client.post(
        "/v1/risk/rules/backtest", json={"rules": PROPOSED, "from": start, "to": end}, headers=merchant.headers
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["object"] == "risk_backtest"
    assert (report["from"], report["to"]) == (start, end)
    # Replayed in created order: a1 approve; a2, a3 declined (second and third use of card one);
    # b1 approve; b2 declined (second use of card two outranks its review); c1 reviewed.
    assert report["payments"] == 6
    assert report["declined"] == 3
    assert report["reviewed"] == 1
    assert report["approved"] == 2
    assert report["request_3ds"] == 0
    assert report["declined_later_refunded"] == 1
    assert report["reviewed_later_refunded"] == 1
    assert report["approved_later_refunded"] == 0
    assert report["declined_later_disputed"] == report["reviewed_later_disputed"] == 0
    assert report["by_rule"] == {"repeat_card": 3, "big": 2, "everything": 6}
    assert sorted((f["payment"], f["decision"], f["refunded"]) for f in report["flagged"]) == sorted(
        [(a2["id"], "decline", True), (c1["id"], "review", True)]
    )
    assert a1["id"] not in {f["payment"] for f in report["flagged"]}

    # The same period holds nothing of another merchant's, and a later period holds nothing.
    other = await client.post(
        "/v1/risk/rules/backtest", json={"rules": PROPOSED, "from": start, "to": end}, headers=other_merchant.headers
    )
    assert other.json()["payments"] == 0
    later = await client.post(
        "/v1/risk/rules/backtest", json={"rules": PROPOSED, "from": end + 10, "to": end + 20}, headers=merchant.headers
    )
    assert later.json()["payments"] == 0
    # Nothing was stored or changed: the merchant's document is still none.
    assert (await client.get("/v1/risk/rules", headers=merchant.headers)).json()["version"] == 0


async def test_backtest_without_a_proposed_rule_replays_the_platform_defaults(client, merchant) -> None:
    start = int(time.time()) - 1
    number = fresh_card_number()
    for _ in range(3):
        await _pay(client, merchant, number, 500)
    response = await client.post(
        "/v1/risk/rules/backtest", json={"rules": [], "from": start, "to": start + 60}, headers=merchant.headers
    )
    report = response.json()
    # Three uses of one card stay at the 1-minute default's threshold (it fires above 3).
    assert (report["payments"], report["approved"], report["declined"]) == (3, 3, 0)
    assert report["by_rule"] == {}


async def test_backtest_replays_a_card_testing_run_from_one_ip(client, merchant) -> None:
    start = int(time.time()) - 1
    customer = {"ip": "203.0.113.77", "email": "tester@example.com"}
    shown = []
    for _ in range(5):
        body = {"amount": 100, "currency": "EUR", "payment_method": card(fresh_card_number()), "customer": customer}
        response = await client.post("/v1/payments", json=body, headers=merchant.headers)
        assert response.status_code == 201, response.text
        shown.append(response.json())
    # Live, the platform rule (more than 3 cards per IP in an hour) declined the 4th and 5th.
    assert [payment["status"] for payment in shown] == ["captured"] * 3 + ["declined"] * 2
    assert shown[0]["customer"] == customer  # the payment keeps who paid, so a replay can count it
    proposed = [
        {"name": "two_cards_per_ip", "kind": "velocity", "measure": "distinct_cards", "per": "ip",
         "window": "1h", "threshold": 1, "action": "decline"},
    ]  # fmt: skip
    response = await client.post(
        "/v1/risk/rules/backtest", json={"rules": proposed, "from": start, "to": start + 60}, headers=merchant.headers
    )
    assert response.status_code == 200, response.text
    report = response.json()
    # The second card from the IP already exceeds one: payments 2 to 5 would have been declined.
    assert (report["payments"], report["approved"], report["declined"]) == (5, 1, 4)
    assert report["by_rule"]["two_cards_per_ip"] == 4


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"rules": [], "from": 100, "to": 100}, "to"),
        ({"rules": [], "from": 200, "to": 100}, "to"),
        ({"rules": [], "from": 0, "to": 93 * 86_400}, "to"),
        ({"rules": [], "from": "yesterday", "to": 100}, "from"),
        ({"rules": [], "from": -5, "to": 100}, "from"),
        ({"rules": [], "to": 100}, "from"),
        ({"from": 0, "to": 100}, "rules"),
        ({"rules": {}, "from": 0, "to": 100}, "rules"),
        ({"rules": [{"name": "x", "kind": "magic", "action": "decline"}], "from": 0, "to": 100}, "rules.0.kind"),
        ({"rules": [_rule(threshold=-2)], "from": 0, "to": 100}, "rules.0.threshold"),
        ({"rules": [], "from": 0, "to": 100, "dry": True}, "dry"),
    ],
)
async def test_an_invalid_backtest_is_a_400_naming_the_field(client, merchant, body, param) -> None:
    response = await client.post("/v1/risk/rules/backtest", json=body, headers=merchant.headers)
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == param, error_of(response)


async def test_a_period_with_more_payments_than_the_bound_is_refused(app, client, merchant) -> None:
    start = int(time.time()) - 1
    for _ in range(3):
        await _pay(client, merchant, fresh_card_number(), 700)
    reader = app.state.risk_history
    bound = reader.max_payments
    reader.max_payments = 2
    try:
        response = await client.post(
            "/v1/risk/rules/backtest", json={"rules": [], "from": start, "to": start + 60}, headers=merchant.headers
        )
    finally:
        reader.max_payments = bound
    assert response.status_code == 400
    assert error_of(response)["param"] == "to"
    assert "more than 2 payments" in error_of(response)["message"]
