"""PostgreSQL partitioned (traffic stalled) and restarted (connections dropped, port refusing)
under load, through a real TCP proxy in front of the real server: requests fail fast with 503,
readiness answers within its deadline, the writer and the pool reconnect, service resumes without
a restart, nothing acknowledged is lost, and what was left unfinished is settled by recovery."""

from __future__ import annotations

import asyncio
import secrets
import time

import asyncpg

from switch.ledger.verify import verify_ledger
from tests.reliability.conftest import app_client, new_merchant, settings_for
from tests.reliability.helpers import assert_unavailable, eventually, pay, timed

# Deadline of anything the switch answers while the database is gone: the command deadline, the
# release of the connection that missed it, and scheduling on a shared CI machine.
ANSWER_WITHIN_S = 4.0


async def _count(database_url: str, sql: str, *args: object) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval(sql, *args))
    finally:
        await connection.close()


async def _resumes(http, merchant) -> None:
    async def served() -> bool:
        return (await pay(http, merchant)).status_code == 201

    await eventually(served, 20, "a payment after the fault healed")


async def _verified(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        report = await verify_ledger(connection)
    finally:
        await connection.close()
    assert report.ok, report.render()


async def test_a_partition_answers_503_fast_then_resumes_and_recovery_settles_what_was_in_flight(
    database_url, pg_proxy
):
    settings = settings_for(pg_proxy.dsn(database_url), sandbox_latency_ms=400)
    merchant = await new_merchant(database_url)
    async with app_client(settings) as (app, http):
        acknowledged: dict[str, dict] = {}
        for _ in range(3):
            key = secrets.token_hex(8)
            response = await pay(http, merchant, key)
            assert response.status_code == 201, response.text
            acknowledged[key] = response.json()

        # Requests whose intent is committed and whose provider call is running when the partition starts.
        in_flight_keys = [secrets.token_hex(8) for _ in range(4)]
        in_flight = [asyncio.create_task(pay(http, merchant, key)) for key in in_flight_keys]
        attempts = "SELECT count(*) FROM payment_attempts WHERE merchant_id = $1"

        async def intents_written() -> bool:
            return await _count(database_url, attempts, merchant.id) == 3 + len(in_flight_keys)

        await eventually(intents_written, 10, "the in-flight intents")
        pg_proxy.stall()
        first_id = next(iter(acknowledged.values()))["id"]
        during = await asyncio.gather(
            timed(pay(http, merchant)),
            timed(pay(http, merchant)),
            timed(http.get(f"/v1/payments/{first_id}", headers=merchant.headers)),
            timed(http.get("/v1/payments?limit=3", headers=merchant.headers)),
        )
        for response, took in during:
            assert_unavailable(response)
            assert took < ANSWER_WITHIN_S, took
        ready, took = await timed(http.get("/health/ready"))
        assert ready.status_code == 503 and took < 2.0, (ready.text, took)
        for response in await asyncio.gather(*in_flight):
            # The provider authorized; the outcome could not commit: 503, never 500, never a hang.
            assert_unavailable(response)

        await pg_proxy.heal()
        await _resumes(http, merchant)
        assert (await http.get("/health/ready")).status_code == 200

        # Recovery finds the authorizations whose outcome was lost (past its grace period).
        await app.state.recovery.run_once(now=time.time() + 600)
        for key, body in acknowledged.items():
            replay = await pay(http, merchant, key)
            assert replay.status_code == 201 and replay.json() == body
        for key in in_flight_keys:
            retried = await pay(http, merchant, key)
            assert retried.status_code == 201, retried.text
            assert retried.json()["status"] == "authorized"
            assert (await pay(http, merchant, key)).json() == retried.json()
        # Exactly one payment per key that was acknowledged or recovered, none twice.
        for key in [*acknowledged, *in_flight_keys]:
            shown = await _count(
                database_url,
                "SELECT count(DISTINCT a.payment_id) FROM payment_attempts a"
                " JOIN payments p ON p.id = a.payment_id WHERE a.merchant_id = $1 AND a.idempotency_key = $2",
                merchant.id,
                key,
            )
            assert shown == 1, key
    await _verified(database_url)


async def test_a_restart_refuses_fast_then_the_writer_and_pool_reconnect(database_url, pg_proxy):
    settings = settings_for(pg_proxy.dsn(database_url))
    merchant = await new_merchant(database_url)
    async with app_client(settings) as (app, http):
        acknowledged = {}
        for _ in range(3):
            key = secrets.token_hex(8)
            response = await pay(http, merchant, key)
            assert response.status_code == 201
            acknowledged[key] = response.json()
        await pg_proxy.cut()
        during = await asyncio.gather(
            *(timed(pay(http, merchant)) for _ in range(5)),
            timed(http.get(f"/v1/payments/{next(iter(acknowledged.values()))['id']}", headers=merchant.headers)),
            timed(http.get("/v1/refunds/re_missing", headers=merchant.headers)),
        )
        for response, took in during:
            assert_unavailable(response)
            assert took < ANSWER_WITHIN_S, took
        ready, took = await timed(http.get("/health/ready"))
        assert ready.status_code == 503 and took < 2.0
        assert "database" in ready.json()["error"]["message"]

        await pg_proxy.heal()
        await _resumes(http, merchant)
        assert app.state.writer.running
        for key, body in acknowledged.items():
            replay = await pay(http, merchant, key)
            assert (replay.status_code, replay.json()) == (201, body)
    count = await _count(database_url, "SELECT count(*) FROM payments WHERE merchant_id = $1", merchant.id)
    # The acknowledged three, and the one that proved service resumed; the refused ones wrote nothing.
    assert count == 4
    await _verified(database_url)
