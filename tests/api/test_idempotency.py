"""Idempotency as Stripe promises it: replay, reuse refusal, concurrent duplicates, durability."""

from __future__ import annotations

import asyncio
import secrets

from tests.api.helpers import authorized, create, error_of, payment_body


def _key() -> str:
    return "key-" + secrets.token_hex(8)


async def _journal_count(db, payment_id: str) -> int:
    return await db.fetchval("SELECT count(*) FROM journal_transactions WHERE payment_id = $1", payment_id)


async def test_same_key_and_body_replays_the_stored_response(client, merchant):
    key = _key()
    first = await create(client, merchant, idempotency_key=key)
    second = await create(client, merchant, idempotency_key=key)
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


async def test_same_key_with_another_body_is_422(client, merchant):
    key = _key()
    await create(client, merchant, idempotency_key=key, amount=1000)
    response = await create(client, merchant, idempotency_key=key, amount=2000)
    assert response.status_code == 422
    error = error_of(response)
    assert (error["type"], error["code"]) == ("idempotency_error", "idempotency_key_reused")


async def test_same_key_on_another_endpoint_is_422(client, merchant):
    key = _key()
    payment = await authorized(client, merchant)
    headers = {**merchant.headers, "Idempotency-Key": key}
    await client.post(f"/v1/payments/{payment['id']}/capture", headers=headers, json={"amount": 10})
    response = await client.post("/v1/payments", json=payment_body(), headers=headers)
    assert response.status_code == 422


async def test_a_declined_payment_is_replayed_too(client, merchant):
    key = _key()
    first = await create(client, merchant, idempotency_key=key, number="4000000000000002")
    second = await create(client, merchant, idempotency_key=key, number="4000000000000002")
    assert second.content == first.content
    assert second.json()["status"] == "declined"


async def test_fifty_concurrent_duplicates_make_one_provider_call_and_one_ledger_transaction(client, merchant, app, db):
    sandbox = app.state.adapters["sandbox"]
    sandbox.latency_s = 0.05  # keep the first request in flight while the duplicates arrive
    try:
        before = sandbox.calls["authorize"]
        key = _key()
        responses = await asyncio.gather(*(create(client, merchant, idempotency_key=key) for _ in range(50)))
    finally:
        sandbox.latency_s = 0
    assert sandbox.calls["authorize"] == before + 1
    created = [r for r in responses if r.status_code == 201]
    in_use = [r for r in responses if r.status_code == 409]
    assert len(created) + len(in_use) == 50
    assert len({r.json()["id"] for r in created}) == 1
    assert all(error_of(r)["code"] == "idempotency_key_in_use" for r in in_use)
    payment_id = created[0].json()["id"]
    assert await _journal_count(db, payment_id) == 1
    assert await db.fetchval("SELECT count(*) FROM payments WHERE merchant_id = $1", merchant.id) == 1


async def test_concurrent_duplicate_captures_capture_once(client, merchant, db):
    payment = await authorized(client, merchant, amount=1000)
    headers = {**merchant.headers, "Idempotency-Key": _key()}
    path = f"/v1/payments/{payment['id']}/capture"
    responses = await asyncio.gather(*(client.post(path, json={"amount": 100}, headers=headers) for _ in range(20)))
    assert {r.status_code for r in responses} <= {200, 409}
    current = (await client.get(f"/v1/payments/{payment['id']}", headers=merchant.headers)).json()
    assert current["amount_captured"] == 100
    kinds = await db.fetch("SELECT kind FROM journal_transactions WHERE payment_id = $1", payment["id"])
    assert sorted(r["kind"] for r in kinds) == ["authorize", "capture"]


async def test_replay_survives_the_fast_store_forgetting_the_key(client, merchant, app):
    key = _key()
    first = await create(client, merchant, idempotency_key=key)
    await app.state.store.delete(f"idem:{merchant.id}:{key}")
    second = await create(client, merchant, idempotency_key=key)
    assert second.status_code == 201
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_reuse_is_refused_even_after_the_fast_store_forgot_the_key(client, merchant, app):
    key = _key()
    await create(client, merchant, idempotency_key=key, amount=1000)
    await app.state.store.delete(f"idem:{merchant.id}:{key}")
    response = await create(client, merchant, idempotency_key=key, amount=999)
    assert response.status_code == 422


async def test_refused_requests_release_their_key(client, merchant):
    key = _key()
    payment = await authorized(client, merchant, amount=1000)
    headers = {**merchant.headers, "Idempotency-Key": key}
    path = f"/v1/payments/{payment['id']}/capture"
    refused = await client.post(path, json={"amount": 5000}, headers=headers)
    assert refused.status_code == 400
    again = await client.post(path, json={"amount": 5000}, headers=headers)
    assert again.status_code == 400
    assert error_of(again)["code"] == "amount_exceeds_capturable"


async def test_without_a_key_every_post_is_new(client, merchant):
    first = await create(client, merchant)
    second = await create(client, merchant)
    assert first.json()["id"] != second.json()["id"]


async def test_an_overlong_key_is_rejected(client, merchant):
    response = await create(client, merchant, idempotency_key="k" * 256)
    assert response.status_code == 400
    assert error_of(response)["code"] == "idempotency_key_invalid"


async def test_expired_keys_are_purged_and_may_be_used_again(client, merchant, app, db):
    import time

    from switch.payments.retention import purge_expired_keys

    key = _key()
    first = await create(client, merchant, idempotency_key=key, amount=1000)
    removed = await purge_expired_keys(db, ttl_s=60, now=time.time() + 3600)
    assert removed >= 1
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = $1", key) == 0
    await app.state.store.delete(f"idem:{merchant.id}:{key}")
    again = await create(client, merchant, idempotency_key=key, amount=2000)
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]


async def test_keys_within_retention_are_kept(client, merchant, db):
    from switch.payments.retention import purge_expired_keys

    key = _key()
    await create(client, merchant, idempotency_key=key)
    await purge_expired_keys(db, ttl_s=86_400)
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = $1", key) == 1
