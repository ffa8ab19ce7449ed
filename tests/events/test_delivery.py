"""The delivery worker: signed, at least once across failures, in order per payment, isolated per endpoint."""

from __future__ import annotations

import asyncio
import time

from switch.events.delivery import DeliveryWorker
from tests.api.helpers import authorized, create
from tests.events.conftest import register

HOUR = 3600


async def _lifecycle(client, merchant) -> list[str]:
    """Payments whose changes emit several events each; returns their ids."""
    ids = []
    for _ in range(3):
        payment = await authorized(client, merchant, amount=1000)
        assert (
            await client.post(f"/v1/payments/{payment['id']}/capture", json={"amount": 400}, headers=merchant.headers)
        ).status_code == 200
        assert (
            await client.post(f"/v1/payments/{payment['id']}/capture", json={}, headers=merchant.headers)
        ).status_code == 200
        assert (
            await client.post(f"/v1/payments/{payment['id']}/refunds", json={"amount": 100}, headers=merchant.headers)
        ).status_code == 201
        ids.append(payment["id"])
    return ids


async def _written_order(db, merchant_id: str) -> dict[str, list[str]]:
    rows = await db.fetch("SELECT id, payment_id FROM events WHERE merchant_id = $1 ORDER BY seq", merchant_id)
    order: dict[str, list[str]] = {}
    for row in rows:
        order.setdefault(row["payment_id"], []).append(row["id"])
    return order


async def _drain(worker: DeliveryWorker, start: float, passes: int = 40, step_s: float = HOUR) -> None:
    now = start
    for _ in range(passes):
        await worker.run_once(now=now)
        now += step_s


async def test_every_event_arrives_at_least_once_in_order_per_payment_across_failures(db, client, merchant, receivers):
    receiver = await receivers(fail_first=3)
    await register(client, merchant, receiver)
    await _lifecycle(client, merchant)
    written = await _written_order(db, merchant.id)
    assert sum(len(ids) for ids in written.values()) == 3 * 5  # authorized, 2 captures, refund + refund event

    worker = DeliveryWorker(db, jitter=lambda: 0.5)
    try:
        await _drain(worker, time.time() + 1)
    finally:
        await worker.close()

    arrived = receiver.first_arrivals()
    assert sorted(arrived) == sorted(i for ids in written.values() for i in ids)  # each at least once
    assert receiver.rejected == 0  # every signature verified by the README snippet
    # Three induced failures, then accepted (the app's own worker may have tried some as well).
    assert all(tries >= 4 for tries in receiver.tries.values())
    for payment_id, ids in written.items():
        assert [event_id for event_id in arrived if event_id in ids] == ids, payment_id
    pending = await db.fetchval(
        "SELECT count(*) FROM event_deliveries d JOIN events e ON e.id = d.event_id"
        " WHERE e.merchant_id = $1 AND d.status <> 'delivered'",
        merchant.id,
    )
    assert pending == 0


async def test_a_failing_delivery_blocks_only_later_events_of_its_own_payment(db, client, merchant, receivers):
    failing: set[str] = set()
    receiver = await receivers(fail_when=lambda event: event["data"]["object"]["id"] in failing)
    await register(client, merchant, receiver)
    first = await authorized(client, merchant)
    failing.add(first["id"])
    await client.post(f"/v1/payments/{first['id']}/capture", json={}, headers=merchant.headers)
    second = await authorized(client, merchant)
    worker = DeliveryWorker(db, jitter=lambda: 0.0)
    try:
        now = time.time() + 1
        await worker.run_once(now=now)
        # The second payment's event went out; the first's capture waits behind its failing authorization.
        assert [(e["type"], e["data"]["object"]["id"]) for e in receiver.accepted] == [
            ("payment.authorized", second["id"])
        ]
        first_events = [e for e in receiver.tries if e not in {x["id"] for x in receiver.accepted}]
        assert len(first_events) == 1  # only the authorization was tried, the capture not yet
        failing.clear()
        await _drain(worker, now + HOUR, passes=3)
        by_payment: dict[str, list[str]] = {}
        for event in receiver.accepted:
            by_payment.setdefault(event["data"]["object"]["id"], []).append(event["type"])
        assert by_payment == {
            second["id"]: ["payment.authorized"],
            first["id"]: ["payment.authorized", "payment.captured"],
        }
    finally:
        await worker.close()


async def test_delivery_gives_up_after_three_days_and_redeliver_queues_it_again(db, client, merchant, receivers):
    receiver = await receivers(fail_first=10_000)
    endpoint = await register(client, merchant, receiver)
    payment = (await create(client, merchant)).json()
    worker = DeliveryWorker(db, jitter=lambda: 1.0)
    try:
        start = time.time() + 1
        await _drain(worker, start, passes=70, step_s=HOUR)  # 70 hours: still trying
        row = await db.fetchrow("SELECT status, attempts FROM event_deliveries WHERE endpoint_id = $1", endpoint["id"])
        assert row["status"] == "pending" and row["attempts"] > 5
        await worker.run_once(now=start + 3 * 86_400 + 2 * HOUR)
        await worker.run_once(now=start + 3 * 86_400 + 4 * HOUR)
        assert (
            await db.fetchval("SELECT status FROM event_deliveries WHERE endpoint_id = $1", endpoint["id"]) == "failed"
        )
        tried = sum(receiver.tries.values())
        await worker.run_once(now=start + 5 * 86_400)
        assert sum(receiver.tries.values()) == tried  # given up: no more tries

        receiver.fail_first = 0
        event_id = (await client.get("/v1/events?limit=1", headers=merchant.headers)).json()["data"][0]["id"]
        again = await client.post(f"/v1/events/{event_id}/redeliver", headers=merchant.headers)
        assert again.status_code == 202 and again.json()["queued"] == 1
        await worker.run_once(now=time.time() + 1)
        assert [e["id"] for e in receiver.accepted] == [event_id]
        assert receiver.accepted[0]["data"]["object"]["id"] == payment["id"]
    finally:
        await worker.close()


def test_backoff_is_exponential_with_jitter_and_capped():
    low = DeliveryWorker(None, backoff_base_s=10, backoff_cap_s=3600, jitter=lambda: 0.0)  # type: ignore[arg-type]
    high = DeliveryWorker(None, backoff_base_s=10, backoff_cap_s=3600, jitter=lambda: 0.999)  # type: ignore[arg-type]
    assert [low.backoff_s(n) for n in range(4)] == [5, 10, 20, 40]
    assert all(low.backoff_s(n) <= high.backoff_s(n) < 2 * low.backoff_s(n) for n in range(20))
    assert high.backoff_s(30) < 3600 and low.backoff_s(30) == 1800


async def test_two_workers_never_send_one_delivery_twice(db, client, merchant, receivers):
    receiver = await receivers(delay_s=0.2)
    await register(client, merchant, receiver)
    for _ in range(6):
        await create(client, merchant)
    first, second = DeliveryWorker(db), DeliveryWorker(db)
    try:
        now = time.time() + 1
        claimed = await asyncio.gather(first.run_once(now=now), second.run_once(now=now))
        # The app's own worker is a third one on this database and may have taken some.
        assert 0 < sum(claimed) <= 6
        for _ in range(100):
            if len(receiver.accepted) == 6:
                break
            await asyncio.sleep(0.05)
        assert sorted(receiver.tries.values()) == [1] * 6  # each claimed by exactly one worker
    finally:
        await first.close()
        await second.close()


async def test_a_slow_endpoint_does_not_hold_up_another(db, client, merchant, other_merchant, receivers):
    slow = await receivers(delay_s=5)
    fast = await receivers()
    await register(client, merchant, slow)
    await register(client, other_merchant, fast)
    for _ in range(3):
        await create(client, merchant)
    worker = DeliveryWorker(db, deadline_s=20)
    task = asyncio.create_task(worker.run_forever(interval_s=0.05))
    try:
        await asyncio.sleep(0.3)  # the slow endpoint's deliveries are in flight now
        await create(client, other_merchant)
        await asyncio.wait_for(fast.arrived.wait(), timeout=10)
        assert len(fast.accepted) == 1
        assert slow.accepted == []  # still waiting on its own, slow answers
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await worker.close()


async def test_a_delivery_past_its_deadline_is_retried_later(db, client, merchant, receivers):
    receiver = await receivers(delay_s=2)
    endpoint = await register(client, merchant, receiver)
    await create(client, merchant)
    worker = DeliveryWorker(db, deadline_s=0.2)
    try:
        await worker.run_once(now=time.time() + 1)
        row = await db.fetchrow(
            "SELECT status, attempts, last_error FROM event_deliveries WHERE endpoint_id = $1", endpoint["id"]
        )
        assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 1, "timeout")
    finally:
        await worker.close()
