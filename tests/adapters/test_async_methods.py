"""Asynchronous methods answer pending or requires_action and complete through signed webhooks."""

from __future__ import annotations

import dataclasses

import pytest

from adapters.base import Outcome, WebhookRejected
from adapters.stripe import sign_webhook
from tests.adapters.conftest import Admin, ProviderCase, Receiver, _adyen, _paypal, _stripe

KONBINI = ProviderCase("stripe", _stripe, "JPY", 1500, {}, method_type="konbini")
ADYEN_SEPA = ProviderCase(
    "adyen", _adyen, "EUR", 2500, {}, method_type="sepa_debit", details={"iban": "DE89370400440532013000"}
)
PAYPAL_WALLET = ProviderCase("paypal", _paypal, "EUR", 1000, {}, method_type="paypal")


async def test_konbini_voucher_requires_action_then_completes_by_webhook(
    simulator, admin: Admin, receiver: Receiver
) -> None:
    await admin.knobs("stripe", auto_complete=False, webhook={"url": receiver.url("stripe")})
    adapter = KONBINI.adapter(simulator)
    try:
        result = await adapter.authorize(KONBINI.authorize_request())
        assert result.outcome is Outcome.REQUIRES_ACTION
        assert result.next_action is not None and result.next_action["type"] == "voucher"
        assert result.next_action["url"] and "familymart" in result.next_action["stores"]
        await admin.complete("stripe", result.provider_reference or "", status="succeeded")
        deliveries = await receiver.wait_for("stripe")
    finally:
        await adapter.close()
    event = adapter.parse_webhook(deliveries[-1][0], deliveries[-1][1])[0]
    assert (event.event_type, event.outcome) == ("payment_intent.succeeded", Outcome.APPROVED)
    assert event.provider_reference == result.provider_reference
    assert (event.amount, event.currency) == (1500, "JPY")


async def test_expired_konbini_voucher_is_reported_as_a_failed_payment(
    simulator, admin: Admin, receiver: Receiver
) -> None:
    await admin.knobs("stripe", auto_complete=False, webhook={"url": receiver.url("stripe")})
    adapter = KONBINI.adapter(simulator)
    try:
        result = await adapter.authorize(KONBINI.authorize_request())
        await admin.complete("stripe", result.provider_reference or "", status="failed", code="expired")
        deliveries = await receiver.wait_for("stripe")
    finally:
        await adapter.close()
    event = adapter.parse_webhook(deliveries[-1][0], deliveries[-1][1])[0]
    assert event.event_type == "payment_intent.payment_failed"
    assert event.outcome is Outcome.DECLINED_HARD


@pytest.mark.parametrize(("currency", "amount"), [("EUR", 1500), ("JPY", 119), ("JPY", 300_001)])
async def test_konbini_refuses_non_jpy_and_out_of_range_amounts(simulator, admin: Admin, currency, amount) -> None:
    case = dataclasses.replace(KONBINI, currency=currency, amount=amount)
    adapter = case.adapter(simulator)
    try:
        result = await adapter.authorize(case.authorize_request())
    finally:
        await adapter.close()
    assert result.outcome is Outcome.TECHNICAL
    assert simulator.sim.providers["stripe"].intents == {}


async def test_adyen_sepa_debit_is_pending_until_the_authorisation_notification(
    simulator, admin: Admin, receiver: Receiver
) -> None:
    await admin.knobs("adyen", auto_complete=False, webhook={"url": receiver.url("adyen")})
    adapter = ADYEN_SEPA.adapter(simulator)
    try:
        result = await adapter.authorize(ADYEN_SEPA.authorize_request())
        assert (result.outcome, result.raw_status) == (Outcome.PENDING, "Received")
        await admin.complete("adyen", result.provider_reference or "", status="succeeded")
        deliveries = await receiver.wait_for("adyen")
    finally:
        await adapter.close()
    event = adapter.parse_webhook(deliveries[-1][0], deliveries[-1][1])[0]
    assert (event.event_type, event.outcome) == ("AUTHORISATION", Outcome.APPROVED)
    assert event.provider_reference == result.provider_reference


async def test_adyen_capture_is_confirmed_by_the_capture_notification(
    simulator, admin: Admin, receiver: Receiver
) -> None:
    from adapters.base import CaptureRequest
    from tests.adapters.conftest import CASES

    case = next(c for c in CASES if c.name == "adyen")
    await admin.knobs("adyen", webhook={"url": receiver.url("adyen")})
    adapter = case.adapter(simulator)
    try:
        request = case.authorize_request(capture=False)
        auth = await adapter.authorize(request)
        await adapter.capture(
            CaptureRequest(
                payment_id=request.payment_id,
                provider_reference=auth.provider_reference or "",
                idempotency_key="cap-1",
                amount=request.amount,
                currency="EUR",
            )
        )
        deliveries = await receiver.wait_for("adyen", count=2)
    finally:
        await adapter.close()
    events = [adapter.parse_webhook(h, b)[0] for h, b, _ in deliveries]
    capture = next(e for e in events if e.event_type == "CAPTURE")
    assert capture.outcome is Outcome.APPROVED
    assert capture.provider_reference == auth.provider_reference


async def test_paypal_wallet_order_requires_payer_action(simulator, admin: Admin) -> None:
    adapter = PAYPAL_WALLET.adapter(simulator)
    try:
        result = await adapter.authorize(PAYPAL_WALLET.authorize_request())
    finally:
        await adapter.close()
    assert result.outcome is Outcome.REQUIRES_ACTION
    assert result.next_action == {
        "type": "redirect_to_url",
        "url": f"https://www.sandbox.paypal.com/checkoutnow?token={result.provider_reference}",
    }


def test_stale_stripe_signature_is_rejected() -> None:
    adapter = _stripe("http://127.0.0.1:1", 1.0)
    body = b'{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {}}}'
    old = sign_webhook("whsec_simulator", body, timestamp=1_000_000)
    with pytest.raises(WebhookRejected) as info:
        adapter.parse_webhook({"Stripe-Signature": old}, body)
    assert info.value.reason == "stale"
    fresh = sign_webhook("whsec_simulator", body)
    assert adapter.parse_webhook({"Stripe-Signature": fresh}, body)[0].event_id == "evt_1"
    with pytest.raises(WebhookRejected):
        adapter.parse_webhook({"Stripe-Signature": sign_webhook("whsec_other", body)}, body)
