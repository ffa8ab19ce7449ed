"""Request builders shared by the API tests."""

from __future__ import annotations

import secrets
from typing import Any

APPROVE = "4242424242424242"


def fresh_card_number(prefix: str = "424242") -> str:
    """A Luhn-valid number the sandbox approves, new on every call.

    Risk counts payments per card (more than 3 of one card in a minute is card testing), so tests
    that pay several times use a new card each time unless reusing one is the point.
    """
    digits = [int(d) for d in prefix] + [secrets.randbelow(10) for _ in range(15 - len(prefix))]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 0:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def card(number: str = APPROVE, **overrides: Any) -> dict[str, Any]:
    """A card payment method."""
    data = {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123", "holder_name": "Ada Lovelace"}
    data.update(overrides)
    return {"type": "card", "card": data}


def payment_body(amount: int = 1250, currency: str = "EUR", number: str = APPROVE, **extra: Any) -> dict[str, Any]:
    """A payment creation body."""
    body: dict[str, Any] = {"amount": amount, "currency": currency, "payment_method": card(number)}
    body.update(extra)
    return body


async def create(client, merchant, **kwargs: Any):
    """POST /v1/payments and return the response."""
    headers = dict(merchant.headers)
    if "idempotency_key" in kwargs:
        headers["Idempotency-Key"] = kwargs.pop("idempotency_key")
    return await client.post("/v1/payments", json=payment_body(**kwargs), headers=headers)


async def authorized(client, merchant, amount: int = 1000, currency: str = "EUR") -> dict[str, Any]:
    """An authorized, uncaptured payment."""
    response = await create(client, merchant, amount=amount, currency=currency, capture="manual")
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "authorized"
    return response.json()


def error_of(response) -> dict[str, Any]:
    """The error object of a response, after checking its shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"type", "code", "message", "param"}, body
    return body["error"]
