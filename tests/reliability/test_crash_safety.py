"""``switch serve`` killed with SIGKILL in the middle of a load of keyed payments: after a restart
every payment the client saw acknowledged is there exactly once, every retry with its key replays
it exactly, nothing answers 5xx but 503, and ``switch ledger verify`` is clean."""

from __future__ import annotations

import asyncio
import secrets
import subprocess

import asyncpg
import httpx
import pytest

from switch.ledger.migrate import migrate
from switch.merchants import create_merchant
from tests.conftest import temporary_database
from tests.reliability.helpers import body_for
from tests.reliability.processes import SWITCH, Served, switch_env

CLIENTS = 6
KILL_AFTER_ACKS = 25


@pytest.fixture
def crash_database(server_url):
    with temporary_database(server_url, "switch_crash_") as url:
        yield url


async def _merchant_key(url: str) -> tuple[str, str]:
    connection = await asyncpg.connect(url)
    try:
        await migrate(connection)
        merchant, key = await create_merchant(connection, "crash-" + secrets.token_hex(4))
    finally:
        await connection.close()
    return merchant.id, key


async def _load(url: str, key: str, acknowledged: dict[str, bytes], sent: list[str], stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:

        async def client() -> None:
            while not stop.is_set():
                idem = secrets.token_hex(8)
                sent.append(idem)
                try:
                    response = await http.post(
                        "/v1/payments",
                        json=body_for(idem),
                        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idem},
                    )
                except httpx.TransportError:
                    return  # the server died under this request: no answer, nothing acknowledged
                if response.status_code == 201:
                    acknowledged[idem] = response.content

        await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def _post(http: httpx.AsyncClient, headers: dict[str, str], idem: str) -> httpx.Response:
    return await http.post("/v1/payments", json=body_for(idem), headers={**headers, "Idempotency-Key": idem})


async def test_a_kill_9_under_load_loses_nothing_acknowledged(crash_database, tmp_path):
    merchant_id, key = await _merchant_key(crash_database)
    env = switch_env(SWITCH_DATABASE_URL=crash_database, SWITCH_DATA_DIR=str(tmp_path), SWITCH_SANDBOX_LATENCY_MS="20")
    acknowledged: dict[str, bytes] = {}
    sent: list[str] = []
    first = Served(env, tmp_path / "log")
    try:
        await asyncio.to_thread(first.wait_ready)
        stop = asyncio.Event()
        load = asyncio.create_task(_load(first.url, key, acknowledged, sent, stop))
        while len(acknowledged) < KILL_AFTER_ACKS:
            await asyncio.sleep(0.01)
        first.process.kill()  # SIGKILL with requests in flight
        stop.set()
        await load
        first.wait(within_s=10)
    finally:
        first.stop()
    assert len(sent) > len(acknowledged)  # some requests were cut off unanswered

    second = Served(env, tmp_path / "log")
    try:
        await asyncio.to_thread(second.wait_ready)
        async with httpx.AsyncClient(base_url=second.url, timeout=10) as http:
            headers = {"Authorization": f"Bearer {key}"}
            for idem, body in acknowledged.items():
                replay = await _post(http, headers, idem)
                assert replay.status_code == 201 and replay.content == body, idem
                assert replay.headers["idempotent-replayed"] == "true"
            for idem in set(sent) - set(acknowledged):
                retry = await _post(http, headers, idem)
                # Ran anew, replayed, or 409 while its intent waits for recovery: never a 500.
                assert retry.status_code in (201, 409, 503), retry.text
    finally:
        second.process.terminate()
        second.wait(within_s=30)
        second.stop()
    connection = await asyncpg.connect(crash_database)
    try:
        for idem, body in acknowledged.items():
            payment_id = httpx.Response(201, content=body).json()["id"]
            count = await connection.fetchval(
                "SELECT count(*) FROM payments WHERE id = $1 AND merchant_id = $2", payment_id, merchant_id
            )
            assert count == 1, idem
            keyed = await connection.fetchval(
                "SELECT count(DISTINCT payment_id) FROM payment_attempts"
                " WHERE merchant_id = $1 AND idempotency_key = $2",
                merchant_id,
                idem,
            )
            assert keyed == 1, idem
    finally:
        await connection.close()
    verify = subprocess.run(
        [*SWITCH, "ledger", "verify"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
