"""Two real `switch serve` processes sharing PostgreSQL and Redis race captures and refunds on one
payment. The provider (the simulator, answering slowly so both requests are in flight at once)
keeps its own books of what it performed: every race must end with money moved once at the
provider, the switch showing exactly that, and the ledger verified."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
import pytest_asyncio

from adapters.simulator import SimulatorServer
from switch.ledger.verify import verify_ledger
from switch.merchants import create_merchant, set_merchant_providers
from tests.api.helpers import card, fresh_card_number
from tests.conftest import temporary_database
from tests.workers import serve_workers

PROVIDERS = """
[accounts.stripe]
provider = "stripe"
api_key = "sk_test_simulator"
webhook_secret = "whsec_simulator"
base_url = "{stripe}"
"""
ROUNDS = 6


@pytest.fixture(scope="module")
def race_database(server_url: str) -> Iterator[str]:
    with temporary_database(server_url, "switch_race_") as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(port=0) as server:
        # Slow enough that both workers' requests are in flight at the same time.
        server.sim.knobs("stripe").latency.ms = 300
        yield server


@pytest_asyncio.fixture(scope="module")
async def workers(sim, race_database, redis_url, tmp_path_factory) -> AsyncIterator[list[str]]:
    providers = tmp_path_factory.mktemp("race") / "providers.toml"
    providers.write_text(PROVIDERS.format(stripe=sim.url_for("stripe")))
    async with serve_workers(race_database, redis_url, str(providers)) as urls:
        yield urls


@pytest_asyncio.fixture(scope="module")
async def merchant_key(workers, race_database) -> str:
    pool = await asyncpg.create_pool(race_database, min_size=1, max_size=2)
    try:
        merchant, key = await create_merchant(pool, "race-" + secrets.token_hex(4))
        await set_merchant_providers(pool, merchant.id, ("stripe",))
    finally:
        await pool.close()
    return key


def _headers(key: str, idempotency_key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


async def _authorized(http: httpx.AsyncClient, url: str, key: str, amount: int) -> dict:
    # A new card per payment: the race is about one payment, not about card velocity.
    body = {"amount": amount, "currency": "EUR", "capture": "manual", "payment_method": card(fresh_card_number())}
    response = await http.post(f"{url}/v1/payments", json=body, headers=_headers(key, secrets.token_hex(8)))
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "authorized", payment
    return payment


async def test_captures_raced_from_two_worker_processes_capture_once_at_the_provider(
    workers, merchant_key, sim, race_database
):
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(ROUNDS):
            payment = await _authorized(http, workers[0], merchant_key, 5_000)
            first, second = await asyncio.gather(
                *(
                    http.post(
                        f"{url}/v1/payments/{payment['id']}/capture",
                        json={},
                        headers=_headers(merchant_key, secrets.token_hex(8)),
                    )
                    for url in workers
                )
            )
            statuses = sorted([first.status_code, second.status_code])
            assert statuses == [200, 409], (first.text, second.text)
            loser = first if first.status_code == 409 else second
            assert loser.json()["error"]["code"] in {"payment_operation_in_progress", "payment_already_captured"}
            performed = [m for m in sim.sim.books.for_payment(payment["id"]) if m.kind == "capture"]
            assert len(performed) == 1
            shown = (await http.get(f"{workers[1]}/v1/payments/{payment['id']}", headers=_headers(merchant_key))).json()
            assert shown["amount_captured"] == performed[0].amount == 5_000
    pool = await asyncpg.create_pool(race_database, min_size=1, max_size=2)
    try:
        report = await verify_ledger(pool)
        assert report.ok, report.render()
    finally:
        await pool.close()


async def test_refunds_raced_from_two_worker_processes_refund_once_at_the_provider(
    workers, merchant_key, sim, race_database
):
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(ROUNDS):
            payment = await _authorized(http, workers[0], merchant_key, 8_000)
            captured = await http.post(
                f"{workers[0]}/v1/payments/{payment['id']}/capture", json={}, headers=_headers(merchant_key)
            )
            assert captured.status_code == 200, captured.text
            # Each worker asks to refund the whole amount: together they would refund twice.
            answers = await asyncio.gather(
                *(
                    http.post(
                        f"{url}/v1/payments/{payment['id']}/refunds",
                        json={"amount": 8_000},
                        headers=_headers(merchant_key, secrets.token_hex(8)),
                    )
                    for url in workers
                )
            )
            assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
            refunds = [m for m in sim.sim.books.for_payment(payment["id"]) if m.kind == "refund"]
            assert [m.amount for m in refunds] == [8_000]
            shown = (await http.get(f"{workers[1]}/v1/payments/{payment['id']}", headers=_headers(merchant_key))).json()
            assert (shown["status"], shown["amount_refunded"]) == ("refunded", 8_000)
    pool = await asyncpg.create_pool(race_database, min_size=1, max_size=2)
    try:
        report = await verify_ledger(pool)
        assert report.ok, report.render()
    finally:
        await pool.close()
