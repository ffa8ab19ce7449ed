"""GoPay via Midtrans: requires_action with a deeplink, SHA-512-signed notification, refund."""

from __future__ import annotations

import pytest

from adapters.base import AuthorizeRequest, Credentials, Outcome, RefundRequest, SyncRequest, WebhookRejected
from adapters.midtrans import MidtransAdapter
from adapters.midtrans import transformers as t
from tests.adapters.conftest import Admin, Receiver, authorize_request

SERVER_KEY = "SB-Mid-server-simulator"


def _adapter(simulator, timeout: float = 5.0) -> MidtransAdapter:
    return MidtransAdapter(
        Credentials(api_key=SERVER_KEY, base_url=simulator.url_for("midtrans")), total_timeout=timeout
    )


def _request(amount: int = 5_000_000) -> AuthorizeRequest:
    return authorize_request(
        amount=amount, currency="IDR", method_type="gopay", return_url="https://shop.example/return"
    )


async def test_gopay_authorize_requires_action_then_settles_by_signed_notification(
    simulator, admin: Admin, receiver: Receiver
) -> None:
    await admin.knobs("midtrans", auto_complete=False, webhook={"url": receiver.url("midtrans")})
    adapter = _adapter(simulator)
    request = _request()
    try:
        result = await adapter.authorize(request)
        assert result.outcome is Outcome.REQUIRES_ACTION
        assert result.next_action and "payment-pin" in result.next_action["url"]
        assert result.amount == 5_000_000
        await admin.complete("midtrans", request.attempt_id, status="succeeded")
        deliveries = await receiver.wait_for("midtrans")
        synced = await adapter.sync(
            SyncRequest(payment_id=request.payment_id, provider_reference=None, attempt_id=request.attempt_id)
        )
        refund = await adapter.refund(
            RefundRequest(
                payment_id=request.payment_id,
                refund_id="re_1",
                provider_reference=request.attempt_id,
                idempotency_key="rk-1",
                amount=1_000_000,
                currency="IDR",
            )
        )
    finally:
        await adapter.close()
    headers, body, _ = deliveries[0]
    event = adapter.parse_webhook(headers, body)[0]
    assert (event.event_type, event.outcome, event.amount) == ("settlement", Outcome.APPROVED, 5_000_000)
    assert event.provider_reference == request.attempt_id
    assert synced.outcome is Outcome.APPROVED
    assert (refund.outcome, refund.raw_status, refund.amount) == (Outcome.APPROVED, "partial_refund", 1_000_000)
    # The signature covers order_id, status_code and gross_amount (not the status word: Midtrans
    # says to confirm with the status call, which the switch does through sync).
    with pytest.raises(WebhookRejected):
        adapter.parse_webhook(headers, body.replace(b'"50000.00"', b'"90000.00"'))
    other = MidtransAdapter(Credentials(api_key="another-server-key"))
    with pytest.raises(WebhookRejected):
        other.parse_webhook(headers, body)


async def test_gopay_denied_payment_is_a_hard_decline(simulator, admin: Admin, receiver: Receiver) -> None:
    await admin.knobs("midtrans", approval_rate=0.0, webhook={"url": receiver.url("midtrans")})
    adapter = _adapter(simulator)
    try:
        await adapter.authorize(_request())
        deliveries = await receiver.wait_for("midtrans")
    finally:
        await adapter.close()
    assert adapter.parse_webhook(deliveries[0][0], deliveries[0][1])[0].outcome is Outcome.DECLINED_HARD


def test_midtrans_takes_whole_rupiah_only() -> None:
    assert t.to_gross_amount(1_234_500, "IDR") == 12345
    assert t.from_gross_amount("12345.00") == 1_234_500
    with pytest.raises(t.AmountNotRepresentable):
        t.to_gross_amount(1_234_550, "IDR")
    with pytest.raises(t.AmountNotRepresentable):
        t.to_gross_amount(100, "EUR")


async def test_charge_carries_the_idempotency_key_and_books_show_one_sale_and_refund(simulator, admin: Admin) -> None:
    await admin.knobs("midtrans", auto_complete=False)
    adapter = _adapter(simulator)
    request = _request()
    try:
        first = await adapter.authorize(request)
        # A retry of the same charge replays Midtrans's first answer instead of a 406 duplicate.
        again = await adapter.authorize(request)
        await admin.complete("midtrans", request.attempt_id, status="succeeded")
        refund = await adapter.refund(
            RefundRequest(
                payment_id=request.payment_id,
                refund_id="re_1",
                provider_reference=request.attempt_id,
                idempotency_key="rk-books",
                amount=1_000_000,
                currency="IDR",
            )
        )
    finally:
        await adapter.close()
    assert first.outcome is Outcome.REQUIRES_ACTION and again.outcome is Outcome.REQUIRES_ACTION
    charges = [b for p, m, path, b in simulator.sim.requests_log if p == "midtrans" and path.endswith("/v2/charge")]
    assert len(charges) == 2
    assert refund.outcome is Outcome.APPROVED
    movements = simulator.sim.books.for_payment(request.payment_id)
    assert [(m.kind, m.amount, m.captured) for m in movements] == [
        ("authorize", 5_000_000, True),
        ("refund", 1_000_000, False),
    ]
    assert movements[0].idempotency_key == request.idempotency_key


async def test_a_duplicate_order_id_is_unknown_not_technical(simulator, admin: Admin) -> None:
    await admin.knobs("midtrans", auto_complete=False)
    adapter = _adapter(simulator)
    request = _request()
    try:
        await adapter.authorize(request)
        # Same order id (attempt id), new key: Midtrans answers 406, the first charge exists.
        duplicate = await adapter.authorize(AuthorizeRequest(**{**_fields(request), "idempotency_key": "other-key"}))
    finally:
        await adapter.close()
    assert (duplicate.outcome, duplicate.code) == (Outcome.UNKNOWN, "406")


def _fields(request: AuthorizeRequest) -> dict[str, object]:
    import msgspec

    return msgspec.structs.asdict(request)
