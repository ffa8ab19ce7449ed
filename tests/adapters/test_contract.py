"""The adapter contract, written once and run against every adapter through the simulator."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from adapters.base import (
    AuthorizeRequest,
    CaptureRequest,
    Outcome,
    ProviderAdapter,
    ProviderResult,
    RefundRequest,
    SyncRequest,
    VoidRequest,
    WebhookRejected,
)
from tests.adapters.conftest import Admin, ProviderCase, Receiver


def _key() -> str:
    return uuid.uuid4().hex


async def _authorize_to_final(
    case: ProviderCase, adapter: ProviderAdapter, admin: Admin, request: AuthorizeRequest
) -> ProviderResult:
    """Authorize; for an asynchronous method, check the first answer, finish it, and sync.

    The simulator completes the payment with the outcome it drew at creation (approval rate and
    decline mix), as the customer's wallet, the hosted cashier or the debtor's bank would.
    """
    result = await adapter.authorize(request)
    if not case.is_async:
        return result
    assert result.outcome is case.authorize_outcome, result
    assert result.provider_reference
    await admin.complete(case.name, result.provider_reference)
    return await adapter.sync(
        SyncRequest(
            payment_id=request.payment_id,
            provider_reference=result.provider_reference,
            attempt_id=request.attempt_id,
        )
    )


async def test_should_authorize(case: ProviderCase, simulator, admin: Admin) -> None:
    adapter = case.adapter(simulator)
    try:
        request = case.authorize_request()
        result = await _authorize_to_final(case, adapter, admin, request)
    finally:
        await adapter.close()
    assert result.outcome is Outcome.APPROVED, result
    assert result.provider_reference
    assert result.code is None


async def test_should_capture_authorized(case: ProviderCase, simulator, admin: Admin) -> None:
    if not case.supports_manual_capture:
        pytest.skip(f"{case.name} captures at authorization")
    adapter = case.adapter(simulator)
    try:
        request = case.authorize_request(capture=False)
        authorized = await adapter.authorize(request)
        assert authorized.outcome is Outcome.APPROVED, authorized
        captured = await adapter.capture(
            CaptureRequest(
                payment_id=request.payment_id,
                provider_reference=authorized.provider_reference or "",
                idempotency_key=_key(),
                amount=request.amount,
                currency=request.currency,
            )
        )
    finally:
        await adapter.close()
    assert captured.outcome is case.capture_outcome, captured
    assert captured.amount in (None, request.amount)


async def test_should_refund_captured(case: ProviderCase, simulator, admin: Admin) -> None:
    adapter = case.adapter(simulator)
    try:
        request = case.authorize_request(capture=True)
        authorized = await _authorize_to_final(case, adapter, admin, request)
        assert authorized.outcome is Outcome.APPROVED, authorized
        refund_amount = request.amount // 2
        refunded = await adapter.refund(
            RefundRequest(
                payment_id=request.payment_id,
                refund_id=f"re_{uuid.uuid4().hex[:8]}",
                provider_reference=authorized.provider_reference or "",
                idempotency_key=_key(),
                amount=refund_amount,
                currency=request.currency,
            )
        )
    finally:
        await adapter.close()
    assert refunded.outcome is case.refund_outcome, refunded
    assert refunded.amount in (None, refund_amount)


async def test_should_void_authorized(case: ProviderCase, simulator, admin: Admin) -> None:
    if not case.supports_manual_capture:
        pytest.skip(f"{case.name} has no uncaptured authorizations")
    adapter = case.adapter(simulator)
    try:
        request = case.authorize_request(capture=False)
        authorized = await adapter.authorize(request)
        voided = await adapter.void(
            VoidRequest(
                payment_id=request.payment_id,
                provider_reference=authorized.provider_reference or "",
                idempotency_key=_key(),
                amount=request.amount,
                currency=request.currency,
            )
        )
    finally:
        await adapter.close()
    assert voided.outcome in (Outcome.APPROVED, case.capture_outcome), voided


async def test_should_map_every_decline_code(case: ProviderCase, simulator, admin: Admin) -> None:
    adapter = case.adapter(simulator)
    seen: dict[str, tuple[Outcome, str | None]] = {}
    try:
        await admin.knobs(case.name, approval_rate=0.0)
        for code in case.decline_map:
            await admin.knobs(case.name, decline_mix={code: 1.0})
            result = await _authorize_to_final(case, adapter, admin, case.authorize_request())
            seen[code] = (result.outcome, result.code)
    finally:
        await adapter.close()
    expected = {code: (outcome, code) for code, outcome in case.decline_map.items()}
    assert seen == expected


async def test_should_reject_forged_webhook(case: ProviderCase, simulator, admin: Admin, receiver: Receiver) -> None:
    await admin.knobs(case.name, webhook={"url": receiver.url(case.name)})
    adapter = case.adapter(simulator)
    try:
        await adapter.authorize(case.authorize_request())
        deliveries = await receiver.wait_for(case.name)
    finally:
        await adapter.close()
    headers, body, _ = deliveries[0]
    events = adapter.parse_webhook(headers, body)  # the genuine one is accepted
    assert events and events[0].event_id
    forged = body.replace(b"true", b"fals").replace(b"1250", b"9999").replace(b"10.99", b"99.99")
    assert forged != body
    if case.signs_body:
        with pytest.raises(WebhookRejected):
            adapter.parse_webhook(headers, forged)
    credential = {h.lower() for h in case.credential_headers}
    tampered = {k: (v[:-2] + "xx" if k.lower() in credential else v) for k, v in headers.items()}
    if tampered != headers:
        with pytest.raises(WebhookRejected):
            adapter.parse_webhook(tampered, body)
    stripped = {k: v for k, v in headers.items() if "sig" not in k.lower() and k.lower() not in credential}
    if stripped != headers:
        with pytest.raises(WebhookRejected):
            adapter.parse_webhook(stripped, body)


async def test_should_time_out_cleanly(case: ProviderCase, simulator, admin: Admin) -> None:
    adapter = case.adapter(simulator, total_timeout=0.4)
    request = case.authorize_request()
    try:
        # Warm up (pooled connection, access token) so that the payment call itself hangs.
        assert (await adapter.authorize(case.authorize_request())).outcome is case.authorize_outcome
        await admin.knobs(case.name, timeout_rate=1.0, timeout_ms=1500)
        started = time.monotonic()
        result = await adapter.authorize(request)
        elapsed = time.monotonic() - started
        assert result.outcome is Outcome.UNKNOWN, result
        assert elapsed < 1.2
        if case.supports_sync and not (case.sync_by_attempt or result.provider_reference):
            await admin.knobs(case.name, timeout_rate=0.0)
            synced = await adapter.sync(
                SyncRequest(payment_id=request.payment_id, provider_reference=None, attempt_id=request.attempt_id)
            )
            # Without a reference the provider cannot be asked: the outcome stays unknown.
            assert synced.outcome is Outcome.UNKNOWN
        elif case.supports_sync:
            # The simulator processed the request before hanging: sync finds the authorization.
            await admin.knobs(case.name, timeout_rate=0.0)
            synced = await adapter.sync(
                SyncRequest(
                    payment_id=request.payment_id,
                    provider_reference=result.provider_reference,
                    attempt_id=request.attempt_id,
                )
            )
            assert synced.outcome is Outcome.APPROVED, synced
    finally:
        await adapter.close()


async def test_duplicate_webhooks_carry_the_same_event_id(
    case: ProviderCase, simulator, admin: Admin, receiver: Receiver
) -> None:
    await admin.knobs(case.name, webhook={"url": receiver.url(case.name), "duplicates": 2})
    adapter = case.adapter(simulator)
    try:
        await adapter.authorize(case.authorize_request())
        deliveries = await receiver.wait_for(case.name, count=3)
    finally:
        await adapter.close()
    ids = {adapter.parse_webhook(h, b)[0].event_id for h, b, _ in deliveries[:3]}
    assert len(ids) == 1


async def test_books_show_one_authorization_and_one_refund(case: ProviderCase, simulator, admin: Admin) -> None:
    adapter = case.adapter(simulator)
    try:
        request = case.authorize_request(capture=True)
        authorized = await _authorize_to_final(case, adapter, admin, request)
        assert authorized.outcome is Outcome.APPROVED, authorized
        refunded = await adapter.refund(
            RefundRequest(
                payment_id=request.payment_id,
                refund_id=f"re_{uuid.uuid4().hex[:8]}",
                provider_reference=authorized.provider_reference or "",
                idempotency_key=_key(),
                amount=request.amount // 2,
                currency=request.currency,
            )
        )
        assert refunded.outcome is case.refund_outcome, refunded
        # A pending refund (a SEPA credit transfer) moves money when it settles.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not any(m.kind == "refund" for m in simulator.sim.books.movements):
            await asyncio.sleep(0.02)
    finally:
        await adapter.close()
    movements = [m for m in simulator.sim.books.movements if m.provider == case.name]
    assert sorted(m.kind for m in movements) == ["authorize", "refund"], movements
    sale = next(m for m in movements if m.kind == "authorize")
    refund = next(m for m in movements if m.kind == "refund")
    assert (sale.amount, sale.currency, sale.captured) == (request.amount, request.currency, True)
    assert (refund.amount, refund.currency) == (request.amount // 2, request.currency)
    # Where the provider carries the switch's payment id, the books name it.
    assert {m.payment_id for m in movements} <= {request.payment_id, None}
