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


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"amount": 1250, "metadata": ' + b'{"a": ' * 5_000 + b'"x"' + b"}" * 5_000 + b"}",
    ],
    ids=["nested-arrays", "nested-metadata"],
)
async def test_deeply_nested_json_is_400(client, merchant, raw):
    response = await _post(client, merchant, raw)
    assert response.status_code == 400, response.text[:200]
    assert error_of(response)["type"] == "invalid_request_error"


async def test_a_huge_string_field_is_refused_without_echoing_it(client, merchant):
    huge = "A" * 200_000
    response = await _post(client, merchant, {**payment_body(), "reference": huge})
    assert response.status_code in (400, 413)
    assert huge[:1000] not in response.text


@pytest.mark.parametrize(
    "number",
    [
        "".join(chr(0xFF10 + int(d)) for d in "4242424242424242"),  # fullwidth digits
        "4242\u200b4242424242424242",
        "\u202e4242424242424242",
        "4242424242424242\ufeff",
    ],
    ids=["fullwidth-digits", "zero-width-space", "rtl-override", "bom"],
)
async def test_unicode_tricks_in_a_card_number_are_400(client, merchant, db, number):
    before = await db.fetchval("SELECT count(*) FROM payments WHERE merchant_id = $1", merchant.id)
    response = await _post(client, merchant, {**payment_body(), "payment_method": card(number=number)})
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == "payment_method.card.number"
    assert await db.fetchval("SELECT count(*) FROM payments WHERE merchant_id = $1", merchant.id) == before


@pytest.mark.parametrize("key", [b"abc\r\nSet-Cookie: x=1", b"k" * 300, b"\x00key", "ключ".encode()])
async def test_hostile_idempotency_keys_are_400(app, merchant, key):
    # Raw ASGI: an HTTP client would refuse to send these headers at all.
    status, body = await _raw_asgi(app, merchant, [(b"idempotency-key", key)], [json.dumps(payment_body()).encode()])
    assert status == 400, body
    assert json.loads(body)["error"]["code"] == "idempotency_key_invalid"
    assert b"Set-Cookie" not in body


async def test_a_body_that_trickles_in_is_408_not_a_held_slot(app, merchant):
    from switch.admission import Admission, admission_middleware

    guarded = admission_middleware(Admission(4), body_timeout_s=0.2)(app)
    status, body = await _raw_asgi(guarded, merchant, [], [b'{"amount": 12'], stall=True)
    assert status == 408, body
    assert json.loads(body)["error"]["code"] == "request_timeout"


async def _raw_asgi(asgi, merchant, extra_headers, chunks, stall=False):
    import asyncio

    headers = [
        (b"host", b"switch.test"),
        (b"content-type", b"application/json"),
        (b"authorization", merchant.headers["Authorization"].encode()),
        *extra_headers,
    ]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/payments", "raw_path": b"/v1/payments", "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 5000), "server": ("switch.test", 80),
    }  # fmt: skip
    pending = list(chunks)

    async def receive():
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or stall}
        if stall:
            await asyncio.sleep(3600)  # the rest of the body never comes
        return {"type": "http.disconnect"}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(asgi(scope, receive, send), timeout=30)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
