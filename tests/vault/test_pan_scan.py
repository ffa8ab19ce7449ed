"""After a whole lifecycle at DEBUG, no card number or CVC exists in the clear anywhere.

Scanned: every log record (formatted), every response body and header, ``/metrics``, and every
text, JSON, array and bytea column of every table of the database.
"""

from __future__ import annotations

import logging
import re

from tests.api.helpers import error_of

PANS = ("4242424242424242", "5555555555554444", "378282246310005", "4000000000000002", "4000000000009995")
CVCS = ("7319", "4826", "913")
_CVC_SHAPE = re.compile(r"(?<![\w.])(" + "|".join(CVCS) + r")(?![\w.])")


def _card(number: str, cvc: str) -> dict:
    return {"type": "card", "card": {"number": number, "exp_month": 11, "exp_year": 2032, "cvc": cvc,
                                     "holder_name": "Grace Hopper"}}  # fmt: skip


def _leaks(text: str) -> list[str]:
    found = [pan for pan in PANS if pan in text]
    found += [match.group(0) for match in _CVC_SHAPE.finditer(text) if "cvc" in text.lower()]
    return found


async def _lifecycle(client, merchant) -> list[str]:
    """Every kind of call the switch answers, with card data in good and in bad places; returns the bodies."""
    seen: list[str] = []
    headers = merchant.headers

    async def call(method: str, path: str, **kwargs) -> dict | None:
        response = await client.request(method, path, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)
        seen.append(response.text)
        seen.append(repr(dict(response.headers)))
        try:
            return response.json()
        except ValueError:
            return None

    manual = await call("POST", "/v1/payments", json={"amount": 5000, "currency": "EUR", "capture": "manual",
                                                      "payment_method": _card(PANS[0], CVCS[0])})  # fmt: skip
    assert manual["status"] == "authorized"
    await call("POST", f"/v1/payments/{manual['id']}/capture", json={"amount": 2000})
    await call("POST", f"/v1/payments/{manual['id']}/capture", json={})
    await call("POST", f"/v1/payments/{manual['id']}/refunds", json={"amount": 700})
    voided = await call("POST", "/v1/payments", json={"amount": 300, "currency": "USD", "capture": "manual",
                                                      "payment_method": _card(PANS[1], CVCS[1])})  # fmt: skip
    await call("POST", f"/v1/payments/{voided['id']}/void", json={})
    amex = await call("POST", "/v1/payments", json={"amount": 999, "currency": "EUR",
                                                    "payment_method": _card(PANS[2], CVCS[2])})  # fmt: skip
    token = amex["payment_method"]["card"]["token"]
    await call(
        "POST",
        "/v1/payments",
        json={
            "amount": 111,
            "currency": "EUR",
            "payment_method": {"type": "card_token", "card_token": {"token": token}},
        },
    )
    for declined in PANS[3:]:
        await call("POST", "/v1/payments", json={"amount": 400, "currency": "EUR",
                                                 "payment_method": _card(declined, CVCS[0])})  # fmt: skip
    # Card data where it does not belong: each answered 400 naming the field, never echoing the number.
    bad_bodies = [
        {"amount": PANS[0], "currency": "EUR", "payment_method": _card(PANS[0], CVCS[0])},
        {"amount": 100, "currency": "EUR", "payment_method": _card(PANS[0] + "1", CVCS[0])},
        {"amount": 100, "currency": "EUR", "payment_method": _card(PANS[0], "12345")},
        {"amount": 100, "currency": "EUR", "payment_method": _card(PANS[0], CVCS[0]), PANS[1]: 1},
        {"amount": 100, "currency": "EUR", "customer": {"email": PANS[1]}, "payment_method": _card(PANS[0], CVCS[0])},
        {"amount": 100, "currency": "EUR", "reference": PANS[1], "payment_method": _card(PANS[0], CVCS[0])},
        {"amount": 100, "currency": "EUR", "metadata": {"note": f"card {PANS[1]}"},
         "payment_method": _card(PANS[0], CVCS[0])},
        {"amount": 100, "currency": "EUR", "payment_method": {"type": "card_token", "card_token": {"token": PANS[0]}}},
    ]  # fmt: skip
    for body in bad_bodies:
        error = await call("POST", "/v1/payments", json=body)
        assert error is not None and "error" in error, body
    await call("POST", "/v1/payments", content=f'{{"amount": 1, "number": "{PANS[0]}"'.encode(),
               headers={"Content-Type": "application/json"})  # fmt: skip
    await call("GET", f"/v1/payments/{PANS[0]}")
    await call("GET", f"/v1/payments?starting_after={PANS[0]}")
    await call("GET", "/v1/payments?limit=100")
    await call("GET", "/v1/events?limit=100")
    await call("POST", "/v1/webhook_endpoints", json={"url": f"https://x.example/{PANS[0]}", "events": ["*"],
                                                      "description": f"pan {PANS[1]}"})  # fmt: skip
    return seen


async def _database_leaks(db) -> list[str]:
    columns = await db.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' AND data_type IN"
        " ('text', 'character varying', 'json', 'jsonb', 'bytea', 'ARRAY', 'character')"
    )
    assert {row["table_name"] for row in columns} >= {
        "payments",
        "payment_attempts",
        "vault_cards",
        "events",
        "idempotency_keys",
        "merchant_keys",
        "webhook_endpoints",
    }
    leaks = []
    for row in columns:
        table, column = row["table_name"], row["column_name"]
        for pan in PANS:
            if row["data_type"] == "bytea":
                sql = f'SELECT count(*) FROM "{table}" WHERE position(convert_to($1, \'UTF8\') in "{column}") > 0'
            else:
                sql = f"SELECT count(*) FROM \"{table}\" WHERE \"{column}\"::text LIKE '%' || $1 || '%'"
            if await db.fetchval(sql, pan):
                leaks.append(f"{table}.{column}: {pan}")
        if row["data_type"] != "bytea":
            # A stored CVC field; a decline code such as ``incorrect_cvc`` (other tests of the
            # session) is not card data. (The CVC digits alone would match unrelated amounts.)
            sql = f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE \'%"cvc"%\''
            if await db.fetchval(sql):
                leaks.append(f"{table}.{column}: cvc field")

    return leaks


async def test_no_card_number_or_cvc_in_logs_answers_metrics_or_any_column(client, merchant, db, caplog):
    root = logging.getLogger()
    previous = root.level
    caplog.set_level(logging.DEBUG)
    try:
        bodies = await _lifecycle(client, merchant)
        metrics = await client.get("/metrics")
        logged = [record.getMessage() for record in caplog.records] + [caplog.text]
    finally:
        root.setLevel(previous)
    assert metrics.status_code == 200 and "switch_payments_total" in metrics.text
    assert caplog.records, "DEBUG logging must have produced records to scan"
    problems = {
        "logs": [leak for text in logged for leak in _leaks(text)],
        "answers": [(leak, text[:300]) for text in bodies for leak in _leaks(text)],
        "metrics": _leaks(metrics.text),
        "database": await _database_leaks(db),
    }
    assert problems == {"logs": [], "answers": [], "metrics": [], "database": []}


async def test_card_numbers_in_free_text_are_refused_naming_the_field(client, merchant):
    body = {"amount": 100, "currency": "EUR", "reference": f"order {PANS[1]}", "payment_method": _card(PANS[0], "123")}
    response = await client.post("/v1/payments", json=body, headers=merchant.headers)
    assert response.status_code == 400
    assert error_of(response)["param"] == "reference"
    assert error_of(response)["code"] == "card_number_in_text"
    assert PANS[1] not in response.text


def test_logged_card_numbers_are_masked_by_the_installed_filter(caplog):
    logger = logging.getLogger("switch.test.pan")
    with caplog.at_level(logging.DEBUG):
        logger.debug("card %s cvc ok", PANS[0])
        logger.info("spaced 4242 4242 4242 4242 and dashed 5555-5555-5555-4444")
        logger.warning("extra", extra={"card_number": PANS[2]})
        try:
            raise ValueError(f"bad card {PANS[1]}")
        except ValueError:
            logger.exception("failed")
    text = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    assert not [pan for pan in PANS if pan in text]
    assert "************4242" in text and "**** **** **** 4242" in text
