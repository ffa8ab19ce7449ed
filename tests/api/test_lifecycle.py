"""The payment lifecycle through the HTTP API: authorize, capture, void, refund, read, list."""

from __future__ import annotations

import pytest

from tests.api.helpers import authorized, create, error_of


async def test_automatic_capture_authorizes_and_captures_in_one_call(client, merchant):
    response = await create(client, merchant, amount=1250, currency="EUR", reference="order-8812")
    assert response.status_code == 201
    payment = response.json()
    assert payment["object"] == "payment"
    assert payment["id"].startswith("pay_")
    assert payment["status"] == "captured"
    assert payment["amount"] == payment["amount_captured"] == 1250
    assert payment["provider"] == "sandbox"
    assert payment["reference"] == "order-8812"
    assert payment["routing"]["attempts"][0]["outcome"] == "approved"
    card = payment["payment_method"]["card"]
    assert card["last4"] == "4242" and card["bin"] == "424242" and card["brand"] == "visa"
    assert card["token"].startswith("tok_")


async def test_manual_capture_holds_until_captured(client, merchant):
    payment = await authorized(client, merchant, amount=5000)
    assert payment["amount_captured"] == 0
    response = await client.post(f"/v1/payments/{payment['id']}/capture", headers=merchant.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "captured"
    assert response.json()["amount_captured"] == 5000


async def test_partial_captures_accumulate_until_the_authorized_amount(client, merchant):
    payment = await authorized(client, merchant, amount=3000)
    path = f"/v1/payments/{payment['id']}/capture"
    first = await client.post(path, json={"amount": 1000}, headers=merchant.headers)
    assert first.json()["status"] == "partially_captured"
    assert first.json()["amount_captured"] == 1000
    second = await client.post(path, json={"amount": 2000}, headers=merchant.headers)
    assert second.json()["status"] == "captured"
    assert second.json()["amount_captured"] == 3000


async def test_final_partial_capture_releases_the_rest(client, merchant):
    payment = await authorized(client, merchant, amount=3000)
    path = f"/v1/payments/{payment['id']}/capture"
    response = await client.post(path, json={"amount": 1000, "final": True}, headers=merchant.headers)
    assert response.json()["status"] == "captured"
    again = await client.post(path, json={"amount": 1}, headers=merchant.headers)
    assert again.status_code == 409
    assert error_of(again)["code"] == "payment_already_captured"


async def test_void_releases_an_authorization(client, merchant):
    payment = await authorized(client, merchant)
    response = await client.post(f"/v1/payments/{payment['id']}/void", headers=merchant.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "voided"


async def test_several_partial_refunds_up_to_the_captured_amount(client, merchant):
    payment = (await create(client, merchant, amount=1000)).json()
    path = f"/v1/payments/{payment['id']}/refunds"
    first = await client.post(path, json={"amount": 300, "metadata": {"rma": "r-1"}}, headers=merchant.headers)
    assert first.status_code == 201
    refund = first.json()
    assert refund["object"] == "refund" and refund["id"].startswith("re_")
    assert refund["payment"] == payment["id"] and refund["amount"] == 300 and refund["status"] == "succeeded"
    second = await client.post(path, json={"amount": 700}, headers=merchant.headers)
    assert second.status_code == 201
    current = (await client.get(f"/v1/payments/{payment['id']}", headers=merchant.headers)).json()
    assert current["status"] == "refunded"
    assert current["amount_refunded"] == 1000
    fetched = await client.get(f"/v1/refunds/{refund['id']}", headers=merchant.headers)
    assert fetched.status_code == 200
    assert fetched.json() == refund


async def test_refund_without_amount_refunds_the_remainder(client, merchant):
    payment = (await create(client, merchant, amount=800)).json()
    path = f"/v1/payments/{payment['id']}/refunds"
    await client.post(path, json={"amount": 300}, headers=merchant.headers)
    response = await client.post(path, headers=merchant.headers)
    assert response.json()["amount"] == 500


async def test_partially_captured_payment_can_be_refunded_and_captured_again(client, merchant):
    payment = await authorized(client, merchant, amount=1000)
    base = f"/v1/payments/{payment['id']}"
    await client.post(f"{base}/capture", json={"amount": 400}, headers=merchant.headers)
    refund = await client.post(f"{base}/refunds", json={"amount": 100}, headers=merchant.headers)
    assert refund.status_code == 201
    after = await client.post(f"{base}/capture", json={"amount": 600}, headers=merchant.headers)
    assert after.status_code == 200
    body = after.json()
    assert body["amount_captured"] == 1000 and body["amount_refunded"] == 100
    assert body["status"] == "partially_refunded"


async def test_get_returns_the_current_state(client, merchant):
    payment = await authorized(client, merchant)
    response = await client.get(f"/v1/payments/{payment['id']}", headers=merchant.headers)
    assert response.status_code == 200
    assert response.json() == payment


async def test_list_is_newest_first_and_paginates(client, merchant):
    ids = [(await create(client, merchant, amount=100 + i)).json()["id"] for i in range(5)]
    page = (await client.get("/v1/payments?limit=2", headers=merchant.headers)).json()
    assert page["object"] == "list"
    assert [p["id"] for p in page["data"]] == ids[::-1][:2]
    assert page["has_more"] is True
    rest = await client.get(f"/v1/payments?limit=10&starting_after={page['data'][-1]['id']}", headers=merchant.headers)
    assert [p["id"] for p in rest.json()["data"]] == ids[::-1][2:]
    assert rest.json()["has_more"] is False


async def test_list_defaults_to_ten(client, merchant):
    for i in range(11):
        await create(client, merchant, amount=100 + i)
    page = (await client.get("/v1/payments", headers=merchant.headers)).json()
    assert len(page["data"]) == 10 and page["has_more"] is True


async def test_zero_and_three_decimal_currencies_keep_their_minor_units(client, merchant):
    jpy = (await create(client, merchant, amount=1250, currency="JPY")).json()
    kwd = (await create(client, merchant, amount=1250, currency="KWD")).json()
    assert (jpy["amount"], jpy["currency"]) == (1250, "JPY")
    assert (kwd["amount"], kwd["currency"]) == (1250, "KWD")


@pytest.mark.parametrize(
    ("number", "status", "code", "category"),
    [
        ("4000000000000002", "declined", "generic_decline", "hard"),
        ("4000000000009995", "declined", "insufficient_funds", "soft"),
        ("4000000000009987", "declined", "lost_card", "hard"),
        ("4000000000009979", "declined", "stolen_card", "hard"),
        ("4000000000000069", "declined", "expired_card", "hard"),
        ("4000000000000127", "declined", "incorrect_cvc", "hard"),
        ("4000000000000119", "failed", "processing_error", "technical"),
        ("4000000000000408", "failed", "timeout", "technical"),
    ],
)
async def test_sandbox_declines_are_created_payments_with_a_decline(client, merchant, number, status, code, category):
    response = await create(client, merchant, number=number)
    assert response.status_code == 201
    payment = response.json()
    assert payment["status"] == status
    assert payment["decline"]["code"] == code
    assert payment["decline"]["category"] == category
    assert payment["amount_captured"] == 0


async def test_three_ds_card_requires_action_with_next_action(client, merchant):
    payment = (await create(client, merchant, number="4000002500003155")).json()
    assert payment["status"] == "requires_action"
    assert payment["next_action"]["type"] == "redirect_to_url"
    assert payment["decline"] is None


async def test_unknown_outcome_is_resolved_by_replaying_the_same_request(client, merchant, app):
    sandbox = app.state.adapters["sandbox"]
    authorizations_before = sandbox.calls["authorize"]
    payment = (await create(client, merchant, number="4000000000000416", capture="manual")).json()
    assert payment["status"] == "authorized"
    assert payment["routing"]["attempts"][0]["outcome"] == "approved"
    # The first call's answer was lost; the replay with the same provider key answered it.
    assert sandbox.calls["authorize"] == authorizations_before + 2
    assert len(payment["routing"]["attempts"]) == 1


async def test_declined_payment_cannot_be_captured(client, merchant):
    payment = (await create(client, merchant, number="4000000000000002")).json()
    response = await client.post(f"/v1/payments/{payment['id']}/capture", headers=merchant.headers)
    assert response.status_code == 409
    assert error_of(response)["code"] == "payment_not_authorized"


async def test_card_number_and_cvc_never_reach_the_database(client, merchant, db):
    number = "5555555555554444"
    payment = (await create(client, merchant, number=number)).json()
    assert number not in str(payment)
    for table, column in (("payments", "body"), ("payment_attempts", "request")):
        leaked = await db.fetchval(
            f"SELECT count(*) FROM {table} WHERE {column}::text LIKE $1 OR {column}::text LIKE $2",
            f"%{number}%",
            '%"cvc"%',
        )
        assert leaked == 0, table
