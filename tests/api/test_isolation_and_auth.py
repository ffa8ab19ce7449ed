"""Bearer-key authentication and merchant isolation."""

from __future__ import annotations

import pytest

from tests.api.helpers import authorized, create, error_of


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Basic abc"}, "invalid_authorization_header"),
        ({"Authorization": "Bearer "}, "invalid_authorization_header"),
        ({"Authorization": "Bearer sk_test_not_a_real_key"}, "invalid_api_key"),
    ],
)
async def test_requests_without_a_valid_key_are_401(client, headers, code):
    response = await client.get("/v1/payments", headers=headers)
    assert response.status_code == 401
    error = error_of(response)
    assert (error["type"], error["code"]) == ("authentication_error", code)
    assert "sk_test_not_a_real_key" not in response.text


async def test_another_merchants_payment_is_not_found(client, merchant, other_merchant):
    payment = await authorized(client, merchant)
    response = await client.get(f"/v1/payments/{payment['id']}", headers=other_merchant.headers)
    assert response.status_code == 404
    assert error_of(response)["code"] == "resource_missing"


@pytest.mark.parametrize("action", ["capture", "void", "refunds"])
async def test_another_merchant_cannot_change_a_payment(client, merchant, other_merchant, action):
    payment = await authorized(client, merchant)
    response = await client.post(f"/v1/payments/{payment['id']}/{action}", headers=other_merchant.headers)
    assert response.status_code == 404
    still = (await client.get(f"/v1/payments/{payment['id']}", headers=merchant.headers)).json()
    assert still["status"] == "authorized"


async def test_another_merchants_refund_is_not_found(client, merchant, other_merchant):
    payment = (await create(client, merchant)).json()
    refund = (await client.post(f"/v1/payments/{payment['id']}/refunds", headers=merchant.headers)).json()
    response = await client.get(f"/v1/refunds/{refund['id']}", headers=other_merchant.headers)
    assert response.status_code == 404


async def test_lists_show_only_the_merchants_own_payments(client, merchant, other_merchant):
    mine = (await create(client, merchant)).json()
    theirs = (await create(client, other_merchant)).json()
    listed = (await client.get("/v1/payments?limit=100", headers=other_merchant.headers)).json()
    ids = {p["id"] for p in listed["data"]}
    assert theirs["id"] in ids and mine["id"] not in ids


async def test_another_merchants_payment_cannot_anchor_pagination(client, merchant, other_merchant):
    mine = (await create(client, merchant)).json()
    response = await client.get(f"/v1/payments?starting_after={mine['id']}", headers=other_merchant.headers)
    assert response.status_code == 400
    assert error_of(response)["param"] == "starting_after"


async def test_same_idempotency_key_is_independent_per_merchant(client, merchant, other_merchant):
    first = await create(client, merchant, idempotency_key="shared-key")
    second = await create(client, other_merchant, idempotency_key="shared-key")
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert "Idempotent-Replayed" not in second.headers
