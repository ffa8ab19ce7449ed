"""``/v1/routing``: versions, validation errors with their param, canary rollout, rollback, simulate."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import create, error_of, fresh_card_number, payment_body


def _config(*, percent: int = 100, rule_amount_lt: int | None = None, name: str = "small") -> dict[str, Any]:
    rules = []
    if rule_amount_lt is not None:
        rules.append(
            {
                "name": name,
                "when": {"amount": {"lt": rule_amount_lt}, "payment_method": ["card"]},
                "strategy": "priority",
                "candidates": ["sandbox"],
            }
        )
    return {
        "rules": rules,
        "default": {"strategy": "priority", "candidates": ["sandbox"]},
        "cascade": {"max_attempts": 2, "soft_decline_codes": ["do_not_honor"], "deadline_ms": 20000},
        "rollout": {"percent": percent, "sticky": "customer"},
    }


async def _put(client, merchant, document: dict[str, Any]):
    return await client.put("/v1/routing", json=document, headers=merchant.headers)


async def test_a_merchant_without_a_config_gets_version_0_priority_over_its_accounts(client, merchant) -> None:
    response = await client.get("/v1/routing", headers=merchant.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 0
    assert body["default"] == {"strategy": "priority", "candidates": ["sandbox"]}
    payment = (await create(client, merchant)).json()
    assert payment["routing"]["version"] == 0
    assert payment["routing"]["rule"] is None
    assert payment["routing"]["strategy"] == "priority"


async def test_put_keeps_versions_and_payments_show_the_rule_and_version(client, merchant) -> None:
    first = await _put(client, merchant, _config())
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1 and first.json()["active"] is True
    second = await _put(client, merchant, _config(rule_amount_lt=5000))
    assert second.json()["version"] == 2
    small = (await create(client, merchant, amount=1000)).json()
    assert small["routing"]["rule"] == "small"
    assert small["routing"]["version"] == 2
    large = (await create(client, merchant, amount=9000)).json()
    assert large["routing"]["rule"] is None
    versions = (await client.get("/v1/routing/versions", headers=merchant.headers)).json()["data"]
    assert [(v["version"], v["active"]) for v in versions] == [(2, True), (1, False)]


@pytest.mark.parametrize(
    ("mutate", "param"),
    [
        (lambda d: d["default"].update(strategy="fastest"), "default.strategy"),
        (lambda d: d["default"].update(candidates=["nowhere"]), "default.candidates.0"),
        (lambda d: d["cascade"].update(max_attempts=9), "cascade.max_attempts"),
        (lambda d: d["cascade"].update(soft_decline_codes=["stolen_card"]), "cascade.soft_decline_codes.0"),
        (lambda d: d["rollout"].update(percent=0), "rollout.percent"),
        (lambda d: d["rules"][0].update(strategy="cheapestt"), "rules.0.strategy"),
        (lambda d: d["rules"][0]["when"].update(amount={"gte": 10, "lt": 5}), "rules.0.when.amount.lt"),
        (lambda d: d["rules"][0]["when"].update(currency=["XXQ"]), "rules.0.when.currency.0"),
        (lambda d: d["rules"][0].update(colour="red"), "rules.0.colour"),
    ],
)
async def test_an_invalid_config_is_a_400_naming_the_field(client, merchant, mutate, param) -> None:
    document = _config(rule_amount_lt=5000)
    mutate(document)
    response = await _put(client, merchant, document)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert (await client.get("/v1/routing", headers=merchant.headers)).json()["version"] == 0


async def test_an_account_of_another_merchant_or_not_configured_is_refused(client, merchant) -> None:
    document = _config()
    document["default"]["candidates"] = ["sandbox", "stripe"]
    response = await _put(client, merchant, document)
    assert response.status_code == 400
    assert error_of(response)["param"] == "default.candidates.1"


async def test_malformed_json_and_an_empty_body_are_400(client, merchant) -> None:
    bad = await client.put("/v1/routing", content=b"{not json", headers=merchant.headers)
    assert bad.status_code == 400
    empty = await client.put("/v1/routing", content=b"", headers=merchant.headers)
    assert empty.status_code == 400
    assert error_of(empty)["code"] == "parameter_missing"


async def test_a_canary_takes_its_share_of_customers_and_each_customer_sticks(client, merchant) -> None:
    await _put(client, merchant, _config())
    canary = await _put(client, merchant, _config(percent=30, rule_amount_lt=10**9, name="canary"))
    assert canary.json()["active"] is False
    assert canary.json()["canary"] == {"version": 2, "percent": 30}
    shown = (await client.get("/v1/routing", headers=merchant.headers)).json()
    assert shown["version"] == 1 and shown["canary"]["version"] == 2

    versions: dict[str, int] = {}
    for index in range(200):
        body = payment_body(number=fresh_card_number(), customer={"id": f"cust-{index}"})
        payment = (await client.post("/v1/payments", json=body, headers=merchant.headers)).json()
        versions[f"cust-{index}"] = payment["routing"]["version"]
    share = sum(1 for version in versions.values() if version == 2) / len(versions)
    assert 0.18 <= share <= 0.42, share
    # The same shoppers again: every one lands on the version it had.
    for customer in list(versions)[:40]:
        body = payment_body(number=fresh_card_number(), customer={"id": customer})
        payment = (await client.post("/v1/payments", json=body, headers=merchant.headers)).json()
        assert payment["routing"]["version"] == versions[customer]
    # A shopper with no customer key stays on the active version.
    anonymous = (await create(client, merchant)).json()
    assert anonymous["routing"]["version"] == 1


async def test_rollback_makes_an_earlier_version_active_and_stops_the_canary(client, merchant) -> None:
    await _put(client, merchant, _config())
    await _put(client, merchant, _config(rule_amount_lt=5000))
    await _put(client, merchant, _config(percent=50, rule_amount_lt=7000, name="half"))
    response = await client.post("/v1/routing/rollback", json={"version": 1}, headers=merchant.headers)
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1
    shown = (await client.get("/v1/routing", headers=merchant.headers)).json()
    assert shown["version"] == 1 and "canary" not in shown
    versions = (await client.get("/v1/routing/versions", headers=merchant.headers)).json()["data"]
    assert [v["version"] for v in versions] == [3, 2, 1], "a rollback creates no version"
    payment = (await create(client, merchant, amount=1000, customer={"id": "c-1"})).json()
    assert payment["routing"]["version"] == 1 and payment["routing"]["rule"] is None


async def test_rollback_to_an_unknown_version_is_a_404_and_bad_bodies_are_400(client, merchant) -> None:
    missing = await client.post("/v1/routing/rollback", json={"version": 7}, headers=merchant.headers)
    assert missing.status_code == 404
    assert error_of(missing)["param"] == "version"
    invalid = await client.post("/v1/routing/rollback", json={"version": "two"}, headers=merchant.headers)
    assert invalid.status_code == 400
    assert error_of(invalid)["param"] == "version"


async def test_configs_are_per_merchant(client, merchant, other_merchant) -> None:
    await _put(client, merchant, _config(rule_amount_lt=5000))
    other = (await client.get("/v1/routing", headers=other_merchant.headers)).json()
    assert other["version"] == 0


async def test_simulate_explains_the_plan_and_moves_no_money(client, merchant) -> None:
    await _put(client, merchant, _config(rule_amount_lt=5000))
    response = await client.post("/v1/routing/simulate", json=payment_body(amount=1000), headers=merchant.headers)
    assert response.status_code == 200, response.text
    explained = response.json()
    assert explained["rule"] == "small"
    assert explained["version"] == 1
    assert explained["plan"] == ["sandbox"]
    assert explained["candidates"][0]["account"] == "sandbox"
    assert explained["candidates"][0]["eligible"] is True
    assert set(explained["candidates"][0]) >= {"account", "eligible", "reason", "fee", "fx_cost", "success_rate"}
    listed = (await client.get("/v1/payments", headers=merchant.headers)).json()
    assert listed["data"] == []
    invalid = await client.post("/v1/routing/simulate", json={"amount": 5}, headers=merchant.headers)
    assert invalid.status_code == 400


async def test_routing_needs_a_key(client) -> None:
    response = await client.get("/v1/routing")
    assert response.status_code == 401
