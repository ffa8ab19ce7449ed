"""``switch vault rotate-key``: online (no request fails while payments run), and master keys re-wrap."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import asyncpg
import httpx
import msgspec
import pytest

from switch.app import load_vault_keys
from switch.errors import PaymentError
from switch.ledger.migrate import migrate
from switch.merchants import create_merchant
from switch.payments.methods import prepare_method
from switch.payments.model import PaymentCreate
from switch.vault.cards import Vault
from switch.vault.keys import MasterKeyRing
from switch.vault.rotation import rotate_key
from switch.vault.store import DataKeyStore
from tests.api.helpers import fresh_card_number
from tests.conftest import running_app, temporary_database, without_card_velocity


def _card_body(number: str) -> dict:
    return {"amount": 1200, "currency": "EUR", "payment_method": {
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}}}  # fmt: skip


def _token_body(token: str) -> dict:
    return {"amount": 800, "currency": "EUR", "payment_method": {"type": "card_token", "card_token": {"token": token}}}


async def test_rotation_while_payments_run_fails_no_request(settings, database_url, db):
    unlimited = msgspec.structs.replace(settings, rate_limit_per_s=1_000_000, rate_limit_burst=1_000_000)
    async with running_app(unlimited) as application:
        created, key = await create_merchant(application.state.pool, "rotation-load-" + os.urandom(4).hex())
        await without_card_velocity(application, created.id)  # saved cards pay again and again here
        headers = {"Authorization": f"Bearer {key}"}
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://switch.test") as http:
            tokens = []
            for _ in range(40):
                paid = await http.post("/v1/payments", json=_card_body(fresh_card_number()), headers=headers)
                assert paid.status_code == 201
                tokens.append(paid.json()["payment_method"]["card"]["token"])
            before = await db.fetchval("SELECT count(*) FROM vault_cards WHERE merchant_id = $1", created.id)
            assert before == 40

            rotated = asyncio.Event()
            answers: list[tuple[int, str]] = []

            async def load(worker: int) -> None:
                i = 0
                # Keep paying until the rotation is over, and a little beyond.
                while not rotated.is_set() or i < 10:
                    if i % 2:
                        # Each saved card pays a few times at most: velocity rules stay quiet.
                        response = await http.post("/v1/payments", json=_token_body(tokens[(7 * worker + i) % 40]),
                                                   headers=headers)  # fmt: skip
                    else:
                        response = await http.post(
                            "/v1/payments", json=_card_body(fresh_card_number()), headers=headers
                        )
                    answers.append((response.status_code, response.json().get("status", response.text)))
                    i += 1

            async def rotate() -> None:
                connection = await asyncpg.connect(database_url)
                try:
                    report = await rotate_key(connection, load_vault_keys(unlimited), batch_size=7)
                finally:
                    await connection.close()
                rotated.set()
                assert report.resealed >= 40

            await asyncio.gather(*(load(n) for n in range(6)), rotate())

        assert len(answers) >= 60
        assert {answer for answer in answers} == {(201, "captured")}, {a for a in answers if a != (201, "captured")}
        new_key = await db.fetchval("SELECT id FROM vault_keys WHERE active")
        # Every card saved before the rotation is sealed under the new key now, and still pays.
        assert (
            await db.fetchval(
                "SELECT count(*) FROM vault_cards WHERE token = ANY($1::text[]) AND key_id <> $2", tokens, new_key
            )
            == 0
        )


@pytest.fixture
def own_database(server_url: str) -> Iterator[str]:
    """A database of its own: this test swaps the master key, which the session's app must not see."""
    with temporary_database(server_url, "switch_vault_") as url:
        yield url


async def test_master_key_rotation_rewraps_every_data_key(own_database):
    old, new = os.urandom(32), os.urandom(32)
    url = own_database
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as connection:
            await migrate(connection)
        merchant, _ = await create_merchant(pool, "vault-master")
        old_keys = DataKeyStore(pool, MasterKeyRing(old))
        await old_keys.start()
        vault = Vault(b"f" * 32, old_keys)
        summary = vault.summarize("4242424242424242", 12, 2031)
        sealed = await vault.seal(merchant.id, summary, "4242424242424242", "Ada")
        assert sealed is not None
        await pool.execute(
            "INSERT INTO vault_cards SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12",
            *(getattr(sealed, f) for f in ("token", "merchant_id", "key_id", "nonce", "ciphertext", "brand", "bin",
                                             "last4", "exp_month", "exp_year", "fingerprint", "created")),
        )  # fmt: skip

        both = MasterKeyRing(new, (old,))
        async with pool.acquire() as connection:
            report = await rotate_key(connection, both)
        assert report.rewrapped >= 1 and report.resealed == 1 and report.remaining == 0
        masters = {row["master_key_id"] for row in await pool.fetch("SELECT master_key_id FROM vault_keys")}
        assert masters == {both.current_id}

        # The old master key can be dropped now: the new one alone opens the card.
        only_new = Vault(b"f" * 32, DataKeyStore(pool, MasterKeyRing(new)))
        opened = await only_new.open_token(merchant.id, sealed.token)
        assert opened is not None and opened.number == "4242424242424242" and opened.holder_name == "Ada"
        assert await only_new.open_token("mer_other", sealed.token) is None
        # A worker still on the old master key starts, without saved cards, instead of failing.
        stale = DataKeyStore(pool, MasterKeyRing(old))
        await stale.start()
        assert not stale.available
        stale_vault = Vault(b"f" * 32, stale)
        assert await stale_vault.seal(merchant.id, summary, "4242424242424242", None) is None
        request = msgspec.json.decode(
            msgspec.json.encode(
                {"amount": 100, "currency": "EUR",
                 "payment_method": {"type": "card_token", "card_token": {"token": sealed.token}}}
            ),
            type=PaymentCreate,
        )  # fmt: skip
        with pytest.raises(PaymentError) as refused:
            await prepare_method(request, stale_vault, merchant.id)
        assert (refused.value.kind, refused.value.code) == ("unavailable", "vault_unavailable")
    finally:
        await pool.close()


def test_cli_rotate_key_reports_what_it_did(server_url, tmp_path):
    with temporary_database(server_url, "switch_vault_cli_") as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
        env.update({"SWITCH_DATABASE_URL": url, "SWITCH_VAULT_MASTER_KEY": os.urandom(32).hex()})
        run = [sys.executable, "-m", "switch.cli", "vault", "rotate-key"]
        first = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60)
        assert first.returncode == 0, first.stderr
        assert "active data key: dk_" in first.stdout and "re-sealed 0 card(s)" in first.stdout
        env["SWITCH_VAULT_MASTER_KEY"] = os.urandom(32).hex()  # a master key that wraps nothing here
        second = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60)
        assert second.returncode == 1
        assert "SWITCH_VAULT_PREVIOUS_MASTER_KEYS" in second.stderr and "Traceback" not in second.stderr
