"""Admission control: a bound on payment mutations in flight per worker, a bounded writer queue
and a deadline on every submission. Beyond the bounds the switch answers ``503 overloaded`` at
once; a submission that cannot commit in time answers 503 and, if it was never sent, is never
written."""

from __future__ import annotations

import asyncio
import secrets
import time

import asyncpg
import pytest

from switch.errors import LedgerUnavailable
from switch.ledger.writer import (
    AttemptUpdate,
    GroupCommitWriter,
    IdempotencyReserve,
    LedgerOverloaded,
    WriteOp,
    starts_work,
)
from tests.reliability.conftest import app_client, new_merchant, settings_for
from tests.reliability.helpers import assert_unavailable, pay


async def test_mutations_beyond_the_in_flight_bound_are_shed_at_once(database_url):
    merchant = await new_merchant(database_url)
    settings = settings_for(database_url, max_inflight=2, sandbox_latency_ms=500)
    async with app_client(settings) as (app, http):
        finished: list[tuple[float, int]] = []

        async def one() -> None:
            response = await pay(http, merchant)
            finished.append((time.monotonic(), response.status_code))
            if response.status_code == 503:
                assert_unavailable(response)
                assert response.json()["error"]["code"] == "overloaded"

        tasks = [asyncio.create_task(one()) for _ in range(6)]
        await asyncio.sleep(0)  # let every request reach the middleware before any finishes
        listed = await http.get("/v1/payments?limit=1", headers=merchant.headers)
        assert listed.status_code == 200  # reads are not counted against the bound
        await asyncio.gather(*tasks)
        statuses = [status for _, status in finished]
        assert sorted(statuses) == [201, 201, 503, 503, 503, 503]
        # Shed at once: every refusal came back before any admitted payment finished.
        first_admitted = min(at for at, status in finished if status == 201)
        assert all(at < first_admitted for at, status in finished if status == 503)
        assert app.state.admission.shed == 4 and app.state.admission.inflight == 0
    connection = await asyncpg.connect(database_url)
    try:
        written = await connection.fetchval("SELECT count(*) FROM payment_attempts WHERE merchant_id = $1", merchant.id)
    finally:
        await connection.close()
    assert written == 2  # the shed requests wrote nothing


def _reserve(merchant_id: str) -> WriteOp:
    return WriteOp(
        reserve=IdempotencyReserve(
            merchant_id=merchant_id, key=secrets.token_hex(8), endpoint="POST /v1/payments", body_hash=b"h", created=1
        )
    )


def test_only_ops_that_start_work_may_be_shed():
    assert starts_work(_reserve("m"))
    outcome = WriteOp(
        attempt_updates=[
            AttemptUpdate(
                id="att_x", status="done", outcome="approved", code=None, provider_reference=None, latency_ms=1
            )
        ]
    )
    assert not starts_work(outcome)
    assert not starts_work(WriteOp(reserve=_reserve("m").reserve, isolated=True))


async def test_a_full_writer_queue_sheds_new_work_and_a_stalled_commit_misses_its_deadline(database_url, pg_proxy):
    merchant = await new_merchant(database_url)
    dsn = pg_proxy.dsn(database_url)
    writer = GroupCommitWriter(
        lambda: asyncpg.connect(dsn, timeout=0.5, command_timeout=5), submit_timeout_s=0.5, max_queue=1
    )
    await writer.start()
    try:
        pg_proxy.stall()
        in_flight = asyncio.create_task(writer.submit(_reserve(merchant.id)))
        await asyncio.sleep(0.05)  # taken into a batch that now waits on the stalled connection
        queued_op = _reserve(merchant.id)
        queued = asyncio.create_task(writer.submit(queued_op))
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(LedgerOverloaded) as shed:
            await writer.submit(_reserve(merchant.id))
        assert time.monotonic() - started < 0.05
        assert (shed.value.kind, shed.value.code) == ("unavailable", "overloaded")
        for task in (in_flight, queued):
            with pytest.raises(LedgerUnavailable):
                await task
        await pg_proxy.heal()
        assert (await writer.submit(_reserve(merchant.id))).applied
    finally:
        await writer.stop(timeout_s=10)
    connection = await asyncpg.connect(database_url)
    try:
        found = await connection.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE merchant_id = $1 AND key = $2",
            merchant.id,
            queued_op.reserve.key,
        )
    finally:
        await connection.close()
    # It never left the queue before its deadline, so it was never written and never will be.
    assert found == 0
