"""The fault table: every way a provider call can go wrong, against a provider that keeps books.

A merchant routes to two Stripe accounts in priority order (both served by the simulator, whose
books record what it *performed*, whatever it then answered). For every fault, once the switch
has answered and recovery has run:

* no payment is charged twice (at two accounts, or twice at one);
* no money moved at the provider that the switch does not show (and the other way round);
* a request retried with the same Idempotency-Key moves no money again;
* ``ledger verify`` is clean.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from litestar import Litestar

from adapters.simulator import SimulatorServer
from adapters.simulator.knobs import Fault
from switch.config import Settings
from switch.ledger.verify import verify_ledger
from switch.merchants import create_merchant, set_merchant_providers
from tests.api.helpers import card
from tests.conftest import MerchantKey, running_app, temporary_database
from tests.faults import database_lost_at

# Short deadlines keep the table fast: a call is given up after 1 s; a look-up by our own id is
# trusted to say "nothing" once the attempt is 2 s old.
PROVIDERS = """
[accounts.stripe-a]
provider = "stripe"
api_key = "sk_test_a"
base_url = "{stripe}"
timeout_s = 1.0
lookup_consistency_s = 2

[accounts.stripe-b]
provider = "stripe"
api_key = "sk_test_b"
base_url = "{stripe}"
timeout_s = 1.0
lookup_consistency_s = 2
"""
LATER = 3600  # recovery runs as if an hour had passed: past every grace period and backoff


@pytest.fixture(scope="module")
def fault_database(server_url: str) -> Iterator[str]:
    with temporary_database(server_url, "switch_faults_") as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(port=0) as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def switch_app(sim, fault_database, tmp_path_factory) -> AsyncIterator[Litestar]:
    path = tmp_path_factory.mktemp("faults") / "providers.toml"
    path.write_text(PROVIDERS.format(stripe=sim.url_for("stripe")))
    async with running_app(Settings(database_url=fault_database, providers_file=str(path))) as app:
        yield app


@pytest_asyncio.fixture(scope="module")
async def client(switch_app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=switch_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://switch.test", timeout=30) as http:
        yield http


@pytest_asyncio.fixture
async def merchant(switch_app, sim) -> MerchantKey:
    sim.sim.reset()
    sim.sim.knobs("stripe").faults.clear()
    sim.sim.knobs("stripe").search_lag_ms = 0.0
    sim.sim.knobs("stripe").search_down = False
    created, key = await create_merchant(switch_app.state.pool, "faults-" + secrets.token_hex(4))
    await set_merchant_providers(switch_app.state.pool, created.id, ("stripe-a", "stripe-b"))
    return MerchantKey(created.id, key)


def _fault(sim: SimulatorServer, kind: str, match: str, **extra: object) -> None:
    sim.sim.knobs("stripe").faults.append(Fault(kind=kind, match=match, method="POST", **extra))  # type: ignore[arg-type]


async def _pay(client: httpx.AsyncClient, merchant: MerchantKey, key: str, capture: str = "automatic"):
    body = {"amount": 2_500, "currency": "EUR", "capture": capture, "payment_method": card("4242424242424242")}
    return await client.post("/v1/payments", json=body, headers={**merchant.headers, "Idempotency-Key": key})


async def _recover(app: Litestar) -> None:
    await app.state.recovery.run_once(now=time.time() + LATER)


async def _shown(client: httpx.AsyncClient, merchant: MerchantKey, payment_id: str) -> dict:
    response = await client.get(f"/v1/payments/{payment_id}", headers=merchant.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _assert_books_agree(app: Litestar, client, merchant, sim: SimulatorServer, payment_id: str) -> None:
    """What the provider performed is what the switch shows, and the ledger verifies."""
    books = sim.sim.books
    charges = [m for m in books.for_payment(payment_id) if m.kind == "authorize"]
    assert len(charges) <= 1, f"charged {len(charges)} times: {charges}"
    totals = books.totals(payment_id)
    shown = await _shown(client, merchant, payment_id)
    assert shown["amount_captured"] == totals["captured"], (shown, totals)
    assert shown["amount_refunded"] == totals["refunded"], (shown, totals)
    if charges:
        assert shown["status"] not in ("failed", "declined", "pending"), shown
    else:
        assert shown["status"] in ("failed", "declined", "pending"), shown
    report = await verify_ledger(app.state.pool)
    assert report.ok, report.render()


# ---------------------------------------------------------------------------------- authorizations

AUTHORIZE_FAULTS = {
    "perform_then_stall": {"kind": "stall", "ms": 2_500},
    "perform_then_500": {"kind": "error_after", "status": 500},
    "perform_then_drop": {"kind": "drop_after"},
    "409_in_progress": {"kind": "stall_in_flight", "ms": 2_500},
}


@pytest.mark.parametrize("fault", sorted(AUTHORIZE_FAULTS))
async def test_an_authorization_the_provider_performed_is_charged_once_and_shown(
    fault, switch_app, client, merchant, sim
):
    _fault(sim, match="/payment_intents", **AUTHORIZE_FAULTS[fault])
    key = secrets.token_hex(8)
    response = await _pay(client, merchant, key)
    assert response.status_code == 201, response.text
    payment = response.json()
    # Never cascaded: the first account's answer was lost, not refused.
    assert [a["provider"] for a in payment["routing"]["attempts"]] == ["stripe-a"]
    await _recover(switch_app)
    await _assert_books_agree(switch_app, client, merchant, sim, payment["id"])
    assert (await _shown(client, merchant, payment["id"]))["status"] == "captured"
    retry = await _pay(client, merchant, key)
    assert retry.status_code == 201 and retry.json()["id"] == payment["id"]
    assert len(sim.sim.books.for_payment(payment["id"])) == 1


async def test_a_refusal_without_processing_fails_over_and_charges_only_the_next_account(
    switch_app, client, merchant, sim
):
    _fault(sim, "refuse", match="/payment_intents", status=429, count=3, retry_after="0")
    response = await _pay(client, merchant, secrets.token_hex(8))
    payment = response.json()
    assert [a["outcome"] for a in payment["routing"]["attempts"]] == ["technical", "approved"]
    assert payment["provider"] == "stripe-b"
    await _assert_books_agree(switch_app, client, merchant, sim, payment["id"])


async def test_a_5xx_that_processed_nothing_never_cascades_and_recovery_fails_it_after_the_window(
    switch_app, client, merchant, sim
):
    registry = switch_app.state.metrics.registry
    labels = {"provider": "stripe-a", "flow": "authorize"}
    unknown_before = registry.get_sample_value("switch_unknown_outcomes_total", labels) or 0
    _fault(sim, "refuse", match="/payment_intents", status=503, count=20)
    response = await _pay(client, merchant, secrets.token_hex(8))
    payment = response.json()
    assert (payment["status"], payment["pending_reason"]) == ("pending", "provider_outcome_unknown")
    assert registry.get_sample_value("switch_unknown_outcomes_total", labels) == unknown_before + 1
    assert [a["provider"] for a in payment["routing"]["attempts"]] == ["stripe-a"]
    sim.sim.knobs("stripe").faults.clear()
    await asyncio.sleep(2.1)  # past the account's look-up consistency window
    await _recover(switch_app)
    assert (await _shown(client, merchant, payment["id"]))["status"] == "failed"
    await _assert_books_agree(switch_app, client, merchant, sim, payment["id"])


@pytest.mark.parametrize("search", ["down", "lagging"])
async def test_a_lost_answer_while_search_is_down_or_lagging_answers_pending_then_recovery_books_it(
    search, switch_app, client, merchant, sim
):
    knobs = sim.sim.knobs("stripe")
    if search == "down":
        knobs.search_down = True
    else:
        knobs.search_lag_ms = 60_000.0
    # Stripe stores the 500 under the key, so the replay answers 500 too: only a look-up can tell.
    _fault(sim, "error_after", match="/payment_intents", status=500)
    response = await _pay(client, merchant, secrets.token_hex(8))
    payment = response.json()
    assert (payment["status"], payment["pending_reason"]) == ("pending", "provider_outcome_unknown"), payment
    assert [a["provider"] for a in payment["routing"]["attempts"]] == ["stripe-a"]
    # Recovery while the look-up still cannot see it changes nothing (a lagging "not found" is no proof).
    await _recover(switch_app)
    assert (await _shown(client, merchant, payment["id"]))["status"] == "pending"
    knobs.search_down, knobs.search_lag_ms = False, 0.0
    await switch_app.state.recovery.run_once(now=time.time() + 2 * LATER)
    assert (await _shown(client, merchant, payment["id"]))["status"] == "captured"
    await _assert_books_agree(switch_app, client, merchant, sim, payment["id"])


async def test_a_ledger_commit_failing_after_the_provider_charged_is_booked_by_recovery(
    switch_app, client, merchant, sim
):
    key = secrets.token_hex(8)
    with database_lost_at(switch_app, 2):  # the outcome batch, after the provider approved
        failed = await _pay(client, merchant, key)
    assert failed.status_code == 503
    charged = [m for m in sim.sim.books.movements if m.kind == "authorize"]
    assert len(charged) == 1
    await _recover(switch_app)
    retry = await _pay(client, merchant, key)
    assert retry.status_code == 201, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["status"] == "captured"
    assert retry.json()["id"] == charged[0].payment_id
    assert len(sim.sim.books.movements) == 1
    await _assert_books_agree(switch_app, client, merchant, sim, retry.json()["id"])


async def test_a_restart_between_the_call_and_the_answer_is_settled_by_recovery(switch_app, client, merchant, sim):
    key = secrets.token_hex(8)
    _fault(sim, "stall", match="/payment_intents", ms=2_500)
    request = asyncio.create_task(_pay(client, merchant, key))
    for _ in range(100):  # wait until the provider has performed the charge
        if sim.sim.books.movements:
            break
        await asyncio.sleep(0.02)
    request.cancel()  # the worker dies: no answer, no outcome written
    with pytest.raises(asyncio.CancelledError):
        await request
    payment_id = sim.sim.books.movements[0].payment_id
    await _recover(switch_app)
    retry = await _pay(client, merchant, key)
    assert retry.status_code == 201, retry.text
    assert (retry.json()["id"], retry.json()["status"]) == (payment_id, "captured")
    assert len(sim.sim.books.movements) == 1
    await _assert_books_agree(switch_app, client, merchant, sim, payment_id)


# ---------------------------------------------------------------------------------- captures, refunds

MUTATION_FAULTS = {
    "perform_then_stall": {"kind": "stall", "ms": 2_500},
    "perform_then_500": {"kind": "error_after", "status": 500},
    "perform_then_drop": {"kind": "drop_after"},
    "409_in_progress": {"kind": "stall_in_flight", "ms": 2_500},
    "refuse_503": {"kind": "refuse", "status": 503, "count": 20},
}


async def _authorized(client, merchant) -> dict:
    response = await _pay(client, merchant, secrets.token_hex(8), capture="manual")
    assert response.status_code == 201 and response.json()["status"] == "authorized", response.text
    return response.json()


async def _retry_until_settled(client, app, path: str, body: dict, headers: dict) -> httpx.Response:
    """Retry with the same key, as a merchant should; recovery runs meanwhile."""
    response = await client.post(path, json=body, headers=headers)
    for _ in range(4):
        if response.status_code not in (409, 503):
            return response
        if response.status_code == 503:
            assert response.headers["Retry-After"].isdigit()
        await asyncio.sleep(1.0)  # a stalled provider call may still hold its key in flight
        await _recover(app)
        response = await client.post(path, json=body, headers=headers)
    return response


@pytest.mark.parametrize("fault", sorted(MUTATION_FAULTS))
@pytest.mark.parametrize("operation", ["capture", "refund"])
async def test_a_capture_or_refund_whose_answer_was_lost_moves_money_once(
    operation, fault, switch_app, client, merchant, sim
):
    payment = await _authorized(client, merchant)
    base = f"/v1/payments/{payment['id']}"
    if operation == "refund":
        captured = await client.post(f"{base}/capture", json={}, headers=merchant.headers)
        assert captured.status_code == 200, captured.text
    path, match = (f"{base}/capture", "/capture") if operation == "capture" else (f"{base}/refunds", "/refunds")
    body = {"amount": 1_000}
    headers = {**merchant.headers, "Idempotency-Key": secrets.token_hex(8)}
    _fault(sim, match=match, **MUTATION_FAULTS[fault])
    first = await client.post(path, json=body, headers=headers)
    assert first.status_code in (200, 201, 503), first.text
    if first.status_code == 503:
        assert first.json()["error"]["code"] == "provider_outcome_unknown"
        # The payment is held by the open operation: nobody else may move its money meanwhile.
        other = await client.post(path, json=body, headers={**merchant.headers, "Idempotency-Key": "other"})
        assert other.status_code == 409
    sim.sim.knobs("stripe").faults.clear()
    settled = await _retry_until_settled(client, switch_app, path, body, headers)
    assert settled.status_code in (200, 201), settled.text
    again = await client.post(path, json=body, headers=headers)
    assert again.content == settled.content
    kind = "capture" if operation == "capture" else "refund"
    moved = [m for m in sim.sim.books.for_payment(payment["id"]) if m.kind == kind]
    assert [m.amount for m in moved] == [1_000]
    await _assert_books_agree(switch_app, client, merchant, sim, payment["id"])


async def test_a_capture_whose_outcome_batch_fails_once_is_booked_by_writing_it_again(
    switch_app, client, merchant, sim
):
    payment = await _authorized(client, merchant)
    failed_before = switch_app.state.writer.batches_failed
    with database_lost_at(switch_app, 2):  # 1: the intent; 2: the outcome, after Stripe captured
        response = await client.post(
            f"/v1/payments/{payment['id']}/capture", json={}, headers={**merchant.headers, "Idempotency-Key": "c1"}
        )
    assert response.status_code == 200, response.text
    assert switch_app.state.writer.batches_failed == failed_before + 1
    assert [m.kind for m in sim.sim.books.for_payment(payment["id"])] == ["authorize", "capture"]
    await _assert_books_agree(switch_app, client, merchant, sim, payment["id"])
