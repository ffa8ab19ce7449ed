"""``/v1/reviews``: the queue of payments held ``in_review``, approve (then capture), reject (void)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from adapters.base import AuthorizeRequest, CardData, Outcome
from switch.ids import new_id
from switch.ledger.verify import verify_ledger
from switch.ledger.writer import WriteOp
from switch.payments.model import ENCODER
from switch.payments.outcome import apply_outcome, payment_row
from tests.api.helpers import authorized, error_of, payment_body
from tests.ledger.intents import pending_payment

VELOCITY_REVIEW = {
    "name": "platform.distinct_cards_email",
    "action": "review",
    "value": 4,
    "threshold": 3,
    "mode": "enforce",
}
SHADOW_DECLINE = {"name": "shadow_big", "action": "decline", "value": 4200, "threshold": 1000, "mode": "shadow"}
SANCTIONS = {"name": "platform.sanctions", "action": "review", "value": 93.5, "threshold": 90.0, "mode": "enforce"}
AML = {"name": "aml.large_amount", "action": "review", "value": 1_200_000, "threshold": 1_000_000, "mode": "enforce"}


async def in_review(
    app,
    merchant,
    *,
    capture: str = "automatic",
    amount: int = 4200,
    rules: list[dict[str, Any]] | None = None,
    provider: str = "sandbox",
) -> dict[str, Any]:
    """A payment authorized at the sandbox without capture and stored ``in_review`` with its hold.

    Written as the authorization path writes it (``apply_outcome`` on a payment whose risk decision
    is ``review``), so that a test can choose its provider account and fired rules.
    """
    payment = pending_payment(amount=amount, capture=capture)
    sandbox = app.state.adapters["sandbox"]
    attempt_id = new_id("att")
    result = await sandbox.authorize(
        AuthorizeRequest(
            payment_id=payment.id,
            attempt_id=attempt_id,
            idempotency_key=attempt_id,
            amount=amount,
            currency=payment.currency,
            card=CardData(number="4242424242424242", exp_month=12, exp_year=2031, cvc="123"),
            capture=False,
        )
    )
    assert result.outcome is Outcome.APPROVED
    payment.provider = provider
    fired = [VELOCITY_REVIEW, SHADOW_DECLINE] if rules is None else rules
    payment.risk = {
        "decision": "review",
        "score": 40,
        "rules": fired,
        "sca": {"exemption": None, "reason": "not_evaluated"},
    }
    journal = apply_outcome(merchant.id, payment, result)
    assert payment.status == "in_review"
    body = ENCODER.encode(payment)
    await app.state.writer.submit(WriteOp(payments=[payment_row(merchant.id, payment, body)], journal=journal))
    return {"id": payment.id, "review": "rev_" + payment.id.removeprefix("pay_"), "created": payment.created}


async def _ledger_problems(db, payment_id: str) -> list[str]:
    report = await verify_ledger(db, limit=10_000)
    return [violation for check in report.checks for violation in check.violations if payment_id in violation]


@contextlib.contextmanager
def provider_alias(app, name: str) -> Iterator[None]:
    """Make account ``name`` reach the sandbox (the payment's provider comes back)."""
    app.state.adapters[name] = app.state.adapters["sandbox"]
    try:
        yield
    finally:
        del app.state.adapters[name]


async def test_open_reviews_are_listed_newest_first_with_their_reason_and_rules(app, client, merchant) -> None:
    first = await in_review(app, merchant)
    second = await in_review(app, merchant, rules=[SANCTIONS])
    third = await in_review(app, merchant, rules=[AML, VELOCITY_REVIEW])
    await authorized(client, merchant)  # an ordinary payment opens no review

    response = await client.get("/v1/reviews?status=open", headers=merchant.headers)
    assert response.status_code == 200, response.text
    listed = response.json()
    assert listed["object"] == "list" and listed["has_more"] is False
    assert [review["id"] for review in listed["data"]] == [third["review"], second["review"], first["review"]]
    oldest = listed["data"][2]
    assert oldest == {
        "id": first["review"],
        "object": "review",
        "payment": first["id"],
        "reason": "platform.distinct_cards_email",
        "rules": [VELOCITY_REVIEW],
        "status": "open",
        "created": first["created"],
        "closed": None,
        "closed_by": None,
    }
    assert listed["data"][1]["reason"] == "sanctions"
    assert listed["data"][0]["reason"] == "aml"
    assert listed["data"][0]["rules"] == [AML, VELOCITY_REVIEW]

    page = (await client.get("/v1/reviews?limit=2", headers=merchant.headers)).json()
    assert [review["id"] for review in page["data"]] == [third["review"], second["review"]]
    assert page["has_more"] is True
    rest = (await client.get(f"/v1/reviews?limit=2&starting_after={second['review']}", headers=merchant.headers)).json()
    assert [review["id"] for review in rest["data"]] == [first["review"]]
    assert rest["has_more"] is False

    one = await client.get(f"/v1/reviews/{second['review']}", headers=merchant.headers)
    assert one.status_code == 200 and one.json()["status"] == "open" and one.json()["rules"] == [SANCTIONS]


async def test_a_payment_sent_to_review_by_a_merchant_rule_is_queued_then_approved_and_captured(
    client, merchant, db
) -> None:
    rules = {"rules": [{"name": "large_order", "kind": "amount", "threshold": 50_000, "action": "review", "score": 30}]}
    assert (await client.put("/v1/risk/rules", json=rules, headers=merchant.headers)).status_code == 200
    small = await client.post("/v1/payments", json=payment_body(amount=1_000), headers=merchant.headers)
    assert small.json()["status"] == "captured"
    created = await client.post("/v1/payments", json=payment_body(amount=60_000), headers=merchant.headers)
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["status"] == "in_review" and payment["amount_captured"] == 0
    review_id = "rev_" + payment["id"].removeprefix("pay_")

    queued = (await client.get("/v1/reviews", headers=merchant.headers)).json()["data"]
    assert [(item["id"], item["payment"], item["reason"]) for item in queued] == [
        (review_id, payment["id"], "large_order")
    ]
    assert queued[0]["rules"] == [
        {"name": "large_order", "action": "review", "value": 60_000, "threshold": 50_000, "mode": "enforce"}
    ]
    assert await _ledger_problems(db, payment["id"]) == []

    approved = await client.post(f"/v1/reviews/{review_id}/approve", headers=merchant.headers)
    assert approved.status_code == 200, approved.text
    after = (await client.get(f"/v1/payments/{payment['id']}", headers=merchant.headers)).json()
    assert after["status"] == "captured" and after["amount_captured"] == 60_000
    assert after["risk"]["decision"] == "review", "the payment keeps the risk decision it was held on"
    assert await _ledger_problems(db, payment["id"]) == []


async def test_a_payment_in_review_cannot_be_captured_voided_or_refunded_directly(app, client, merchant) -> None:
    held = await in_review(app, merchant)
    for action, body in (("capture", {}), ("void", {}), ("refunds", {"amount": 100})):
        response = await client.post(f"/v1/payments/{held['id']}/{action}", json=body, headers=merchant.headers)
        assert response.status_code == 409, (action, response.text)
        error = error_of(response)
        assert error["type"] == "invalid_request_error" and error["code"] == "payment_in_review", error
    payment = (await client.get(f"/v1/payments/{held['id']}", headers=merchant.headers)).json()
    assert payment["status"] == "in_review" and payment["amount_captured"] == 0


async def test_approving_an_automatic_capture_payment_captures_it_and_closes_the_review(
    app, client, merchant, db
) -> None:
    held = await in_review(app, merchant, amount=4200)
    response = await client.post(
        f"/v1/reviews/{held['review']}/approve", json={"closed_by": "analyst-7"}, headers=merchant.headers
    )
    assert response.status_code == 200, response.text
    review = response.json()
    assert review["id"] == held["review"] and review["status"] == "approved"
    assert review["closed_by"] == "analyst-7" and isinstance(review["closed"], int)
    assert review["rules"] == [VELOCITY_REVIEW] and review["created"] == held["created"]
    payment = (await client.get(f"/v1/payments/{held['id']}", headers=merchant.headers)).json()
    assert payment["status"] == "captured" and payment["amount_captured"] == 4200
    assert await _ledger_problems(db, held["id"]) == []

    assert (await client.get("/v1/reviews?status=open", headers=merchant.headers)).json()["data"] == []
    approved = (await client.get("/v1/reviews?status=approved", headers=merchant.headers)).json()["data"]
    assert [item["id"] for item in approved] == [held["review"]]
    assert (await client.get("/v1/reviews?status=rejected", headers=merchant.headers)).json()["data"] == []
    assert (await client.get(f"/v1/reviews/{held['review']}", headers=merchant.headers)).json() == review

    for action in ("approve", "reject"):
        again = await client.post(f"/v1/reviews/{held['review']}/{action}", headers=merchant.headers)
        assert again.status_code == 409, again.text
        assert error_of(again)["type"] == "invalid_request_error"
        assert error_of(again)["code"] == "review_already_closed"
    assert (await client.get(f"/v1/payments/{held['id']}", headers=merchant.headers)).json()["status"] == "captured"


async def test_approving_a_manual_capture_payment_leaves_it_authorized_for_the_merchant(
    app, client, merchant, db
) -> None:
    held = await in_review(app, merchant, capture="manual", amount=3000)
    response = await client.post(f"/v1/reviews/{held['review']}/approve", headers=merchant.headers)
    assert response.status_code == 200, response.text
    payment = (await client.get(f"/v1/payments/{held['id']}", headers=merchant.headers)).json()
    assert payment["status"] == "authorized" and payment["amount_captured"] == 0
    assert await _ledger_problems(db, held["id"]) == []
    captured = await client.post(f"/v1/payments/{held['id']}/capture", json={"amount": 1000}, headers=merchant.headers)
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "partially_captured"
    assert await _ledger_problems(db, held["id"]) == []
    again = await client.post(f"/v1/reviews/{held['review']}/approve", headers=merchant.headers)
    assert again.status_code == 409 and error_of(again)["code"] == "review_already_closed"


async def test_rejecting_voids_the_payment(app, client, merchant, db) -> None:
    held = await in_review(app, merchant)
    response = await client.post(f"/v1/reviews/{held['review']}/reject", json={}, headers=merchant.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "rejected" and response.json()["closed_by"] is None
    payment = (await client.get(f"/v1/payments/{held['id']}", headers=merchant.headers)).json()
    assert payment["status"] == "voided" and payment["amount_captured"] == 0
    assert await _ledger_problems(db, held["id"]) == []
    rejected = (await client.get("/v1/reviews?status=rejected", headers=merchant.headers)).json()["data"]
    assert [item["id"] for item in rejected] == [held["review"]]
    for action in ("reject", "approve"):
        again = await client.post(f"/v1/reviews/{held['review']}/{action}", headers=merchant.headers)
        assert again.status_code == 409 and error_of(again)["code"] == "review_already_closed"


async def test_a_reject_whose_void_fails_says_so_keeps_the_review_rejected_and_a_retry_voids(
    app, client, merchant, db
) -> None:
    # The payment's provider account is not configured right now: the void cannot be sent.
    held = await in_review(app, merchant, provider="sandbox-eu")
    response = await client.post(f"/v1/reviews/{held['review']}/reject", headers=merchant.headers)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    error = error_of(response)
    assert error["type"] == "api_error" and error["code"] == "review_void_failed"
    for words in (f"review {held['review']} is rejected", f"payment {held['id']} is authorized", "retry", "reject"):
        assert words in error["message"], error["message"]
    review = (await client.get(f"/v1/reviews/{held['review']}", headers=merchant.headers)).json()
    assert review["status"] == "rejected"
    payment = (await client.get(f"/v1/payments/{held['id']}", headers=merchant.headers)).json()
    assert payment["status"] == "authorized"
    assert await _ledger_problems(db, held["id"]) == [], "authorized with its hold: the books agree"

    with provider_alias(app, "sandbox-eu"):
        retried = await client.post(f"/v1/reviews/{held['review']}/reject", headers=merchant.headers)
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "rejected"
        payment = (await client.get(f"/v1/payments/{held['id']}", headers=merchant.headers)).json()
        assert payment["status"] == "voided"
        again = await client.post(f"/v1/reviews/{held['review']}/reject", headers=merchant.headers)
        assert again.status_code == 409 and error_of(again)["code"] == "review_already_closed"
    assert await _ledger_problems(db, held["id"]) == []


async def test_an_approve_whose_capture_fails_says_so_and_a_retry_captures(app, client, merchant, db) -> None:
    held = await in_review(app, merchant, provider="sandbox-eu")
    response = await client.post(f"/v1/reviews/{held['review']}/approve", headers=merchant.headers)
    assert response.status_code == 503, response.text
    error = error_of(response)
    assert error["code"] == "review_capture_failed"
    assert f"review {held['review']} is approved" in error["message"] and "capture" in error["message"]
    assert (await client.get(f"/v1/payments/{held['id']}", headers=merchant.headers)).json()["status"] == "authorized"
    with provider_alias(app, "sandbox-eu"):
        retried = await client.post(f"/v1/reviews/{held['review']}/approve", headers=merchant.headers)
        assert retried.status_code == 200, retried.text
    payment = (await client.get(f"/v1/payments/{held['id']}", headers=merchant.headers)).json()
    assert payment["status"] == "captured" and payment["amount_captured"] == 4200
    assert await _ledger_problems(db, held["id"]) == []


async def test_closing_a_review_emits_review_closed_and_the_payment_events(app, client, merchant) -> None:
    held = await in_review(app, merchant)
    assert (await client.post(f"/v1/reviews/{held['review']}/approve", headers=merchant.headers)).status_code == 200
    events = (await client.get("/v1/events?limit=10", headers=merchant.headers)).json()["data"]
    types = [event["type"] for event in events]
    assert "review.closed" in types and "payment.authorized" in types and "payment.captured" in types
    closed = next(event for event in events if event["type"] == "review.closed")
    assert closed["data"]["object"]["id"] == held["review"]
    assert closed["data"]["object"]["status"] == "approved"


async def test_unknown_malformed_and_other_merchants_reviews_are_404(app, client, merchant, other_merchant) -> None:
    held = await in_review(app, merchant)
    ordinary = await authorized(client, merchant)
    never_reviewed = "rev_" + ordinary["id"].removeprefix("pay_")
    for review_id in ("rev_0000000000000000000000000", "pay_abc", "rev_!!", never_reviewed):
        for method, path in (("GET", ""), ("POST", "/approve"), ("POST", "/reject")):
            response = await client.request(method, f"/v1/reviews/{review_id}{path}", headers=merchant.headers)
            assert response.status_code == 404, (review_id, path, response.text)
            assert error_of(response)["code"] == "resource_missing"
    for method, path in (("GET", ""), ("POST", "/approve"), ("POST", "/reject")):
        response = await client.request(method, f"/v1/reviews/{held['review']}{path}", headers=other_merchant.headers)
        assert response.status_code == 404, (path, response.text)
        assert error_of(response)["code"] == "resource_missing"
    assert (await client.get("/v1/reviews", headers=other_merchant.headers)).json()["data"] == []
    # Nothing the other merchant tried changed the review.
    assert (await client.get(f"/v1/reviews/{held['review']}", headers=merchant.headers)).json()["status"] == "open"


async def test_bad_queries_and_bodies_are_400_naming_the_field(app, client, merchant) -> None:
    held = await in_review(app, merchant)
    for query, param in (
        ("status=closed", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("starting_after=rev_0000000000000000000000000", "starting_after"),
    ):
        response = await client.get(f"/v1/reviews?{query}", headers=merchant.headers)
        assert response.status_code == 400, (query, response.text)
        assert error_of(response)["param"] == param, query
    for body, param in (({"closed_by": ""}, "closed_by"), ({"reason": "x"}, "reason"), ({"closed_by": 7}, "closed_by")):
        response = await client.post(f"/v1/reviews/{held['review']}/approve", json=body, headers=merchant.headers)
        assert response.status_code == 400, (body, response.text)
        assert error_of(response)["param"] == param
    bad_json = await client.post(f"/v1/reviews/{held['review']}/reject", content=b"{no", headers=merchant.headers)
    assert bad_json.status_code == 400
    assert (await client.get(f"/v1/reviews/{held['review']}", headers=merchant.headers)).json()["status"] == "open"


async def test_reviews_need_a_key(client) -> None:
    assert (await client.get("/v1/reviews")).status_code == 401
    assert (await client.post("/v1/reviews/rev_abc/approve")).status_code == 401
