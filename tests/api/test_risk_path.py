"""Risk on the authorization path: card testing declined, sanctioned names reviewed, PSD2 SCA.

What the provider performed is checked on the sandbox's own books (its authorization count and
its challenges), not only on what the switch answers.
"""

from __future__ import annotations

import secrets
from typing import Any

from switch.ledger.verify import verify_ledger
from tests.api.helpers import card, fresh_card_number, payment_body

GERMAN_CARD = "4000002760000016"  # the BIN table's DE credit test range


async def _pay(client, merchant, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/payments", json=payment_body(**body), headers=merchant.headers)
    assert response.status_code == 201, response.text
    return response.json()


def _fired(payment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["name"]: rule for rule in payment["risk"]["rules"]}


async def test_a_card_testing_attack_from_one_ip_is_declined_after_the_threshold(app, client, merchant) -> None:
    sandbox = app.state.adapters["sandbox"]
    customer = {"ip": "203.0.113.23", "email": f"{secrets.token_hex(4)}@example.com"}
    answers = []
    for _ in range(5):
        calls_before = sandbox.calls["authorize"]
        body = payment_body(amount=100, customer=customer)
        body["payment_method"] = card(fresh_card_number())
        response = await client.post("/v1/payments", json=body, headers=merchant.headers)
        assert response.status_code == 201, response.text
        answers.append((response.json(), sandbox.calls["authorize"] - calls_before))
    statuses = [payment["status"] for payment, _ in answers]
    # Distinct cards per IP over an hour above 3: the fourth card and every later one is refused.
    assert statuses == ["captured", "captured", "captured", "declined", "declined"], statuses
    blocked, provider_calls = answers[3]
    assert provider_calls == 0, "a risk decline must not reach the provider"
    assert blocked["decline"] == {
        "code": "risk_blocked",
        "category": "hard",
        "message": "The payment was declined by the merchant's risk rules.",
    }
    assert blocked["risk"]["decision"] == "decline"
    rule = _fired(blocked)["platform.card_testing_ip"]
    assert (rule["value"], rule["threshold"], rule["action"], rule["mode"]) == (4, 3, "decline", "enforce")
    assert blocked["routing"]["attempts"] == []
    assert blocked["provider"] is None


async def test_a_sanctioned_cardholder_is_held_for_review_and_not_captured(app, client, merchant) -> None:
    body = payment_body(amount=4200)
    body["payment_method"] = card(fresh_card_number(), holder_name="Ivan Petrovich Korvalesh")
    response = await client.post("/v1/payments", json=body, headers=merchant.headers)
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "in_review"
    assert payment["amount_captured"] == 0
    assert payment["risk"]["decision"] == "review"
    sanctions = [rule for rule in payment["risk"]["rules"] if "sanctions" in rule["name"]]
    assert sanctions and sanctions[0]["action"] == "review", payment["risk"]
    report = await verify_ledger(app.state.pool)
    assert report.ok, report.render()


async def test_a_clean_payment_carries_its_risk_object(client, merchant) -> None:
    payment = await _pay(client, merchant, amount=1500)
    assert payment["risk"]["decision"] == "approve"
    assert set(payment["risk"]) == {"decision", "score", "rules", "sca"}
    assert payment["risk"]["sca"] == {"exemption": None, "reason": "out_of_scope"}  # a US card


async def test_a_provider_decline_carries_its_risk_object_too(client, merchant) -> None:
    payment = await _pay(client, merchant, amount=1500, number="4000000000000002")
    assert payment["status"] == "declined"
    assert payment["risk"]["decision"] == "approve"


async def test_a_low_value_eea_payment_is_exempt_from_sca(client, merchant) -> None:
    payment = await _pay(client, merchant, amount=2000, number=GERMAN_CARD)
    assert payment["status"] == "captured"
    assert payment["risk"]["sca"] == {"exemption": "low_value", "reason": "low_value"}


async def test_a_mid_value_eea_payment_gets_the_transaction_risk_analysis_exemption(client, merchant) -> None:
    payment = await _pay(client, merchant, amount=9_000, number=GERMAN_CARD)
    assert payment["status"] == "captured"
    assert payment["risk"]["sca"]["exemption"] == "transaction_risk_analysis"


async def test_a_large_eea_payment_requires_3ds_and_is_captured_once_confirmed(app, client, merchant) -> None:
    sandbox = app.state.adapters["sandbox"]
    payment = await _pay(client, merchant, amount=25_000, number=GERMAN_CARD)
    assert payment["status"] == "requires_action", payment
    assert payment["risk"]["decision"] == "request_3ds"
    assert payment["risk"]["sca"]["exemption"] is None
    url = payment["next_action"]["url"]
    assert url.startswith("/sandbox/3ds/")

    early = await client.post(f"/v1/payments/{payment['id']}/confirm", headers=merchant.headers)
    assert early.status_code == 200
    assert early.json()["status"] == "requires_action", "nothing to book before the customer authenticated"

    completed = await client.post(url, json={"result": "succeeded"})
    assert completed.status_code == 200, completed.text
    confirmed = await client.post(f"/v1/payments/{payment['id']}/confirm", headers=merchant.headers)
    assert confirmed.status_code == 200, confirmed.text
    settled = confirmed.json()
    assert settled["status"] == "captured"
    assert settled["amount_captured"] == 25_000
    assert settled["risk"]["sca"]["authenticated"] is True
    reference = settled["provider_reference"]
    assert sandbox._authorizations[reference].captured == 25_000  # what the provider performed

    again = await client.post(f"/v1/payments/{payment['id']}/confirm", headers=merchant.headers)
    assert again.status_code == 200
    assert again.json()["amount_captured"] == 25_000
    assert sandbox._authorizations[reference].captured == 25_000
    report = await verify_ledger(app.state.pool)
    assert report.ok, report.render()


async def test_a_failed_challenge_declines_the_payment(client, merchant) -> None:
    payment = await _pay(client, merchant, amount=25_000, number=GERMAN_CARD)
    await client.post(payment["next_action"]["url"], json={"result": "failed"})
    confirmed = await client.post(f"/v1/payments/{payment['id']}/confirm", headers=merchant.headers)
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "declined"
    assert confirmed.json()["decline"]["code"] == "authentication_failed"


async def test_confirming_a_payment_that_never_waited_is_a_409_and_another_merchants_a_404(
    client, merchant, other_merchant
) -> None:
    payment = await _pay(client, merchant, amount=1500)
    refused = await client.post(f"/v1/payments/{payment['id']}/confirm", headers=merchant.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "payment_not_awaiting_action"
    hidden = await client.post(f"/v1/payments/{payment['id']}/confirm", headers=other_merchant.headers)
    assert hidden.status_code == 404
    bad = await client.post("/sandbox/3ds/sbx_nothing", json={"result": "succeeded"})
    assert bad.status_code == 404
    invalid = await client.post("/sandbox/3ds/sbx_nothing", json={"result": "maybe"})
    assert invalid.status_code == 400
