"""Request helpers of the reliability suite."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable

import httpx

from tests.api.helpers import card, fresh_card_number, payment_body
from tests.conftest import MerchantKey

_BODIES: dict[str, dict] = {}


def body_for(key: str) -> dict:
    """The payment body of ``key``: the same body for every retry of that key."""
    if key not in _BODIES:
        _BODIES[key] = payment_body(capture="manual", payment_method=card(fresh_card_number()))
    return _BODIES[key]


async def pay(http: httpx.AsyncClient, merchant: MerchantKey, key: str | None = None) -> httpx.Response:
    """POST /v1/payments (manual capture, a card of its own) with an Idempotency-Key."""
    key = key or secrets.token_hex(8)
    headers = {**merchant.headers, "Idempotency-Key": key}
    return await http.post("/v1/payments", json=body_for(key), headers=headers)


def assert_unavailable(response: httpx.Response) -> None:
    """A 503 ``api_error`` error object with ``Retry-After``, as every fault must answer."""
    assert response.status_code == 503, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["type"] == "api_error", error
    assert int(response.headers["retry-after"]) >= 1


async def timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    """The response and how long it took, in seconds."""
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {within_s} s")
