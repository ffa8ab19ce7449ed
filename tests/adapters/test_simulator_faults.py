"""The simulator's fault table: what a caller sees, kept apart from what the provider performed.

Every test drives a real SimulatorServer with plain aiohttp requests (no adapter, no switch) and
checks both sides: the answer (or the lack of one) and the provider's state and books
(``sim.books``), which record what was performed whatever was answered.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from adapters.simulator import Fault, SimulatorServer, load_config
from adapters.simulator.books import Movement
from adapters.simulator.knobs import ProviderKnobs
from tests.adapters.conftest import Admin

STRIPE_AUTH = {"Authorization": "Bearer sk_test_simulator"}


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A fresh client per test, so that a dropped or timed-out connection never leaks into the next."""
    async with aiohttp.ClientSession() as session:
        yield session


class Charge:
    """One Stripe card sale (``confirm=true``, automatic capture) with its own idempotency key."""

    def __init__(self, server: SimulatorServer, amount: int = 1250) -> None:
        self.server = server
        self.payment_id = f"pay_{uuid.uuid4().hex[:12]}"
        self.key = uuid.uuid4().hex
        self.amount = amount
        self.url = f"{server.url_for('stripe')}/v1/payment_intents"
        self.form = {
            "amount": str(amount),
            "currency": "eur",
            "confirm": "true",
            "payment_method_data[type]": "card",
            "payment_method_data[card][number]": "4242424242424242",
            "payment_method_data[card][exp_month]": "12",
            "payment_method_data[card][exp_year]": "2030",
            "metadata[payment_id]": self.payment_id,
            "metadata[attempt_id]": f"att_{uuid.uuid4().hex[:12]}",
        }

    @property
    def headers(self) -> dict[str, str]:
        return {**STRIPE_AUTH, "Idempotency-Key": self.key}

    async def send(self, client: aiohttp.ClientSession, timeout: float = 5.0) -> tuple[int, dict[str, Any], str]:
        """POST it; return (status, body, Idempotent-Replayed header)."""
        async with client.post(
            self.url, data=self.form, headers=self.headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as r:
            return r.status, await r.json(), r.headers.get("Idempotent-Replayed", "")

    def intents(self) -> list[dict[str, Any]]:
        """The provider's PaymentIntents for this payment, read from its state (not from an answer)."""
        intents = self.server.sim.providers["stripe"].intents  # type: ignore[attr-defined]
        return [i for i in intents.values() if i["metadata"].get("payment_id") == self.payment_id]


def stripe_moved(server: SimulatorServer, kind: str) -> list[Movement]:
    """Movements of ``kind`` the simulated Stripe performed (the books are reset for each test)."""
    return [m for m in server.sim.books.movements if m.provider == "stripe" and m.kind == kind]


async def queue(admin: Admin, provider: str, *faults: dict[str, Any]) -> list[dict[str, Any]]:
    """Queue one-shot faults through the admin API, as a test run by an operator would."""
    url = f"{admin.server.base_url}/_sim/providers/{provider}/faults"
    async with admin.session.post(url, json=list(faults)) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def retrieve(client: aiohttp.ClientSession, server: SimulatorServer, intent_id: str) -> dict[str, Any]:
    async with client.get(f"{server.url_for('stripe')}/v1/payment_intents/{intent_id}", headers=STRIPE_AUTH) as r:
        assert r.status == 200
        return await r.json()


async def refund(
    client: aiohttp.ClientSession, server: SimulatorServer, intent_id: str, key: str
) -> tuple[int, dict[str, Any]]:
    async with client.post(
        f"{server.url_for('stripe')}/v1/refunds",
        data={"payment_intent": intent_id, "amount": "500"},
        headers={**STRIPE_AUTH, "Idempotency-Key": key},
    ) as r:
        return r.status, await r.json()


# perform then stall


async def test_stall_fault_performs_then_holds_the_answer_and_a_retry_replays_it(
    simulator, admin: Admin, client
) -> None:
    await queue(admin, "stripe", {"kind": "stall", "ms": 800})
    charge = Charge(simulator)
    with pytest.raises(asyncio.TimeoutError):
        await charge.send(client, timeout=0.3)
    [intent] = charge.intents()
    assert intent["status"] == "succeeded"
    # The answer was stored when processing ended, so a retry during the stall gets it at once.
    status, body, replayed = await charge.send(client, timeout=0.3)
    assert (status, body["id"], replayed) == (200, intent["id"], "true")
    assert len(charge.intents()) == 1
    [moved] = stripe_moved(simulator, "authorize")
    assert (moved.amount, moved.captured) == (charge.amount, True)


# perform then 500


async def test_error_after_performs_then_answers_500_and_stripe_replays_the_500(
    simulator, admin: Admin, client
) -> None:
    await queue(admin, "stripe", {"kind": "error_after"})
    charge = Charge(simulator)
    status, body, _ = await charge.send(client)
    assert status == 500
    assert body["error"]["type"] == "api_error"
    [intent] = charge.intents()
    assert (await retrieve(client, simulator, intent["id"]))["status"] == "succeeded"
    # Stripe stores the 500 under the key once the request started executing.
    status, _, replayed = await charge.send(client)
    assert (status, replayed) == (500, "true")
    assert len(charge.intents()) == 1
    [moved] = stripe_moved(simulator, "authorize")
    assert moved.amount == charge.amount


async def test_error_after_replays_the_real_answer_when_injected_errors_are_not_stored(
    simulator, admin: Admin, client
) -> None:
    await admin.knobs("stripe", replay_injected_errors=False)
    await queue(admin, "stripe", {"kind": "error_after", "status": 502})
    charge = Charge(simulator)
    assert (await charge.send(client))[0] == 502
    [intent] = charge.intents()
    status, body, replayed = await charge.send(client)
    assert (status, body["id"], body["status"], replayed) == (200, intent["id"], "succeeded", "true")
    assert len(stripe_moved(simulator, "authorize")) == 1


async def test_error_after_on_a_provider_that_does_not_store_errors_replays_the_real_answer(
    simulator, admin: Admin, client
) -> None:
    await queue(admin, "adyen", {"kind": "error_after"})
    url = f"{simulator.url_for('adyen')}/v71/payments"
    body = {
        "amount": {"value": 1250, "currency": "EUR"},
        "merchantAccount": "SwitchECOM",
        "paymentMethod": {"type": "scheme"},
        "reference": f"order-{uuid.uuid4().hex[:8]}",
        "returnUrl": "https://shop.example/return",
    }
    headers = {"X-API-Key": "AQE_simulator", "Idempotency-Key": uuid.uuid4().hex}
    async with client.post(url, json=body, headers=headers) as r:
        assert r.status == 500
    payments = simulator.sim.providers["adyen"].payments  # type: ignore[attr-defined]
    [psp] = list(payments)
    async with client.post(url, json=body, headers=headers) as r:
        assert r.status == 200
        replay = await r.json()
    assert (replay["pspReference"], replay["resultCode"]) == (psp, "Authorised")
    assert len(payments) == 1


def test_only_stripe_stores_injected_errors_by_default_and_the_knob_overrides_it() -> None:
    from adapters.simulator import SimulatorConfig
    from adapters.simulator.server import Simulator

    sim = Simulator(SimulatorConfig(providers={"paypal": ProviderKnobs(replay_injected_errors=True)}))
    assert sim.replays_injected_errors("stripe") is True
    assert sim.replays_injected_errors("adyen") is False
    assert sim.replays_injected_errors("paypal") is True


# perform then drop the connection


async def test_drop_after_performs_then_the_client_sees_a_disconnect_not_an_answer(
    simulator, admin: Admin, client
) -> None:
    await queue(admin, "stripe", {"kind": "drop_after"})
    charge = Charge(simulator)
    with pytest.raises(aiohttp.ClientConnectionError):
        await charge.send(client)
    [intent] = charge.intents()
    assert intent["status"] == "succeeded"
    # The real answer was stored before the drop: the retry learns what happened.
    status, body, replayed = await charge.send(client)
    assert (status, body["id"], replayed) == (200, intent["id"], "true")
    assert len(stripe_moved(simulator, "authorize")) == 1
    assert (await admin.stats())["providers"]["stripe"]["dropped"] == 1


async def test_drop_after_sends_not_a_single_byte(simulator, admin: Admin) -> None:
    await queue(admin, "stripe", {"kind": "drop_after"})
    charge = Charge(simulator)
    form = "&".join(f"{k}={v}" for k, v in charge.form.items()).encode()
    request = (
        f"POST /stripe/v1/payment_intents HTTP/1.1\r\nHost: {simulator.host}\r\n"
        f"Authorization: Bearer sk_test_simulator\r\nIdempotency-Key: {charge.key}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form)}\r\n\r\n"
    ).encode() + form
    reader, writer = await asyncio.open_connection(simulator.host, simulator.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            received = await reader.read()
    finally:
        writer.close()
    assert received == b""
    assert len(charge.intents()) == 1


async def test_random_after_processing_knobs_perform_then_fail_the_answer(simulator, admin: Admin, client) -> None:
    await admin.knobs("stripe", error_after_rate=1.0, error_after_status=503)
    first = Charge(simulator)
    assert (await first.send(client))[0] == 503
    assert len(first.intents()) == 1
    await admin.knobs("stripe", error_after_rate=0.0, drop_after_rate=1.0)
    second = Charge(simulator)
    with pytest.raises(aiohttp.ClientConnectionError):
        await second.send(client)
    assert len(second.intents()) == 1
    stats = (await admin.stats())["providers"]["stripe"]
    assert (stats["random_error_after"], stats["random_drop_after"]) == (1, 1)
    assert len(stripe_moved(simulator, "authorize")) == 2


# refuse without performing


async def test_refuse_fault_answers_503_without_performing_and_only_once(simulator, admin: Admin, client) -> None:
    await queue(admin, "stripe", {"kind": "refuse"})
    charge = Charge(simulator)
    status, body, _ = await charge.send(client)
    assert status == 503
    assert body["error"]["type"] == "api_error"
    assert charge.intents() == []
    assert stripe_moved(simulator, "authorize") == []
    # Nothing was stored under the key: the retry is processed for the first time.
    status, body, replayed = await charge.send(client)
    assert (status, body["status"], replayed) == (200, "succeeded", "")
    assert len(stripe_moved(simulator, "authorize")) == 1


async def test_refuse_fault_can_answer_429_with_retry_after(simulator, admin: Admin, client) -> None:
    await queue(admin, "stripe", {"kind": "refuse", "status": 429, "retry_after": "2"})
    charge = Charge(simulator)
    async with client.post(charge.url, data=charge.form, headers=charge.headers) as r:
        assert (r.status, r.headers.get("Retry-After")) == (429, "2")
    assert charge.intents() == []


async def test_refuse_fault_with_status_0_drops_the_connection_without_performing(
    simulator, admin: Admin, client
) -> None:
    await queue(admin, "stripe", {"kind": "refuse", "status": 0})
    charge = Charge(simulator)
    with pytest.raises(aiohttp.ClientConnectionError):
        await charge.send(client)
    assert charge.intents() == []
    assert stripe_moved(simulator, "authorize") == []


# 409 while the same key is in flight


async def test_second_request_with_a_key_in_flight_gets_409_and_money_moves_once(
    simulator, admin: Admin, client
) -> None:
    await queue(admin, "stripe", {"kind": "stall_in_flight", "ms": 600, "match": "/payment_intents"})
    charge = Charge(simulator)
    first = asyncio.create_task(charge.send(client))
    async with asyncio.timeout(5):
        while not charge.intents():
            await asyncio.sleep(0.01)
    # The first request performed and is still in flight with its key.
    status, body, _ = await charge.send(client)
    assert status == 409
    assert (body["error"]["type"], body["error"]["code"]) == ("idempotency_error", "idempotency_key_in_use")
    assert body["error"]["message"]
    assert not first.done()
    # Another key is not blocked by it.
    other = Charge(simulator)
    assert (await other.send(client))[0] == 200
    first_status, first_body, _ = await first
    assert first_status == 200
    assert [i["id"] for i in charge.intents()] == [first_body["id"]]
    # After the first finished, the key replays its answer.
    status, body, replayed = await charge.send(client)
    assert (status, body["id"], replayed) == (200, first_body["id"], "true")
    assert (await admin.stats())["providers"]["stripe"]["idempotency_in_use"] == 1
    # One sale for this charge, one for the other key: the 409 performed nothing.
    assert len(stripe_moved(simulator, "authorize")) == 2


# one-shot faults target exactly the next matching request


async def test_one_shot_fault_strikes_exactly_the_next_matching_request(simulator, admin: Admin, client) -> None:
    await queue(admin, "stripe", {"kind": "refuse", "status": 503, "match": "/v1/refunds", "method": "POST"})
    charge = Charge(simulator)
    status, intent, _ = await charge.send(client)
    assert status == 200  # not a refund: the fault waits
    assert (await refund(client, simulator, intent["id"], "r1"))[0] == 503
    assert (await retrieve(client, simulator, intent["id"]))["amount_refunded"] == 0
    status, second = await refund(client, simulator, intent["id"], "r2")
    assert (status, second["status"]) == (200, "succeeded")
    assert (await retrieve(client, simulator, intent["id"]))["amount_refunded"] == 500
    assert simulator.sim.knobs("stripe").faults == []
    assert [m.amount for m in stripe_moved(simulator, "refund")] == [500]


async def test_fault_with_a_count_strikes_that_many_requests_then_stops(simulator, admin: Admin, client) -> None:
    await queue(admin, "stripe", {"kind": "refuse", "count": 2})
    charges = [Charge(simulator) for _ in range(3)]
    statuses = [(await c.send(client))[0] for c in charges]
    assert statuses == [503, 503, 200]
    assert [len(c.intents()) for c in charges] == [0, 0, 1]


async def test_queued_faults_are_taken_by_the_first_request_each_matches(simulator, admin: Admin, client) -> None:
    await queue(
        admin,
        "stripe",
        {"kind": "error_after", "match": "/refunds"},
        {"kind": "refuse", "status": 502, "match": "/payment_intents", "method": "POST"},
    )
    blocked = Charge(simulator)
    assert (await blocked.send(client))[0] == 502
    charge = Charge(simulator)
    status, intent, _ = await charge.send(client)
    assert status == 200
    # The refund is performed, then its answer is replaced by the 500.
    assert (await refund(client, simulator, intent["id"], "r1"))[0] == 500
    assert (await retrieve(client, simulator, intent["id"]))["amount_refunded"] == 500
    assert blocked.intents() == []
    assert len(stripe_moved(simulator, "refund")) == 1


async def test_request_that_took_a_queued_fault_gets_no_random_fault_too(simulator, admin: Admin, client) -> None:
    await admin.knobs("stripe", rate_limit_rate=1.0)
    await queue(admin, "stripe", {"kind": "error_after"})
    performed = Charge(simulator)
    assert (await performed.send(client))[0] == 500
    assert len(performed.intents()) == 1
    refused = Charge(simulator)
    assert (await refused.send(client))[0] == 429
    assert refused.intents() == []


# setting faults


async def test_faults_endpoint_validates_and_can_be_cleared(simulator, admin: Admin) -> None:
    base = f"{simulator.base_url}/_sim/providers"
    async with admin.session.post(f"{base}/stripe/faults", json={"kind": "explode"}) as r:
        assert r.status == 400
    async with admin.session.post(f"{base}/stripe/faults", json={"kind": "stall", "count": 0}) as r:
        assert r.status == 400
    async with admin.session.post(f"{base}/nowhere/faults", json={"kind": "stall"}) as r:
        assert r.status == 404
    queued = await queue(admin, "stripe", {"kind": "stall", "ms": 5})
    assert [(f["kind"], f["ms"], f["count"]) for f in queued] == [("stall", 5.0, 1)]
    async with admin.session.delete(f"{base}/stripe/faults") as r:
        assert r.status == 200
    assert simulator.sim.knobs("stripe").faults == []


async def test_faults_and_search_knobs_are_settable_by_patch(simulator, admin: Admin, client) -> None:
    knobs = await admin.knobs(
        "stripe", faults=[{"kind": "refuse", "status": 504}], search_lag_ms=1500, search_down=True
    )
    assert (knobs["search_lag_ms"], knobs["search_down"]) == (1500.0, True)
    assert simulator.sim.knobs("stripe").search_down is True
    assert (await Charge(simulator).send(client))[0] == 504


def test_config_file_sets_faults_and_search_knobs(tmp_path) -> None:
    path = tmp_path / "knobs.json"
    stripe = {
        "faults": [{"kind": "drop_after", "match": "/capture"}],
        "replay_injected_errors": False,
        "error_after_rate": 0.01,
        "drop_after_rate": 0.02,
        "search_lag_ms": 2000,
        "search_down": True,
    }
    path.write_text(json.dumps({"providers": {"stripe": stripe}}))
    knobs = load_config(path).providers["stripe"]
    assert knobs.faults == [Fault(kind="drop_after", match="/capture")]
    assert (knobs.replay_injected_errors, knobs.error_after_rate, knobs.drop_after_rate) == (False, 0.01, 0.02)
    assert (knobs.search_lag_ms, knobs.search_down) == (2000.0, True)
    defaults = ProviderKnobs()
    assert (defaults.search_lag_ms, defaults.search_down, defaults.faults) == (0.0, False, [])
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"faults": [{"kind": "stall", "ms": -1}]}, ProviderKnobs)
