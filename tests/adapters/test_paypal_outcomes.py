"""PayPal: a card order is processed by its create call; "already captured" is never technical."""

from __future__ import annotations

import uuid

import aiohttp
import msgspec
import pytest

from adapters.base import CaptureRequest, Credentials, Outcome, RefundRequest, SyncRequest, VoidRequest
from adapters.paypal import PayPalAdapter
from tests.adapters.conftest import CASES, Admin
from tests.adapters.scripted import Answer, scripted_server

PAYPAL = next(c for c in CASES if c.name == "paypal")
TOKEN = msgspec.json.encode({"access_token": "tok", "expires_in": 3600})


def _issue(name: str, issue: str) -> bytes:
    return msgspec.json.encode({"name": name, "details": [{"issue": issue, "description": issue}]})


@pytest.mark.parametrize("capture", [True, False])
async def test_a_card_order_is_processed_in_one_call(simulator, admin: Admin, capture: bool) -> None:
    adapter = PAYPAL.adapter(simulator)
    request = PAYPAL.authorize_request(capture=capture)
    try:
        result = await adapter.authorize(request)
    finally:
        await adapter.close()
    assert (result.outcome, result.amount) == (Outcome.APPROVED, request.amount)
    posts = [path for p, m, path, _ in simulator.sim.requests_log if p == "paypal" and m == "POST"]
    assert [p for p in posts if not p.endswith("/oauth2/token")] == ["/paypal/v2/checkout/orders"]
    (movement,) = simulator.sim.books.for_payment(request.payment_id)
    assert (movement.kind, movement.captured, movement.amount) == ("authorize", capture, request.amount)


async def test_the_simulated_paypal_refuses_to_capture_a_completed_order(simulator, admin: Admin) -> None:
    adapter = PAYPAL.adapter(simulator)
    try:
        result = await adapter.authorize(PAYPAL.authorize_request(capture=True))
        headers = await adapter._auth_header()
    finally:
        await adapter.close()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{simulator.url_for('paypal')}/v2/checkout/orders/{result.provider_reference}/capture",
            json={},
            headers=headers,
        ) as response,
    ):
        body = await response.json()
    assert response.status == 422
    assert body["details"][0]["issue"] == "ORDER_ALREADY_CAPTURED"
    assert len([m for m in simulator.sim.books.movements if m.kind == "authorize"]) == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (422, _issue("UNPROCESSABLE_ENTITY", "ORDER_ALREADY_CAPTURED")),
        (422, _issue("UNPROCESSABLE_ENTITY", "ORDER_ALREADY_AUTHORIZED")),
        (409, _issue("RESOURCE_CONFLICT", "PREVIOUS_REQUEST_IN_PROGRESS")),
        (500, _issue("INTERNAL_SERVER_ERROR", "INTERNAL_SERVICE_ERROR")),
        (
            201,
            b'{"id": "ORDER1", "status": "COMPLETED", "purchase_units": [{"payments": {"captures": '
            b'[{"id": "C1", "status": "COMPLETED", "amount": {"value": "not money", "currency_code": "USD"}}]}}]}',
        ),
    ],
)
async def test_ambiguous_paypal_answers_are_unknown(status: int, body: bytes) -> None:
    async with scripted_server() as (server, _):
        server.answers.extend([Answer(body=TOKEN)] + [Answer(status=status, body=body)] * 3)
        adapter = PayPalAdapter(Credentials(api_key="s", account_id="c", base_url=server.base_url), total_timeout=2.0)
        try:
            result = await adapter.authorize(PAYPAL.authorize_request())
        finally:
            await adapter.close()
    assert result.outcome is Outcome.UNKNOWN, result


async def test_a_token_failure_is_technical_because_the_payment_was_never_sent() -> None:
    async with scripted_server() as (server, _):
        server.answers.extend([Answer(status=503, body=b"{}")] * 3)
        adapter = PayPalAdapter(Credentials(api_key="s", account_id="c", base_url=server.base_url), total_timeout=2.0)
        try:
            result = await adapter.authorize(PAYPAL.authorize_request())
        finally:
            await adapter.close()
    assert result.outcome is Outcome.TECHNICAL
    assert all(path.endswith("/oauth2/token") for _, path, _, _ in server.received)


async def test_sync_resolves_a_lost_capture_void_and_refund(simulator, admin: Admin) -> None:
    adapter = PAYPAL.adapter(simulator)
    try:
        held = PAYPAL.authorize_request(capture=False)
        order = (await adapter.authorize(held)).provider_reference or ""
        base = {"payment_id": held.payment_id, "provider_reference": order, "attempt_id": held.attempt_id}
        before = await adapter.sync(SyncRequest(**base, operation="capture", amount=held.amount))
        await adapter.capture(
            CaptureRequest(
                payment_id=held.payment_id,
                provider_reference=order,
                idempotency_key=uuid.uuid4().hex,
                amount=held.amount,
                currency=held.currency,
            )
        )
        captured = await adapter.sync(SyncRequest(**base, operation="capture", amount=held.amount))
        not_voided = await adapter.sync(SyncRequest(**base, operation="void"))
        await adapter.refund(
            RefundRequest(
                payment_id=held.payment_id,
                refund_id="re_pp_1",
                provider_reference=order,
                idempotency_key=uuid.uuid4().hex,
                amount=100,
                currency=held.currency,
            )
        )
        refunded = await adapter.sync(SyncRequest(**base, operation="refund", operation_id="re_pp_1"))
        missing = await adapter.sync(SyncRequest(**base, operation="refund", operation_id="re_other"))

        other = PAYPAL.authorize_request(capture=False)
        second = (await adapter.authorize(other)).provider_reference or ""
        await adapter.void(
            VoidRequest(
                payment_id=other.payment_id,
                provider_reference=second,
                idempotency_key=uuid.uuid4().hex,
                amount=other.amount,
                currency=other.currency,
            )
        )
        voided = await adapter.sync(
            SyncRequest(payment_id=other.payment_id, provider_reference=second, attempt_id="", operation="void")
        )
    finally:
        await adapter.close()
    assert before.outcome is Outcome.UNKNOWN
    assert (captured.outcome, captured.amount) == (Outcome.APPROVED, held.amount)
    assert not_voided.outcome is Outcome.DECLINED_HARD
    assert (refunded.outcome, refunded.amount) == (Outcome.APPROVED, 100)
    assert missing.outcome is Outcome.UNKNOWN
    assert voided.outcome is Outcome.APPROVED
