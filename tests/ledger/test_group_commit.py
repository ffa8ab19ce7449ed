"""The group-commit writer against real PostgreSQL: batching, all-or-nothing batches, version races."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import pytest
import pytest_asyncio

from switch.errors import ConcurrentUpdate, LedgerUnavailable
from switch.ids import new_id
from switch.ledger import postings
from switch.ledger.writer import GroupCommitWriter, PaymentInsert, PaymentUpdate, WriteOp


@pytest_asyncio.fixture
async def writer(settings, app):
    # Its own writer on the migrated test database; the app fixture guarantees the schema.
    instance = GroupCommitWriter(lambda: asyncpg.connect(settings.database_url))
    await instance.start()
    yield instance
    await instance.stop()


def _body(payment_id: str, amount: int, **extra: object) -> str:
    """A stored body that agrees with its columns, as `ledger verify` demands of every payment."""
    fields = {"id": payment_id, "status": "captured", "amount": amount, "currency": "EUR"}
    return json.dumps({**fields, "amount_captured": amount, "amount_refunded": 0, **extra})


def _payment_op(merchant_id: str, payment_id: str | None = None, amount: int = 100) -> WriteOp:
    payment_id = payment_id or new_id("pay")
    now = int(time.time())
    return WriteOp(
        payments=[
            PaymentInsert(
                id=payment_id,
                merchant_id=merchant_id,
                status="captured",
                amount=amount,
                currency="EUR",
                amount_captured=amount,
                amount_refunded=0,
                capture_method="automatic",
                capture_closed=True,
                provider="sandbox",
                provider_reference=None,
                body=_body(payment_id, amount),
                reference=None,
                created=now,
            )
        ],
        journal=[
            postings.sale(
                merchant_id=merchant_id,
                payment_id=payment_id,
                provider="sandbox",
                currency="EUR",
                amount=amount,
                created=now,
            )
        ],
    )


async def test_concurrent_ops_share_batches(writer, merchant, db):
    ops = [_payment_op(merchant.id) for _ in range(200)]
    before = writer.batches_committed
    await asyncio.gather(*(writer.submit(op) for op in ops))
    batches = writer.batches_committed - before
    assert 1 <= batches < 200
    count = await db.fetchval("SELECT count(*) FROM payments WHERE merchant_id = $1", merchant.id)
    assert count == 200


async def test_a_failed_batch_fails_every_op_and_writes_none(writer, merchant, db):
    duplicate = new_id("pay")
    await writer.submit(_payment_op(merchant.id, duplicate))
    good = [_payment_op(merchant.id) for _ in range(5)]
    poisoned = _payment_op(merchant.id, duplicate)  # primary key violation inside the batch
    results = await asyncio.gather(*(writer.submit(op) for op in [*good, poisoned]), return_exceptions=True)
    assert all(isinstance(result, LedgerUnavailable) for result in results)
    ids = [op.payments[0].id for op in good]
    assert await db.fetchval("SELECT count(*) FROM payments WHERE id = ANY($1)", ids) == 0
    journal_ids = [op.journal[0].id for op in good]
    assert await db.fetchval("SELECT count(*) FROM journal_transactions WHERE id = ANY($1)", journal_ids) == 0


async def test_the_writer_recovers_after_a_failed_batch(writer, merchant, db):
    duplicate = new_id("pay")
    await writer.submit(_payment_op(merchant.id, duplicate))
    with pytest.raises(LedgerUnavailable):
        await writer.submit(_payment_op(merchant.id, duplicate))
    op = _payment_op(merchant.id)
    await writer.submit(op)
    assert await db.fetchval("SELECT count(*) FROM payments WHERE id = $1", op.payments[0].id) == 1


async def test_a_stale_version_loses_without_failing_the_batch(writer, merchant, db):
    payment_id = new_id("pay")
    await writer.submit(_payment_op(merchant.id, payment_id))

    def update(expected: int) -> WriteOp:
        return WriteOp(
            payment_update=PaymentUpdate(
                id=payment_id,
                expected_version=expected,
                status="captured",
                amount_captured=100,
                amount_refunded=0,
                capture_closed=True,
                body=_body(payment_id, 100, metadata={"v": str(expected)}),
            )
        )

    bystander = _payment_op(merchant.id)
    results = await asyncio.gather(
        writer.submit(update(1)), writer.submit(update(1)), writer.submit(bystander), return_exceptions=True
    )
    assert sum(isinstance(r, ConcurrentUpdate) for r in results) == 1
    assert not isinstance(results[2], Exception)
    assert await db.fetchval("SELECT version FROM payments WHERE id = $1", payment_id) == 2
    assert await db.fetchval("SELECT count(*) FROM payments WHERE id = $1", bystander.payments[0].id) == 1


async def test_submitting_to_a_stopped_writer_is_refused(settings, app):
    stopped = GroupCommitWriter(lambda: asyncpg.connect(settings.database_url))
    with pytest.raises(LedgerUnavailable):
        await stopped.submit(WriteOp())


async def test_ledger_down_answers_503_and_acknowledges_nothing(client, merchant, app, db):
    writer = app.state.writer
    original = writer._connect

    async def refuse() -> asyncpg.Connection:
        raise OSError("database unreachable")

    # Break the writer's connection and its ability to reconnect, as a database outage would.
    writer._connect = refuse
    writer._connection.terminate()
    try:
        from tests.api.helpers import create

        response = await create(client, merchant)
    finally:
        writer._connect = original
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "ledger_unavailable"
    assert await db.fetchval("SELECT count(*) FROM payments WHERE merchant_id = $1", merchant.id) == 0
    healed = await create(client, merchant)
    assert healed.status_code == 201


async def test_duplicate_key_reservations_in_one_batch_admit_only_the_first(writer, merchant, db):
    from switch.ledger.writer import IdempotencyReserve

    def reserve() -> WriteOp:
        op = _payment_op(merchant.id)
        op.reserve = IdempotencyReserve(
            merchant_id=merchant.id, key="dup-in-batch", endpoint="POST /v1/payments", body_hash=b"h", created=1
        )
        return op

    results = await asyncio.gather(*(writer.submit(reserve()) for _ in range(5)))
    assert sum(result.reserved for result in results) == 1
    assert await db.fetchval("SELECT count(*) FROM payments WHERE merchant_id = $1", merchant.id) == 1
