"""GrabPay via Xendit: redirect, ``x-callback-token`` callbacks, failure codes, refund, amounts."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from adapters.base import AuthorizeRequest, Credentials, Outcome, RefundRequest, SyncRequest, WebhookRejected
from adapters.xendit import XenditAdapter
from adapters.xendit import transformers as t
from tests.adapters.conftest import Admin, Receiver, authorize_request
from tests.adapters.extra_cases import XENDIT_CALLBACK_TOKEN, XENDIT_SECRET_KEY


def _adapter(simulator, token: str = XENDIT_CALLBACK_TOKEN) -> XenditAdapter:
    return XenditAdapter(
        Credentials(api_key=XENDIT_SECRET_KEY, webhook_secret=token, base_url=simulator.url_for("xendit")),
        total_timeout=5.0,
    )


def _request(amount: int = 49_900, currency: str = "PHP") -> AuthorizeRequest:
    return authorize_request(
        amount=amount, currency=currency, method_type="grabpay", return_url="https://shop.example/return"
    )


async def test_grabpay_charge_requires_redirect_then_succeeds_by_callback(
    simulator, admin: Admin, receiver: Receiver
) -> None:
    await admin.knobs("xendit", auto_complete=False, webhook={"url": receiver.url("xendit")})
    adapter = _adapter(simulator)
    request = _request()
    try:
        result = await adapter.authorize(request)
        assert result.outcome is Outcome.REQUIRES_ACTION
        assert result.next_action is not None and result.next_action["type"] == "redirect_to_url"
        assert result.next_action["url"].startswith("https://") and result.provider_reference
        assert (result.raw_status, result.amount) == ("PENDING", 49_900)
        sent = simulator.sim.requests_log[-1][3]
        # Major units as a JSON number, GrabPay channel, the attempt id as reference_id.
        assert b'"amount":499.00' in sent and b'"PH_GRABPAY"' in sent and request.attempt_id.encode() in sent
        await admin.complete("xendit", result.provider_reference, status="succeeded")
        deliveries = await receiver.wait_for("xendit")
        synced = await adapter.sync(
            SyncRequest(payment_id=request.payment_id, provider_reference=result.provider_reference, attempt_id="x")
        )
    finally:
        await adapter.close()
    event = adapter.parse_webhook(deliveries[0][0], deliveries[0][1])[0]
    assert (event.event_type, event.outcome, event.raw_status) == ("ewallet.capture", Outcome.APPROVED, "SUCCEEDED")
    assert (event.provider_reference, event.payment_id) == (result.provider_reference, request.payment_id)
    assert (event.amount, event.currency) == (49_900, "PHP")
    assert synced.outcome is Outcome.APPROVED


async def test_failed_grabpay_charge_carries_its_failure_code(simulator, admin: Admin, receiver: Receiver) -> None:
    await admin.knobs("xendit", auto_complete=False, webhook={"url": receiver.url("xendit")})
    adapter = _adapter(simulator)
    try:
        result = await adapter.authorize(_request())
        await admin.complete("xendit", result.provider_reference or "", status="failed", code="INSUFFICIENT_BALANCE")
        deliveries = await receiver.wait_for("xendit")
    finally:
        await adapter.close()
    event = adapter.parse_webhook(deliveries[0][0], deliveries[0][1])[0]
    assert (event.outcome, event.code, event.raw_status) == (Outcome.DECLINED_SOFT, "INSUFFICIENT_BALANCE", "FAILED")


async def test_callbacks_with_a_wrong_or_missing_token_are_rejected(
    simulator, admin: Admin, receiver: Receiver
) -> None:
    await admin.knobs("xendit", webhook={"url": receiver.url("xendit")})
    adapter = _adapter(simulator)
    try:
        await adapter.authorize(_request())
        headers, body, _ = (await receiver.wait_for("xendit"))[0]
    finally:
        await adapter.close()
    assert adapter.parse_webhook(headers, body)
    with pytest.raises(WebhookRejected) as info:
        adapter.parse_webhook({**headers, "x-callback-token": "guessed-token"}, body)
    assert info.value.reason == "bad_signature"
    with pytest.raises(WebhookRejected):
        adapter.parse_webhook({k: v for k, v in headers.items() if k.lower() != "x-callback-token"}, body)
    # An adapter without a configured token accepts nothing rather than everything.
    with pytest.raises(WebhookRejected):
        _adapter(simulator, token="").parse_webhook(headers, body)
    with pytest.raises(WebhookRejected) as info:
        adapter.parse_webhook(headers, b"not json")
    assert info.value.reason == "malformed"


async def test_duplicate_callbacks_share_one_event_id(simulator, admin: Admin, receiver: Receiver) -> None:
    await admin.knobs("xendit", webhook={"url": receiver.url("xendit"), "duplicates": 1})
    adapter = _adapter(simulator)
    try:
        await adapter.authorize(_request())
        deliveries = await receiver.wait_for("xendit", count=2)
    finally:
        await adapter.close()
    events = [adapter.parse_webhook(h, b)[0] for h, b, _ in deliveries[:2]]
    assert events[0].event_id == events[1].event_id
    assert events[0] == events[1]


async def test_channel_not_activated_magic_amount_is_technical(simulator, admin: Admin) -> None:
    adapter = _adapter(simulator)
    try:
        result = await adapter.authorize(_request(amount=1_010_000))  # PHP 10100.00
    finally:
        await adapter.close()
    assert (result.outcome, result.code) == (Outcome.TECHNICAL, "CHANNEL_NOT_ACTIVATED")


async def test_refund_of_a_paid_charge_and_over_refund(simulator, admin: Admin) -> None:
    adapter = _adapter(simulator)
    request = _request()
    try:
        result = await adapter.authorize(request)
        await admin.complete("xendit", result.provider_reference or "", status="succeeded")

        def refund(amount: int) -> RefundRequest:
            return RefundRequest(
                payment_id=request.payment_id,
                refund_id="re_1",
                provider_reference=result.provider_reference or "",
                idempotency_key=uuid.uuid4().hex,
                amount=amount,
                currency="PHP",
            )

        partial = await adapter.refund(refund(10_000))
        too_much = await adapter.refund(refund(49_900))
    finally:
        await adapter.close()
    assert (partial.outcome, partial.amount, partial.raw_status) == (Outcome.APPROVED, 10_000, "SUCCEEDED")
    assert partial.provider_reference and partial.provider_reference.startswith("ewr_")
    # INELIGIBLE_TRANSACTION is not a documented charge failure code: unknown codes are hard.
    assert (too_much.outcome, too_much.code) == (Outcome.DECLINED_HARD, "INELIGIBLE_TRANSACTION")


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [(49_900, "PHP", Decimal("499.00")), (1_500_000, "IDR", Decimal("15000")), (50_000, "VND", Decimal("50000"))],
)
def test_xendit_amounts_are_exact_major_units(amount, currency, expected) -> None:
    value = t.to_xendit_amount(amount, currency)
    assert value == expected and str(value) == str(expected)
    assert t.from_xendit_amount(value, currency) == amount


@pytest.mark.parametrize(("amount", "currency"), [(1_500_050, "IDR"), (100, "EUR")])
def test_xendit_refuses_amounts_it_cannot_take(amount, currency) -> None:
    with pytest.raises(t.AmountNotRepresentable):
        t.to_xendit_amount(amount, currency)


def test_xendit_credentials_never_show_in_reprs() -> None:
    adapter = XenditAdapter(Credentials(api_key="xnd_development_topsecret", webhook_secret="tok_verysecret"))
    assert "topsecret" not in repr(adapter.credentials) and "verysecret" not in repr(adapter.credentials)
