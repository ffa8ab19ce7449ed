"""PingPong Checkout v4: signing, hosted-cashier redirect, signed notifications, refund, codes."""

from __future__ import annotations

import hashlib
import uuid

import msgspec
import pytest

from adapters.base import AuthorizeRequest, Credentials, Outcome, RefundRequest, SyncRequest, WebhookRejected
from adapters.pingpong import ACK_BODY, PingPongAdapter
from adapters.pingpong import transformers as t
from tests.adapters.conftest import Admin, Receiver, authorize_request
from tests.adapters.extra_cases import PINGPONG_ACC_ID, PINGPONG_SALT


def _adapter(simulator, salt: str = PINGPONG_SALT) -> PingPongAdapter:
    return PingPongAdapter(
        Credentials(api_key=salt, account_id=PINGPONG_ACC_ID, base_url=simulator.url_for("pingpong")),
        total_timeout=5.0,
    )


def _request(amount: int = 2_599, currency: str = "USD") -> AuthorizeRequest:
    return authorize_request(
        amount=amount,
        currency=currency,
        method_type="hosted_checkout",
        customer_email="ada@example.com",
        return_url="https://shop.example/return",
    )


def test_sign_follows_the_v4_protocol() -> None:
    envelope = {
        "version": "1.0",
        "accId": "2023120712300910285520",
        "signType": "SHA256",
        "clientId": "2023120712300910285",
        "bizContent": '{"amount":"5.23"}',
        "description": "",  # blank values are not signed
        "sign": "ignored",  # nor is the signature itself
    }
    content = (
        "AC09D35CC78CA5E8491B77C5"
        'accId=2023120712300910285520&bizContent={"amount":"5.23"}&clientId=2023120712300910285'
        "&signType=SHA256&version=1.0"
    )
    assert t.sign(PINGPONG_SALT, envelope) == hashlib.sha256(content.encode()).hexdigest().upper()


def test_client_id_defaults_to_the_acc_id_without_its_last_three_digits() -> None:
    adapter = PingPongAdapter(Credentials(api_key="s", account_id="2023120712300910285520"))
    assert adapter.client_id == "2023120712300910285"


@pytest.mark.parametrize(
    ("amount", "currency", "expected"), [(2_599, "USD", "25.99"), (500, "JPY", "500"), (1_005, "KWD", "1.005")]
)
def test_pingpong_amounts_are_exact_decimal_strings(amount, currency, expected) -> None:
    assert t.to_pingpong_amount(amount, currency) == expected
    assert t.from_pingpong_amount(expected, currency) == amount
    with pytest.raises(ValueError):
        t.from_pingpong_amount("25.999", "USD")


async def test_order_redirects_to_the_cashier_and_completes_by_signed_notification(
    simulator, admin: Admin, receiver: Receiver
) -> None:
    await admin.knobs("pingpong", auto_complete=False, webhook={"url": receiver.url("pingpong")})
    adapter = _adapter(simulator)
    request = _request()
    try:
        result = await adapter.authorize(request)
        assert result.outcome is Outcome.REQUIRES_ACTION
        assert result.next_action is not None and "cashier" in result.next_action["url"]
        assert (result.raw_status, result.amount) == ("INIT", 2_599)
        sent = msgspec.json.decode(simulator.sim.requests_log[-1][3])
        assert sent["sign"] == t.sign(PINGPONG_SALT, sent)
        assert msgspec.json.decode(sent["bizContent"])["amount"] == "25.99"
        await admin.complete("pingpong", result.provider_reference or "", status="succeeded")
        deliveries = await receiver.wait_for("pingpong")
        by_attempt = await adapter.sync(
            SyncRequest(payment_id=request.payment_id, provider_reference=None, attempt_id=request.attempt_id)
        )
    finally:
        await adapter.close()
    event = adapter.parse_webhook(deliveries[0][0], deliveries[0][1])[0]
    assert (event.event_type, event.outcome, event.raw_status) == ("RECHARGE", Outcome.APPROVED, "SUCCESS")
    assert (event.provider_reference, event.payment_id, event.amount) == (
        result.provider_reference,
        request.payment_id,
        2_599,
    )
    assert (by_attempt.outcome, by_attempt.provider_reference) == (Outcome.APPROVED, result.provider_reference)
    assert ACK_BODY == "OK"


async def test_forged_and_duplicate_notifications(simulator, admin: Admin, receiver: Receiver) -> None:
    await admin.knobs("pingpong", webhook={"url": receiver.url("pingpong"), "duplicates": 1})
    adapter = _adapter(simulator)
    try:
        await adapter.authorize(_request())
        deliveries = await receiver.wait_for("pingpong", count=2)
    finally:
        await adapter.close()
    (h1, b1, _), (h2, b2, _) = deliveries[:2]
    first, second = adapter.parse_webhook(h1, b1)[0], adapter.parse_webhook(h2, b2)[0]
    assert first.event_id == second.event_id
    with pytest.raises(WebhookRejected) as info:
        adapter.parse_webhook(h1, b1.replace(b"SUCCESS", b"FAILED"))
    assert info.value.reason == "bad_signature"
    with pytest.raises(WebhookRejected):
        _adapter(simulator, salt="another-salt").parse_webhook(h1, b1)
    unsigned = msgspec.json.decode(b1)
    unsigned.pop("sign")
    with pytest.raises(WebhookRejected):
        adapter.parse_webhook(h1, msgspec.json.encode(unsigned))
    with pytest.raises(WebhookRejected) as info:
        adapter.parse_webhook(h1, b"[]")
    assert info.value.reason == "malformed"


async def test_failed_payment_carries_the_result_code(simulator, admin: Admin, receiver: Receiver) -> None:
    await admin.knobs("pingpong", auto_complete=False, webhook={"url": receiver.url("pingpong")})
    adapter = _adapter(simulator)
    try:
        result = await adapter.authorize(_request())
        await admin.complete("pingpong", result.provider_reference or "", status="failed", code="301003")
        deliveries = await receiver.wait_for("pingpong")
    finally:
        await adapter.close()
    event = adapter.parse_webhook(deliveries[0][0], deliveries[0][1])[0]
    assert (event.outcome, event.code, event.raw_status) == (Outcome.DECLINED_SOFT, "301003", "FAILED")


async def test_refund_and_over_refund(simulator, admin: Admin) -> None:
    adapter = _adapter(simulator)
    request = _request()
    try:
        result = await adapter.authorize(request)

        def refund(amount: int) -> RefundRequest:
            return RefundRequest(
                payment_id=request.payment_id,
                refund_id=f"re_{uuid.uuid4().hex[:8]}",
                provider_reference=result.provider_reference or "",
                idempotency_key=uuid.uuid4().hex,
                amount=amount,
                currency="USD",
            )

        partial = await adapter.refund(refund(1_000))
        too_much = await adapter.refund(refund(2_000))
    finally:
        await adapter.close()
    assert (partial.outcome, partial.amount, partial.raw_status) == (Outcome.APPROVED, 1_000, "SUCCESS")
    assert (too_much.outcome, too_much.code) == (Outcome.DECLINED_HARD, "108003")


async def test_answers_signed_with_another_salt_are_not_trusted(simulator, admin: Admin) -> None:
    # The simulator signs with its own salt; an adapter holding another salt must not believe it.
    await admin.knobs("pingpong", webhook_secret="the-real-salt")
    adapter = _adapter(simulator)
    try:
        result = await adapter.authorize(_request())
    finally:
        await adapter.close()
    assert (result.outcome, result.raw_status) == (Outcome.UNKNOWN, "bad_response_signature")


def test_every_documented_result_code_is_mapped() -> None:
    documented = {"000000", "001000", "002000", "101000", "101001", "101002", "102000", "103000", "104000"}
    documented |= {"105000", "106000", "106001", "106002", "106003", "107000", "107001", "107002", "107003"}
    documented |= {"108000", "108001", "108002", "108003", "109000", "109001", "109002", "200000", "201000"}
    documented |= {"202000", "202001", "203000", "300000", "300001", "300002", "300003", "303000", "302000"}
    documented |= {f"3010{n:02d}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 99)}
    documented |= {"400000", "400001", "500000", "500001", "500002", "500003", "500004", "500005", "500006"}
    documented |= {"500008", "500009", "600000", "600001", "600002"}
    assert set(t.RESULT_CODE_MAP) == documented
    assert t.classify_code("999999") is Outcome.DECLINED_HARD
