"""LianLian Global checkout sessions: LLPAY-Signature, redirect, notifications, refund, replay."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import msgspec
import pytest

from adapters.base import AuthorizeRequest, Credentials, Outcome, RefundRequest, SyncRequest, WebhookRejected
from adapters.lianlian import LianLianAdapter
from adapters.lianlian import transformers as t
from tests.adapters.conftest import Admin, Receiver, authorize_request
from tests.adapters.extra_cases import LIANLIAN_KEY


def _adapter(simulator, key: str = LIANLIAN_KEY) -> LianLianAdapter:
    return LianLianAdapter(
        Credentials(
            api_key="ll-api-token",
            webhook_secret=key,
            account_id="LL-MERCHANT-1",
            base_url=simulator.url_for("lianlian"),
        ),
        total_timeout=5.0,
    )


def _request(amount: int = 8_800, currency: str = "USD") -> AuthorizeRequest:
    return authorize_request(
        amount=amount,
        currency=currency,
        method_type="hosted_checkout",
        customer_email="ada@example.com",
        return_url="https://shop.example/return",
    )


def test_signing_content_is_sorted_pairs_with_canonical_nested_values() -> None:
    body = {"order_amount": "88.00", "customer": {"name": "Ada", "email": "a@x"}, "empty": "", "flag": True}
    content = t.signing_content(body, 1_700_000_000, path="/accept_payments/checkout/sessions")
    assert content == (
        'customer={"email":"a@x","name":"Ada"}&flag=true&order_amount=88.00'
        "&request_path=/accept_payments/checkout/sessions&timestamp=1700000000"
    )
    header = t.signature_header("k", body, path="/p", timestamp=1_700_000_000)
    expected = hmac.new(b"k", t.signing_content(body, 1_700_000_000, "/p").encode(), hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


async def test_session_redirects_then_pays_with_a_signed_notification(
    simulator, admin: Admin, receiver: Receiver
) -> None:
    await admin.knobs("lianlian", auto_complete=False, webhook={"url": receiver.url("lianlian")})
    adapter = _adapter(simulator)
    request = _request()
    try:
        result = await adapter.authorize(request)
        assert result.outcome is Outcome.REQUIRES_ACTION
        assert result.next_action is not None and result.next_action["url"].startswith("https://checkout-sandbox")
        assert (result.raw_status, result.amount, result.provider_reference) == ("WP", 8_800, request.attempt_id)
        assert msgspec.json.decode(simulator.sim.requests_log[-1][3])["order_amount"] == "88.00"
        await admin.complete("lianlian", request.attempt_id, status="succeeded")
        deliveries = await receiver.wait_for("lianlian")
        synced = await adapter.sync(SyncRequest(payment_id="p", provider_reference=None, attempt_id=request.attempt_id))
    finally:
        await adapter.close()
    event = adapter.parse_webhook(deliveries[0][0], deliveries[0][1])[0]
    assert (event.outcome, event.raw_status, event.amount, event.currency) == (Outcome.APPROVED, "PS", 8_800, "USD")
    assert (event.provider_reference, event.payment_id) == (request.attempt_id, request.payment_id)
    assert synced.outcome is Outcome.APPROVED


async def test_failed_payment_is_classified_by_its_issuer_code(simulator, admin: Admin, receiver: Receiver) -> None:
    await admin.knobs("lianlian", auto_complete=False, webhook={"url": receiver.url("lianlian")})
    adapter = _adapter(simulator)
    request = _request()
    try:
        await adapter.authorize(request)
        await admin.complete("lianlian", request.attempt_id, status="failed", code="51")
        deliveries = await receiver.wait_for("lianlian")
    finally:
        await adapter.close()
    event = adapter.parse_webhook(deliveries[0][0], deliveries[0][1])[0]
    assert (event.outcome, event.code, event.raw_status) == (Outcome.DECLINED_SOFT, "51", "PF")


async def test_forged_stale_and_duplicate_notifications(simulator, admin: Admin, receiver: Receiver) -> None:
    await admin.knobs("lianlian", webhook={"url": receiver.url("lianlian"), "duplicates": 2})
    adapter = _adapter(simulator)
    try:
        await adapter.authorize(_request())
        deliveries = await receiver.wait_for("lianlian", count=3)
    finally:
        await adapter.close()
    events = [adapter.parse_webhook(h, b)[0] for h, b, _ in deliveries[:3]]
    assert len({e.event_id for e in events}) == 1
    headers, body, _ = deliveries[0]
    with pytest.raises(WebhookRejected) as info:
        adapter.parse_webhook(headers, body.replace(b'"PS"', b'"PF"'))
    assert info.value.reason == "bad_signature"
    raw = msgspec.json.decode(body)
    stale = {t.SIGNATURE_HEADER: t.signature_header(LIANLIAN_KEY, raw, timestamp=1_000_000)}
    with pytest.raises(WebhookRejected) as info:
        adapter.parse_webhook(stale, body)
    assert info.value.reason == "stale"
    with pytest.raises(WebhookRejected):
        _adapter(simulator, key="another-key").parse_webhook(headers, body)
    with pytest.raises(WebhookRejected):
        adapter.parse_webhook({}, body)


async def test_unsigned_requests_are_refused_and_foreign_answers_distrusted(simulator, admin: Admin) -> None:
    await admin.knobs("lianlian", webhook_secret="the-real-key")
    adapter = _adapter(simulator)
    try:
        result = await adapter.authorize(_request())
    finally:
        await adapter.close()
    # The simulator refused our signature (401) and signed its refusal with a key we do not hold.
    assert (result.outcome, result.raw_status) == (Outcome.UNKNOWN, "bad_response_signature")
    assert simulator.sim.providers["lianlian"].payments == {}


async def test_refund_over_refund_and_signed_idempotent_replay(simulator, admin: Admin) -> None:
    adapter = _adapter(simulator)
    request = _request()
    try:
        await adapter.authorize(request)
        replay = await adapter.authorize(request)  # same Idempotency-Key: the stored, signed answer

        def refund(amount: int) -> RefundRequest:
            return RefundRequest(
                payment_id=request.payment_id,
                refund_id=f"re_{uuid.uuid4().hex[:8]}",
                provider_reference=request.attempt_id,
                idempotency_key=uuid.uuid4().hex,
                amount=amount,
                currency="USD",
            )

        partial = await adapter.refund(refund(800))
        too_much = await adapter.refund(refund(8_800))
    finally:
        await adapter.close()
    assert (replay.outcome, replay.raw_status) == (Outcome.REQUIRES_ACTION, "WP")
    assert simulator.sim.stats["lianlian"]["idempotent_replays"] == 1
    assert (partial.outcome, partial.amount, partial.raw_status) == (Outcome.APPROVED, 800, "RS")
    assert too_much.outcome is Outcome.TECHNICAL and too_much.code == "422"


def test_failure_map_follows_the_visa_categories() -> None:
    cases = {"05": Outcome.DECLINED_HARD, "41": Outcome.DECLINED_HARD, "54": Outcome.DECLINED_HARD}
    cases |= {"51": Outcome.DECLINED_SOFT, "1A": Outcome.DECLINED_SOFT, "91": Outcome.TECHNICAL}
    for code, outcome in cases.items():
        assert t.FAILURE_MAP[code] is outcome, code
    assert t.classify_failure("ZZ") is Outcome.DECLINED_HARD
