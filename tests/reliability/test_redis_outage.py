"""Redis gone (connections dropped, port refusing), through a real proxy in front of the real
Redis: idempotency falls back to the database's durable reservation, nothing answers 5xx, and the
store is used again by itself once Redis is back."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.reliability.conftest import app_client, new_merchant, settings_for
from tests.reliability.helpers import eventually, pay


async def test_idempotency_falls_back_to_the_database_while_redis_is_down(database_url, redis_url, redis_proxy):
    if not redis_url.startswith("redis://"):
        pytest.skip("the proxy needs Redis over TCP")
    merchant = await new_merchant(database_url)
    settings = settings_for(database_url, redis_url=redis_proxy.dsn(redis_url))
    async with app_client(settings) as (app, http):
        before = secrets.token_hex(8)
        first = await pay(http, merchant, before)
        assert first.status_code == 201

        await redis_proxy.cut()
        during = secrets.token_hex(8)
        created = await pay(http, merchant, during)
        assert created.status_code == 201, created.text
        # Finished keys replay from the durable record, byte for byte.
        for key, response in ((before, first), (during, created)):
            replay = await pay(http, merchant, key)
            assert replay.status_code == 201 and replay.content == response.content
            assert replay.headers.get("idempotent-replayed") == "true"
        # Concurrent duplicates: the durable reservation lets exactly one run.
        duplicate = secrets.token_hex(8)
        answers = await asyncio.gather(*(pay(http, merchant, duplicate) for _ in range(3)))
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses[0] == 201 and all(status in (201, 409) for status in statuses), statuses
        assert len({answer.json()["id"] for answer in answers if answer.status_code == 201}) == 1
        capture = await http.post(f"/v1/payments/{created.json()['id']}/capture", json={}, headers=merchant.headers)
        assert capture.status_code == 200, capture.text
        ready = await http.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["error"]["param"] == "redis"
        assert app.state.store.failures >= 1  # the store was tried, failed, and was skipped

        await redis_proxy.heal()
        after: list[str] = []

        async def store_used_again() -> bool:
            key = secrets.token_hex(8)
            response = await pay(http, merchant, key)
            assert response.status_code == 201, response.text
            after.append(key)
            client = aioredis.Redis.from_url(redis_url)
            try:
                return bool(await client.exists(f"switch:idem:{merchant.id}:{key}"))
            finally:
                await client.aclose()

        await eventually(store_used_again, 10, "the store in use again")
        assert (await http.get("/health/ready")).status_code == 200
    # One payment per key: before, during, the duplicated one, and each made after Redis returned.
    assert await _payments(database_url, merchant.id) == 3 + len(after)


async def _payments(database_url: str, merchant_id: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM payments WHERE merchant_id = $1", merchant_id))
    finally:
        await connection.close()
