"""Stripe under the outcome rule: ambiguous answers are unknown, and sync resolves every operation."""

from __future__ import annotations

import time
import uuid

import msgspec
import pytest

from adapters.base import CaptureRequest, Credentials, Outcome, RefundRequest, SyncRequest, VoidRequest
from adapters.stripe import StripeAdapter
from tests.adapters.conftest import CASES, Admin
from tests.adapters.scripted import Answer, scripted_server

STRIPE = next(c for c in CASES if c.name == "stripe")


def _error(type_: str, code: str | None = None, message: str = "x") -> bytes:
    return msgspec.json.encode({"error": {"type": type_, "code": code, "message": message}})


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (500, _error("api_error"), None),
        (502, b"<html>bad gateway</html>", None),
        (503, _error("api_error"), None),
        (409, _error("idempotency_error", "idempotency_key_in_use"), "idempotency_key_in_use"),
        (400, _error("idempotency_error", None, "Keys can only be used with the same parameters"), "idempotency_error"),
        (200, b'{"id": "pi_1", "status": "succeeded", "amount": "not a number"}', None),
        (200, b"not json at all", None),
    ],
)
async def test_ambiguous_stripe_answers_are_unknown(status: int, body: bytes, code: str | None) -> None:
    async with scripted_server() as (server, _):
        # Enough copies for the transport's retries of 502/503.
        server.answers.extend([Answer(status=status, body=body)] * 3)
        adapter = StripeAdapter(Credentials(api_key="sk_test_x", base_url=server.base_url), total_timeout=2.0)
        try:
            result = await adapter.authorize(STRIPE.authorize_request())
        finally:
            await adapter.close()
    assert result.outcome is Outcome.UNKNOWN, result
    assert result.code == code


async def test_a_refusal_of_our_request_is_technical() -> None:
    async with scripted_server() as (server, _):
        server.answers.append(Answer(status=400, body=_error("invalid_request_error", "parameter_missing")))
        adapter = StripeAdapter(Credentials(api_key="sk_test_x", base_url=server.base_url), total_timeout=2.0)
        try:
            result = await adapter.authorize(STRIPE.authorize_request())
        finally:
            await adapter.close()
    assert (result.outcome, result.code) == (Outcome.TECHNICAL, "parameter_missing")


async def test_the_idempotency_key_sent_fits_stripes_limit(simulator, admin: Admin) -> None:
    adapter = STRIPE.adapter(simulator)
    request = msgspec.structs.replace(STRIPE.authorize_request(), idempotency_key="mer_1:" + "k" * 400)
    try:
        result = await adapter.authorize(request)
    finally:
        await adapter.close()
    assert result.outcome is Outcome.APPROVED
    (movement,) = simulator.sim.books.movements
    assert movement.idempotency_key is not None and len(movement.idempotency_key) <= 255


def _lost(request, **fields) -> SyncRequest:  # type: ignore[no-untyped-def]
    return SyncRequest(payment_id=request.payment_id, provider_reference=None, attempt_id=request.attempt_id, **fields)


async def test_search_finding_nothing_is_unknown_inside_the_window(simulator, admin: Admin) -> None:
    adapter = STRIPE.adapter(simulator)
    request = STRIPE.authorize_request()
    try:
        young = await adapter.sync(_lost(request, attempted_at=time.time() - 5))
        undated = await adapter.sync(_lost(request))
    finally:
        await adapter.close()
    assert (young.outcome, young.code) == (Outcome.UNKNOWN, "not_found_yet")
    assert (undated.outcome, undated.code) == (Outcome.UNKNOWN, "not_found_yet")


async def test_search_finding_nothing_after_the_window_is_technical(simulator, admin: Admin) -> None:
    adapter = STRIPE.adapter(simulator)
    request = STRIPE.authorize_request()
    try:
        old = await adapter.sync(_lost(request, attempted_at=time.time() - 3601))
    finally:
        await adapter.close()
    assert (old.outcome, old.code) == (Outcome.TECHNICAL, "not_found")


async def test_a_lagging_search_does_not_turn_an_authorization_into_a_technical(simulator, admin: Admin) -> None:
    await admin.knobs("stripe", search_lag_ms=60_000)
    adapter = STRIPE.adapter(simulator)
    request = STRIPE.authorize_request()
    try:
        approved = await adapter.authorize(request)
        synced = await adapter.sync(_lost(request, attempted_at=time.time()))
        await admin.knobs("stripe", search_lag_ms=0)
        visible = await adapter.sync(_lost(request, attempted_at=time.time()))
    finally:
        await adapter.close()
    assert approved.outcome is Outcome.APPROVED
    assert (synced.outcome, synced.code) == (Outcome.UNKNOWN, "not_found_yet")
    assert (visible.outcome, visible.provider_reference) == (Outcome.APPROVED, approved.provider_reference)


async def test_search_down_is_unknown_even_long_after_the_attempt(simulator, admin: Admin) -> None:
    await admin.knobs("stripe", search_down=True)
    adapter = STRIPE.adapter(simulator)
    request = STRIPE.authorize_request()
    try:
        result = await adapter.sync(_lost(request, attempted_at=time.time() - 7200))
    finally:
        await adapter.close()
    assert (result.outcome, result.raw_status) == (Outcome.UNKNOWN, "http_500")


async def test_a_search_that_fails_is_unknown(simulator, admin: Admin) -> None:
    await admin.burst("stripe", 500, 1)
    adapter = STRIPE.adapter(simulator)
    request = STRIPE.authorize_request()
    try:
        result = await adapter.sync(_lost(request, attempted_at=time.time() - 7200))
    finally:
        await adapter.close()
    assert result.outcome is Outcome.UNKNOWN


async def test_a_search_that_times_out_is_unknown(simulator, admin: Admin) -> None:
    await admin.knobs("stripe", latency={"dist": "fixed", "ms": 800})
    adapter = STRIPE.adapter(simulator, total_timeout=0.2)
    request = STRIPE.authorize_request()
    try:
        result = await adapter.sync(_lost(request, attempted_at=time.time() - 7200))
    finally:
        await adapter.close()
    assert result.outcome is Outcome.UNKNOWN


async def test_sync_resolves_a_lost_capture_void_and_refund(simulator, admin: Admin) -> None:
    adapter = STRIPE.adapter(simulator)
    try:
        held = STRIPE.authorize_request(capture=False)
        first = await adapter.authorize(held)
        reference = first.provider_reference or ""
        base = {"payment_id": held.payment_id, "provider_reference": reference, "attempt_id": held.attempt_id}
        before = await adapter.sync(SyncRequest(**base, operation="capture", operation_id="cap_1", amount=held.amount))
        await adapter.capture(
            CaptureRequest(
                payment_id=held.payment_id,
                provider_reference=reference,
                idempotency_key=uuid.uuid4().hex,
                amount=held.amount,
                currency=held.currency,
            )
        )
        captured = await adapter.sync(SyncRequest(**base, operation="capture", operation_id="cap_1"))
        not_voided = await adapter.sync(SyncRequest(**base, operation="void", operation_id="void_1"))
        refund_missing = await adapter.sync(
            SyncRequest(**base, operation="refund", operation_id="re_x", attempted_at=time.time())
        )
        await adapter.refund(
            RefundRequest(
                payment_id=held.payment_id,
                refund_id="re_x",
                provider_reference=reference,
                idempotency_key=uuid.uuid4().hex,
                amount=300,
                currency=held.currency,
            )
        )
        refunded = await adapter.sync(SyncRequest(**base, operation="refund", operation_id="re_x"))

        other = STRIPE.authorize_request(capture=False)
        second = await adapter.authorize(other)
        await adapter.void(
            VoidRequest(
                payment_id=other.payment_id,
                provider_reference=second.provider_reference or "",
                idempotency_key=uuid.uuid4().hex,
                amount=other.amount,
                currency=other.currency,
            )
        )
        voided = await adapter.sync(
            SyncRequest(
                payment_id=other.payment_id,
                provider_reference=second.provider_reference,
                attempt_id=other.attempt_id,
                operation="void",
            )
        )
    finally:
        await adapter.close()
    assert before.outcome is Outcome.UNKNOWN  # still requires_capture: replay the capture
    assert (captured.outcome, captured.amount) == (Outcome.APPROVED, held.amount)
    assert not_voided.outcome is Outcome.DECLINED_HARD  # a captured intent can no longer be voided
    assert (refund_missing.outcome, refund_missing.code) == (Outcome.UNKNOWN, "not_found_yet")
    assert (refunded.outcome, refunded.amount) == (Outcome.APPROVED, 300)
    assert refunded.provider_reference and refunded.provider_reference.startswith("re_")
    assert voided.outcome is Outcome.APPROVED


async def test_an_idempotent_replay_moves_money_once(simulator, admin: Admin) -> None:
    adapter = STRIPE.adapter(simulator)
    request = STRIPE.authorize_request()
    try:
        first = await adapter.authorize(request)
        again = await adapter.authorize(request)
    finally:
        await adapter.close()
    assert first.provider_reference == again.provider_reference
    assert [m.kind for m in simulator.sim.books.for_payment(request.payment_id)] == ["authorize"]
