"""Routing config and statistics shared by two real `switch serve` processes through Redis.

Both workers share one PostgreSQL database and Redis. A ``PUT /v1/routing`` or a rollback sent to
one worker must be live on the other within one second (pub/sub invalidation of the other worker's
cached config), and attempts recorded on one worker must reach the other's routing statistics
(its snapshot refreshes about once a second). The account names are random per run: routing
statistics live under the app's fixed Redis prefix and Redis is shared, so no other run's keys
can mix with these.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from adapters.simulator import SimulatorServer
from switch.merchants import create_merchant, set_merchant_providers
from tests.api.helpers import card, fresh_card_number
from tests.conftest import temporary_database
from tests.workers import serve_workers

RUN = secrets.token_hex(3)
FIRST, SECOND = f"acct-a-{RUN}", f"acct-b-{RUN}"
PROVIDERS = """
[accounts.{first}]
provider = "stripe"
api_key = "sk_test_a"
base_url = "{stripe}"

[accounts.{second}]
provider = "stripe"
api_key = "sk_test_b"
base_url = "{stripe}"
"""
LIVE_WITHIN_S = 1.0
STATS_WITHIN_S = 3.0  # one refresh interval (1 s) plus a payment and some scheduling slack


@pytest.fixture(scope="module")
def workers_database(server_url: str) -> Iterator[str]:
    with temporary_database(server_url, "switch_routing_workers_") as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(port=0) as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def workers(sim, workers_database, redis_url, tmp_path_factory) -> AsyncIterator[list[str]]:
    providers = tmp_path_factory.mktemp("routing-workers") / "providers.toml"
    providers.write_text(PROVIDERS.format(first=FIRST, second=SECOND, stripe=sim.url_for("stripe")))
    async with serve_workers(
        workers_database,
        redis_url,
        str(providers),
        {"SWITCH_RATE_LIMIT_PER_S": "1000000", "SWITCH_RATE_LIMIT_BURST": "1000000"},
    ) as urls:
        yield urls


@pytest_asyncio.fixture
async def headers(workers, workers_database, sim) -> dict[str, str]:
    sim.sim.reset()
    sim.sim.config.providers.clear()
    pool = await asyncpg.create_pool(workers_database, min_size=1, max_size=2)
    try:
        merchant, key = await create_merchant(pool, "routing-workers-" + secrets.token_hex(4))
        await set_merchant_providers(pool, merchant.id, (FIRST, SECOND))
    finally:
        await pool.close()
    return {"Authorization": f"Bearer {key}"}


def _priority(*candidates: str) -> dict[str, Any]:
    return {"default": {"strategy": "priority", "candidates": list(candidates)}}


async def _pay(http: httpx.AsyncClient, url: str, headers: dict[str, str], currency: str = "USD") -> dict[str, Any]:
    body = {"amount": 2_000, "currency": currency, "payment_method": card(fresh_card_number())}
    response = await http.post(f"{url}/v1/payments", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _seen_after(http: httpx.AsyncClient, url: str, headers: dict[str, str], version: int, since: float) -> float:
    """Poll the worker's ``GET /v1/routing`` until it answers ``version``; return the delay in seconds."""
    while True:
        response = await http.get(f"{url}/v1/routing", headers=headers)
        assert response.status_code == 200, response.text
        if response.json()["version"] == version:
            return time.monotonic() - since
        if time.monotonic() - since > 5 * LIVE_WITHIN_S:
            pytest.fail(f"version {version} not live on {url} after {5 * LIVE_WITHIN_S} s")
        await asyncio.sleep(0.01)


async def test_a_put_and_a_rollback_on_one_worker_are_live_on_the_other_within_a_second(workers, headers):
    one, other = workers
    async with httpx.AsyncClient(timeout=30) as http:
        first = await http.put(f"{one}/v1/routing", json=_priority(FIRST, SECOND), headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["version"] == 1
        await _seen_after(http, other, headers, 1, time.monotonic())
        # The other worker now has version 1 cached: only the invalidation can show it version 2.
        assert (await _pay(http, other, headers))["routing"]["version"] == 1
        started = time.monotonic()
        second = await http.put(f"{one}/v1/routing", json=_priority(SECOND, FIRST), headers=headers)
        assert second.status_code == 200 and second.json()["version"] == 2, second.text
        put_delay = await _seen_after(http, other, headers, 2, started)
        payment = await _pay(http, other, headers)
        assert payment["routing"]["version"] == 2
        assert payment["provider"] == SECOND  # the new order, not just the new number
        started = time.monotonic()
        rolled = await http.post(f"{one}/v1/routing/rollback", json={"version": 1}, headers=headers)
        assert rolled.status_code == 200, rolled.text
        rollback_delay = await _seen_after(http, other, headers, 1, started)
        payment = await _pay(http, other, headers)
        assert (payment["routing"]["version"], payment["provider"]) == (1, FIRST)
        print(
            f"config live on the other worker: PUT after {put_delay * 1000:.0f} ms,"
            f" rollback after {rollback_delay * 1000:.0f} ms"
        )
        assert put_delay < LIVE_WITHIN_S, put_delay
        assert rollback_delay < LIVE_WITHIN_S, rollback_delay


async def test_routing_stats_recorded_on_one_worker_reach_the_other(workers, headers, sim):
    one, other = workers
    document = {
        "default": {"strategy": "reliable", "candidates": [FIRST, SECOND]},
        "reliable": {"min_samples": 0, "exploration_percent": 0, "window_s": 60},
    }
    # Statistics are kept per account x method x currency: EUR has no history from the other test.
    simulate_body = {"amount": 2_000, "currency": "EUR", "payment_method": card(fresh_card_number())}
    async with httpx.AsyncClient(timeout=30) as http:
        put = await http.put(f"{one}/v1/routing", json=document, headers=headers)
        assert put.status_code == 200, put.text

        async def first_rate() -> float:
            response = await http.post(f"{other}/v1/routing/simulate", json=simulate_body, headers=headers)
            assert response.status_code == 200, response.text
            return next(c for c in response.json()["candidates"] if c["account"] == FIRST)["success_rate"]

        assert await first_rate() == 1.0  # no history: the unmeasured account is tried
        knobs = sim.sim.knobs("stripe")
        knobs.approval_rate, knobs.decline_mix = 0.0, {"do_not_honor": 1.0}
        started = time.monotonic()
        declined = await _pay(http, one, headers, "EUR")
        assert [(a["provider"], a["outcome"]) for a in declined["routing"]["attempts"]] == [(FIRST, "declined_soft")]
        while (rate := await first_rate()) != 0.0:
            assert rate == 1.0, rate
            assert time.monotonic() - started < STATS_WITHIN_S, "the other worker never saw the decline"
            await asyncio.sleep(0.05)
        delay = time.monotonic() - started
        print(f"routing stats seen by the other worker {delay * 1000:.0f} ms after the payment started")
        # The other worker routes on what the first one measured: the declining account goes last.
        knobs.approval_rate, knobs.decline_mix = 1.0, {}
        payment = await _pay(http, other, headers, "EUR")
        assert [a["provider"] for a in payment["routing"]["attempts"]] == [SECOND]
        assert [m.kind for m in sim.sim.books.for_payment(payment["id"])] == ["authorize"]
