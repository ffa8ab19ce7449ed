"""Merchant keys: hashed, rotated with overlap, revoked and expired in bounded time; test and live modes apart."""

from __future__ import annotations

import os
import subprocess
import sys

from switch.merchants import MerchantDirectory, hash_key, list_keys, revoke_key, rotate_key
from tests.api.helpers import create, error_of


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _rotate(db, merchant_id: str, **options):
    async with db.acquire() as connection:
        return await rotate_key(connection, merchant_id, **options)


async def test_keys_are_stored_only_as_hashes(db, merchant):
    rows = await db.fetch("SELECT key_hash, key_prefix FROM merchant_keys WHERE merchant_id = $1", merchant.id)
    assert len(rows) == 1
    assert bytes(rows[0]["key_hash"]) == hash_key(merchant.key)
    assert merchant.key not in rows[0]["key_prefix"] and merchant.key.startswith(rows[0]["key_prefix"])


async def test_rotation_overlaps_until_the_old_key_is_revoked(client, db, merchant):
    facts, new_key = await _rotate(db, merchant.id)
    assert new_key.startswith("sk_test_") and facts.merchant_id == merchant.id
    new_headers = {"Authorization": f"Bearer {new_key}"}
    assert (await client.get("/v1/payments", headers=new_headers)).status_code == 200
    assert (await client.get("/v1/payments", headers=merchant.headers)).status_code == 200  # old one still works
    paid = await create(client, merchant)
    assert (await client.get(f"/v1/payments/{paid.json()['id']}", headers=new_headers)).status_code == 200

    old_id = next(k.id for k in await list_keys(db, merchant.id) if k.id != facts.id)
    clock = Clock(1_000.0)
    directory = MerchantDirectory(db, ttl_s=10, clock=clock)
    assert await directory.authenticate(merchant.key) is not None  # cached from here on
    await revoke_key(db, merchant.id, old_id)
    clock.now += 9.9
    assert await directory.authenticate(merchant.key) is not None  # within the bound, the cache may lag
    clock.now += 0.2
    assert await directory.authenticate(merchant.key) is None  # past it, every worker refuses it
    assert await directory.authenticate(new_key) is not None


async def test_old_keys_expire_exactly_at_their_expiry_even_when_cached(db, merchant):
    start = 2_000_000_000
    _, new_key = await _rotate(db, merchant.id, expires_in_s=3600, now=start)
    clock = Clock(start + 10)
    directory = MerchantDirectory(db, ttl_s=3600 * 24, clock=clock)
    assert await directory.authenticate(merchant.key) is not None
    clock.now = start + 3599
    assert await directory.authenticate(merchant.key) is not None
    clock.now = start + 3600
    assert await directory.authenticate(merchant.key) is None
    assert await directory.authenticate(new_key) is not None


async def test_live_and_test_keys_never_see_each_others_payments_tokens_or_events(client, db, merchant):
    facts, live_key = await _rotate(db, merchant.id, mode="live")
    assert live_key.startswith("sk_live_") and facts.merchant_id == f"{merchant.id}_live"
    live = {"Authorization": f"Bearer {live_key}"}

    live_payment = await client.post(
        "/v1/payments",
        json={"amount": 900, "currency": "EUR", "capture": "manual", "payment_method": {
            "type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031}}},
        headers=live,
    )  # fmt: skip
    assert live_payment.status_code == 201
    assert live_payment.json()["livemode"] is True
    test_payment = (await create(client, merchant, capture="manual")).json()
    assert test_payment["livemode"] is False

    live_id, test_id = live_payment.json()["id"], test_payment["id"]
    assert (await client.get(f"/v1/payments/{live_id}", headers=merchant.headers)).status_code == 404
    assert (await client.get(f"/v1/payments/{test_id}", headers=live)).status_code == 404
    touched = await client.post(f"/v1/payments/{live_id}/capture", json={}, headers=merchant.headers)
    assert touched.status_code == 404 and error_of(touched)["code"] == "resource_missing"
    assert [p["id"] for p in (await client.get("/v1/payments", headers=live)).json()["data"]] == [live_id]

    live_token = live_payment.json()["payment_method"]["card"]["token"]
    crossed = await client.post(
        "/v1/payments",
        json={"amount": 100, "currency": "EUR", "payment_method": {"type": "card_token",
                                                                   "card_token": {"token": live_token}}},
        headers=merchant.headers,
    )  # fmt: skip
    assert crossed.status_code == 404

    live_events = (await client.get("/v1/events", headers=live)).json()["data"]
    assert {e["data"]["object"]["id"] for e in live_events} == {live_id}
    assert all(e["livemode"] is True for e in live_events)
    test_events = (await client.get("/v1/events", headers=merchant.headers)).json()["data"]
    assert live_id not in {e["data"]["object"]["id"] for e in test_events}
    event_id = live_events[0]["id"]
    assert (await client.get(f"/v1/events/{event_id}", headers=merchant.headers)).status_code == 404


async def test_revoke_names_a_key_by_id_or_prefix_and_refuses_unknown_ones(db, merchant):
    facts, _ = await _rotate(db, merchant.id)
    revoked = await revoke_key(db, merchant.id, facts.prefix)
    assert revoked.id == facts.id and revoked.revoked_at is not None
    try:
        await revoke_key(db, merchant.id, facts.id)
    except LookupError as exc:
        assert "no active key" in str(exc)
    else:
        raise AssertionError("revoking twice must fail")


def _switch(*args: str, database_url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    env["SWITCH_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "switch.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


async def test_cli_rotates_lists_and_revokes_keys(database_url, db, merchant):
    name = await db.fetchval("SELECT name FROM merchants WHERE id = $1", merchant.id)
    rotated = _switch("merchants", "rotate-key", name, "--mode", "live", "--expires-in", "2", database_url=database_url)
    assert rotated.returncode == 0, rotated.stderr
    secret = next(line.split()[-1] for line in rotated.stdout.splitlines() if line.startswith("secret key:"))
    key_id = next(line.split()[-1] for line in rotated.stdout.splitlines() if line.startswith("key id:"))
    assert secret.startswith("sk_live_")
    listed = _switch("merchants", "keys", name, database_url=database_url)
    assert listed.returncode == 0 and key_id in listed.stdout and secret not in listed.stdout
    revoked = _switch("merchants", "revoke-key", name, key_id, database_url=database_url)
    assert revoked.returncode == 0, revoked.stderr
    assert await db.fetchval("SELECT revoked_at FROM merchant_keys WHERE id = $1", key_id) is not None
    unknown = _switch("merchants", "revoke-key", name, "key_nope", database_url=database_url)
    assert unknown.returncode == 1 and "no active key" in unknown.stderr
