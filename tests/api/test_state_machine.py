"""Every refusal of the payment state machine answers 4xx with a precise code."""

from __future__ import annotations

from tests.api.helpers import authorized, create, error_of


async def _void(client, merchant, payment_id):
    return await client.post(f"/v1/payments/{payment_id}/void", headers=merchant.headers)


async def test_capturing_a_voided_payment_is_rejected(client, merchant):
    payment = await authorized(client, merchant)
    await _void(client, merchant, payment["id"])
    response = await client.post(f"/v1/payments/{payment['id']}/capture", headers=merchant.headers)
    assert response.status_code == 409
    error = error_of(response)
    assert (error["type"], error["code"]) == ("invalid_request_error", "payment_already_voided")


async def test_capturing_beyond_the_authorized_amount_is_rejected(client, merchant):
    payment = await authorized(client, merchant, amount=1000)
    response = await client.post(
        f"/v1/payments/{payment['id']}/capture", json={"amount": 1001}, headers=merchant.headers
    )
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("amount_exceeds_capturable", "amount")


async def test_capturing_beyond_what_remains_after_partial_captures_is_rejected(client, merchant):
    payment = await authorized(client, merchant, amount=1000)
    path = f"/v1/payments/{payment['id']}/capture"
    await client.post(path, json={"amount": 600}, headers=merchant.headers)
    response = await client.post(path, json={"amount": 401}, headers=merchant.headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == "amount_exceeds_capturable"


async def test_refunding_more_than_captured_is_rejected(client, merchant):
    payment = (await create(client, merchant, amount=1000)).json()
    response = await client.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": 1001}, headers=merchant.headers
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "amount_exceeds_refundable"


async def test_refunds_in_total_cannot_exceed_captured(client, merchant):
    payment = (await create(client, merchant, amount=1000)).json()
    path = f"/v1/payments/{payment['id']}/refunds"
    assert (await client.post(path, json={"amount": 600}, headers=merchant.headers)).status_code == 201
    response = await client.post(path, json={"amount": 401}, headers=merchant.headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == "amount_exceeds_refundable"


async def test_refunding_a_fully_refunded_payment_is_rejected(client, merchant):
    payment = (await create(client, merchant, amount=1000)).json()
    path = f"/v1/payments/{payment['id']}/refunds"
    await client.post(path, headers=merchant.headers)
    response = await client.post(path, headers=merchant.headers)
    assert response.status_code == 409
    assert error_of(response)["code"] == "payment_already_refunded"


async def test_voiding_a_captured_payment_is_rejected(client, merchant):
    payment = (await create(client, merchant)).json()
    response = await _void(client, merchant, payment["id"])
    assert response.status_code == 409
    assert error_of(response)["code"] == "payment_already_captured"


async def test_voiding_a_partially_captured_payment_is_rejected(client, merchant):
    payment = await authorized(client, merchant, amount=1000)
    await client.post(f"/v1/payments/{payment['id']}/capture", json={"amount": 10}, headers=merchant.headers)
    response = await _void(client, merchant, payment["id"])
    assert response.status_code == 409
    assert error_of(response)["code"] == "payment_already_captured"


async def test_voiding_twice_is_rejected(client, merchant):
    payment = await authorized(client, merchant)
    await _void(client, merchant, payment["id"])
    response = await _void(client, merchant, payment["id"])
    assert response.status_code == 409
    assert error_of(response)["code"] == "payment_already_voided"


async def test_refunding_an_uncaptured_payment_is_rejected(client, merchant):
    payment = await authorized(client, merchant)
    response = await client.post(f"/v1/payments/{payment['id']}/refunds", headers=merchant.headers)
    assert response.status_code == 409
    assert error_of(response)["code"] == "payment_not_captured"


async def test_refunding_a_voided_payment_is_rejected(client, merchant):
    payment = await authorized(client, merchant)
    await _void(client, merchant, payment["id"])
    response = await client.post(f"/v1/payments/{payment['id']}/refunds", headers=merchant.headers)
    assert response.status_code == 409
    assert error_of(response)["code"] == "payment_already_voided"


async def test_capturing_a_payment_that_requires_action_is_rejected(client, merchant):
    payment = (await create(client, merchant, number="4000002500003155", capture="manual")).json()
    response = await client.post(f"/v1/payments/{payment['id']}/capture", headers=merchant.headers)
    assert response.status_code == 409
    assert error_of(response)["code"] == "payment_not_authorized"


async def test_a_refused_operation_changes_nothing(client, merchant):
    payment = await authorized(client, merchant, amount=1000)
    before = (await client.get(f"/v1/payments/{payment['id']}", headers=merchant.headers)).json()
    await client.post(f"/v1/payments/{payment['id']}/capture", json={"amount": 5000}, headers=merchant.headers)
    after = (await client.get(f"/v1/payments/{payment['id']}", headers=merchant.headers)).json()
    assert after == before
