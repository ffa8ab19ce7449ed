"""Malformed and hostile requests get a precise 4xx error object, never a 500 or a partial write."""

from __future__ import annotations

import json

import pytest

from tests.api.helpers import authorized, card, error_of, payment_body


async def _post(client, merchant, body, path="/v1/payments"):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**merchant.headers, "Content-Type": "application/json"}
    return await client.post(path, content=content, headers=headers)


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({**payment_body(), "amount": "1250"}, "parameter_invalid", "amount"),
        ({**payment_body(), "amount": 12.5}, "parameter_invalid", "amount"),
        ({**payment_body(), "amount": True}, "parameter_invalid", "amount"),
        ({**payment_body(), "amount": -5}, "parameter_invalid", "amount"),
        ({**payment_body(), "amount": 0}, "parameter_invalid", "amount"),
        ({**payment_body(), "amount": 10**15 + 1}, "parameter_invalid", "amount"),
        ({**payment_body(), "amount": 10**40}, "parameter_invalid", "amount"),
        ({**payment_body(), "currency": "eur"}, "parameter_invalid", "currency"),
        ({**payment_body(), "currency": "ZZZ"}, "invalid_currency", "currency"),
        ({**payment_body(), "currency": "XDR"}, "invalid_currency", "currency"),
        ({**payment_body(), "surprise": 1}, "parameter_unknown", "surprise"),
        ({**payment_body(), "capture": "sometimes"}, "parameter_invalid", "capture"),
        ({"currency": "EUR", "payment_method": card()}, "parameter_missing", "amount"),
        ({**payment_body(), "payment_method": {"type": "crypto"}}, "parameter_invalid", "payment_method.type"),
        (
            {**payment_body(), "payment_method": card(number="4242424242424241")},
            "invalid_number",
            "payment_method.card.number",
        ),
        (
            {**payment_body(), "payment_method": card(number="4242-4242-4242")},
            "invalid_number",
            "payment_method.card.number",
        ),
        (
            {**payment_body(), "payment_method": card(number="42424242424242424242424242")},
            "parameter_invalid",
            "payment_method.card.number",
        ),
        (
            {**payment_body(), "payment_method": card(exp_month=13)},
            "parameter_invalid",
            "payment_method.card.exp_month",
        ),
        ({**payment_body(), "payment_method": card(exp_year=2020)}, "expired_card", "payment_method.card.exp_year"),
        ({**payment_body(), "payment_method": card(cvc="12a")}, "parameter_invalid", "payment_method.card.cvc"),
        (
            {**payment_body(), "payment_method": {**card(), "card": {**card()["card"], "pin": "1234"}}},
            "parameter_unknown",
            "payment_method.card.pin",
        ),
        ({**payment_body(), "metadata": {"k": 1}}, "parameter_invalid", "metadata"),
        ({**payment_body(), "customer": {"country": "Germany"}}, "parameter_invalid", "customer.country"),
        ({**payment_body(), "reference": "order\u0000-1"}, "parameter_invalid", "reference"),
        ({**payment_body(), "metadata": {"k\u0000": "v"}}, "parameter_invalid", "metadata"),
        ({**payment_body(), "customer": {"email": "a\u0000@b.c"}}, "parameter_invalid", "customer.email"),
        ({**payment_body(), "customer": {"ip": "1.2.3.4; DROP"}}, "parameter_invalid", "customer.ip"),
        ([payment_body()], "parameter_invalid", None),
        ("just a string", "parameter_invalid", None),
    ],
)
async def test_invalid_payment_bodies_are_400_with_the_offending_param(client, merchant, db, body, code, param):
    before = await db.fetchval("SELECT count(*) FROM payments WHERE merchant_id = $1", merchant.id)
    response = await _post(client, merchant, body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert error["param"] == param
    after = await db.fetchval("SELECT count(*) FROM payments WHERE merchant_id = $1", merchant.id)
    assert after == before


@pytest.mark.parametrize("raw", [b"{", b'{"amount": 1,}', b"\xff\xfe", b"nul", b'{"amount": 1e999999}'])
async def test_invalid_json_is_400(client, merchant, raw):
    response = await _post(client, merchant, raw)
    assert response.status_code == 400
    assert error_of(response)["code"] in ("invalid_json", "parameter_invalid")


async def test_empty_body_is_400(client, merchant):
    response = await _post(client, merchant, b"")
    assert response.status_code == 400
    assert error_of(response)["code"] == "parameter_missing"


async def test_a_one_megabyte_body_is_refused(client, merchant):
    body = payment_body(metadata={"blob": "x" * 1_048_576})
    response = await _post(client, merchant, body)
    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"


async def test_card_number_is_not_echoed_in_errors(client, merchant):
    number = "4242424242424241"
    response = await _post(client, merchant, {**payment_body(), "payment_method": card(number=number)})
    assert number not in response.text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"amount": -1}, "parameter_invalid"),
        ({"amount": "all"}, "parameter_invalid"),
        ({"amount": 100, "extra": True}, "parameter_unknown"),
        ({"final": "yes"}, "parameter_invalid"),
    ],
)
async def test_invalid_capture_bodies_are_400(client, merchant, body, code):
    payment = await authorized(client, merchant)
    response = await _post(client, merchant, body, f"/v1/payments/{payment['id']}/capture")
    assert response.status_code == 400
    assert error_of(response)["code"] == code


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=abc", "limit=-1", f"starting_after={'x' * 300}", "starting_after=pay_nope"]
)
async def test_invalid_list_queries_are_400(client, merchant, query):
    response = await client.get(f"/v1/payments?{query}", headers=merchant.headers)
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", ["/v1/payments/pay_missing", "/v1/refunds/re_missing", "/v1/payments/%00%ff"])
async def test_unknown_ids_are_404(client, merchant, path):
    response = await client.get(path, headers=merchant.headers)
    assert response.status_code == 404
    assert error_of(response)["code"] == "resource_missing"


async def test_unknown_routes_and_methods_get_error_objects(client, merchant):
    missing = await client.get("/v1/nothing-here", headers=merchant.headers)
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "resource_missing"
    wrong_method = await client.delete("/v1/payments", headers=merchant.headers)
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["code"] == "method_not_allowed"
