"""Recovery settles attempts left open by a crash or an unanswered status call."""

from __future__ import annotations

import secrets
import time

from adapters.base import AuthorizeRequest, CardData, ProviderResult
from switch.ids import new_id
from switch.ledger.verify import verify_ledger
from switch.ledger.writer import AttemptInsert, WriteOp
from switch.payments.idempotency import IdempotencyRequest
from switch.payments.model import ENCODER, Payment
from tests.api.helpers import payment_body
from tests.ledger.intents import pending_payment


def _intent(merchant_id: str, key: str | None, capture: str = "manual") -> tuple[Payment, str]:
    return pending_payment(capture=capture), new_id("att")


async def _write_intent(app, merchant_id, payment, attempt_id, key, body_hash=b"h"):
    reserve = None
    if key is not None:
        reserve = IdempotencyRequest(merchant_id, key, "POST /v1/payments", body_hash).reserve_row()
    await app.state.writer.submit(
        WriteOp(
            reserve=reserve,
            attempts=[
                AttemptInsert(
                    id=attempt_id,
                    payment_id=payment.id,
                    merchant_id=merchant_id,
                    provider="sandbox",
                    amount=payment.amount,
                    currency=payment.currency,
                    request=ENCODER.encode(payment).decode(),
                    idempotency_key=key,
                    created=payment.created,
                )
            ],
        )
    )


async def test_an_attempt_the_provider_approved_before_a_crash_is_settled(app, client, merchant, db):
    payment, attempt_id = _intent(merchant.id, None)
    await _write_intent(app, merchant.id, payment, attempt_id, None)
    # The provider authorized it; the worker died before writing the outcome.
    await app.state.adapters["sandbox"].authorize(
        AuthorizeRequest(
            payment_id=payment.id,
            attempt_id=attempt_id,
            idempotency_key=attempt_id,
            amount=payment.amount,
            currency="EUR",
            card=CardData(number="4242424242424242", exp_month=12, exp_year=2031),
            capture=False,
        )
    )
    report = await app.state.recovery.run_once(now=time.time() + 3600)
    assert report.resolved >= 1
    settled = (await client.get(f"/v1/payments/{payment.id}", headers=merchant.headers)).json()
    assert settled["status"] == "authorized"
    assert settled["provider"] == "sandbox"
    assert (await verify_ledger(db)).ok
    status = await db.fetchval("SELECT status FROM payment_attempts WHERE id = $1", attempt_id)
    assert status == "done"


async def test_an_attempt_the_provider_never_saw_fails_without_moving_money(app, client, merchant, db):
    payment, attempt_id = _intent(merchant.id, None)
    await _write_intent(app, merchant.id, payment, attempt_id, None)
    await app.state.recovery.run_once(now=time.time() + 3600)
    settled = (await client.get(f"/v1/payments/{payment.id}", headers=merchant.headers)).json()
    assert settled["status"] == "failed"
    assert await db.fetchval("SELECT count(*) FROM journal_transactions WHERE payment_id = $1", payment.id) == 0


async def test_young_attempts_are_left_alone(app, merchant, db):
    payment, attempt_id = _intent(merchant.id, None)
    await _write_intent(app, merchant.id, payment, attempt_id, None)
    await app.state.recovery.run_once()
    assert await db.fetchval("SELECT status FROM payment_attempts WHERE id = $1", attempt_id) == "intent"
    await app.state.recovery.run_once(now=time.time() + 3600)  # leave the database clean for other tests


async def test_a_retry_with_the_same_key_gets_the_resolved_result(app, client, merchant):
    key = "recover-" + secrets.token_hex(6)
    body = payment_body(amount=4200)
    import json

    raw = json.dumps(body).encode()
    request = IdempotencyRequest.build(merchant.id, key, "POST /v1/payments", raw)
    payment, attempt_id = _intent(merchant.id, key)
    await _write_intent(app, merchant.id, payment, attempt_id, key, request.body_hash)
    in_flight = await client.post("/v1/payments", content=raw, headers={**merchant.headers, "Idempotency-Key": key})
    assert in_flight.status_code == 409
    await app.state.recovery.run_once(now=time.time() + 3600)
    retry = await client.post("/v1/payments", content=raw, headers={**merchant.headers, "Idempotency-Key": key})
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == payment.id
    assert retry.json()["status"] == "failed"


async def test_an_unanswered_status_call_leaves_the_attempt_open(app, merchant, db):
    sandbox = app.state.adapters["sandbox"]
    payment, attempt_id = _intent(merchant.id, None)
    await _write_intent(app, merchant.id, payment, attempt_id, None)
    original = sandbox.sync

    async def silent(request) -> ProviderResult:
        raise TimeoutError

    sandbox.sync = silent
    try:
        report = await app.state.recovery.run_once(now=time.time() + 3600)
    finally:
        sandbox.sync = original
    assert report.still_unknown >= 1
    assert await db.fetchval("SELECT status FROM payment_attempts WHERE id = $1", attempt_id) == "unknown"
    # After the crash the payment exists for the merchant, pending with an unknown outcome.
    pending = await db.fetchval("SELECT body::text FROM payments WHERE id = $1", payment.id)
    assert '"pending_reason":"provider_outcome_unknown"' in pending
    # It backs off: the same instant finds nothing due, a later pass settles it.
    await app.state.recovery.run_once(now=time.time() + 3600)
    assert await db.fetchval("SELECT checks FROM payment_attempts WHERE id = $1", attempt_id) == 1
    await app.state.recovery.run_once(now=time.time() + 3600 + 60)
    assert await db.fetchval("SELECT status FROM payment_attempts WHERE id = $1", attempt_id) == "done"
