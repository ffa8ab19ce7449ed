"""Events are written in the ledger batch of the change they describe, listed newest first, and managed per scope."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import pytest

from adapters.base import Outcome, ProviderResult
from switch.errors import LedgerUnavailable
from switch.events.outbox import EVENT_TYPES, event_row, events_for
from switch.ids import new_id
from switch.ledger.writer import GroupCommitWriter, WriteOp
from switch.payments.model import ENCODER
from switch.payments.outcome import apply_outcome, payment_row
from tests.api.helpers import authorized, create, error_of, payment_body
from tests.events.conftest import register
from tests.ledger.intents import pending_payment


def _op(merchant_id: str, amount: int) -> tuple[WriteOp, str]:
    """An authorized payment written as the authorization path writes it: row, hold and events.

    The committed one must satisfy ``ledger verify``, which later tests of this session run.
    """
    payment = pending_payment(amount=max(amount, 1))
    payment.provider = "sandbox"
    journal = apply_outcome(
        merchant_id, payment, ProviderResult(outcome=Outcome.APPROVED, provider_reference="sbx_" + new_id("ref"))
    )
    body = ENCODER.encode(payment)
    row = payment_row(merchant_id, payment, body)
    if amount == 0:
        row = msgspec.structs.replace(row, amount=0)  # violates the amount CHECK
    events = events_for(merchant_id, row.id, "authorized", body, livemode=False)
    return WriteOp(payments=[row], journal=journal, events=events), row.id


async def test_outbox_rows_commit_with_their_change_or_not_at_all(database_url, db, client, merchant, receivers):
    receiver = await receivers()
    await register(client, merchant, receiver)
    writer = GroupCommitWriter(lambda: asyncpg.connect(database_url))
    await writer.start()
    try:
        good, good_id = _op(merchant.id, 1000)
        bad, bad_id = _op(merchant.id, 0)  # violates the amount CHECK: the whole batch fails
        results = await asyncio.gather(writer.submit(good), writer.submit(bad), return_exceptions=True)
        assert all(isinstance(result, LedgerUnavailable) for result in results), results
        for payment_id in (good_id, bad_id):
            assert await db.fetchval("SELECT count(*) FROM payments WHERE id = $1", payment_id) == 0
            assert await db.fetchval("SELECT count(*) FROM events WHERE payment_id = $1", payment_id) == 0
        assert (
            await db.fetchval(
                "SELECT count(*) FROM event_deliveries d JOIN events e ON e.id = d.event_id WHERE e.payment_id = $1",
                good_id,
            )
            == 0
        )

        again, again_id = _op(merchant.id, 1000)
        await writer.submit(again)
        assert await db.fetchval("SELECT count(*) FROM payments WHERE id = $1", again_id) == 1
        assert await db.fetchval("SELECT type FROM events WHERE payment_id = $1", again_id) == "payment.authorized"
        # Fanned out to the scope's endpoint in the same statement.
        assert (
            await db.fetchval(
                "SELECT count(*) FROM event_deliveries d JOIN events e ON e.id = d.event_id WHERE e.payment_id = $1",
                again_id,
            )
            == 1
        )
    finally:
        await writer.stop()


async def test_lifecycle_emits_one_event_per_change_newest_first(client, merchant):
    payment = await authorized(client, merchant, amount=1000)
    captured = await client.post(f"/v1/payments/{payment['id']}/capture", json={}, headers=merchant.headers)
    assert captured.status_code == 200
    refund = await client.post(f"/v1/payments/{payment['id']}/refunds", json={"amount": 300}, headers=merchant.headers)
    assert refund.status_code == 201
    other = await authorized(client, merchant, amount=500)
    assert (await client.post(f"/v1/payments/{other['id']}/void", json={}, headers=merchant.headers)).status_code == 200
    declined = await create(client, merchant, number="4000000000000002")
    assert declined.json()["status"] == "declined"

    listed = await client.get("/v1/events?limit=100", headers=merchant.headers)
    assert listed.status_code == 200
    events = listed.json()["data"]
    assert [(e["type"], e["data"]["object"]["id"]) for e in reversed(events)] == [
        ("payment.authorized", payment["id"]),
        ("payment.captured", payment["id"]),
        ("payment.partially_refunded", payment["id"]),
        ("refund.succeeded", refund.json()["id"]),
        ("payment.authorized", other["id"]),
        ("payment.voided", other["id"]),
        ("payment.declined", declined.json()["id"]),
    ]
    assert all(e["object"] == "event" and e["livemode"] is False and e["id"].startswith("evt_") for e in events)
    assert events[-2]["data"]["object"]["status"] == "captured"  # the object as of that change
    one = await client.get(f"/v1/events/{events[0]['id']}", headers=merchant.headers)
    assert one.status_code == 200 and one.json() == events[0]


async def test_events_paginate_like_payments(client, merchant):
    for _ in range(3):
        assert (await create(client, merchant)).status_code == 201
    first = (await client.get("/v1/events?limit=2", headers=merchant.headers)).json()
    assert first["object"] == "list" and first["has_more"] is True and len(first["data"]) == 2
    rest = (
        await client.get(f"/v1/events?limit=2&starting_after={first['data'][-1]['id']}", headers=merchant.headers)
    ).json()
    assert rest["has_more"] is False and len(rest["data"]) == 1
    ids = [e["id"] for e in first["data"] + rest["data"]]
    assert len(set(ids)) == 3
    assert [e["created"] for e in first["data"] + rest["data"]] == sorted(
        (e["created"] for e in first["data"] + rest["data"]), reverse=True
    )
    missing = await client.get("/v1/events?starting_after=evt_nope", headers=merchant.headers)
    assert missing.status_code == 400 and error_of(missing)["param"] == "starting_after"


async def test_another_merchants_events_and_endpoints_are_404(client, merchant, other_merchant, receivers):
    receiver = await receivers()
    endpoint = await register(client, merchant, receiver)
    await create(client, merchant)
    event_id = (await client.get("/v1/events?limit=1", headers=merchant.headers)).json()["data"][0]["id"]
    for method, path in (
        ("GET", f"/v1/events/{event_id}"),
        ("POST", f"/v1/events/{event_id}/redeliver"),
        ("GET", f"/v1/webhook_endpoints/{endpoint['id']}"),
        ("DELETE", f"/v1/webhook_endpoints/{endpoint['id']}"),
    ):
        response = await client.request(method, path, headers=other_merchant.headers)
        assert response.status_code == 404, (method, path)
        assert error_of(response)["code"] == "resource_missing"
    assert (await client.get("/v1/events", headers=other_merchant.headers)).json()["data"] == []
    assert (await client.get("/v1/webhook_endpoints", headers=other_merchant.headers)).json()["data"] == []


async def test_webhook_endpoint_create_list_delete(client, merchant):
    created = await client.post(
        "/v1/webhook_endpoints",
        json={"url": "https://shop.example/hooks", "events": ["payment.captured", "refund.succeeded"]},
        headers=merchant.headers,
    )
    assert created.status_code == 201
    endpoint = created.json()
    assert endpoint["id"].startswith("we_") and endpoint["secret"].startswith("whsec_")
    assert endpoint["object"] == "webhook_endpoint" and endpoint["url"] == "https://shop.example/hooks"
    assert endpoint["events"] == ["payment.captured", "refund.succeeded"]
    listed = (await client.get("/v1/webhook_endpoints", headers=merchant.headers)).json()["data"]
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert "secret" not in listed[0]  # shown only once
    assert listed[0]["object"] == "webhook_endpoint"
    deleted = await client.delete(f"/v1/webhook_endpoints/{endpoint['id']}", headers=merchant.headers)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert (await client.get("/v1/webhook_endpoints", headers=merchant.headers)).json()["data"] == []
    again = await client.delete(f"/v1/webhook_endpoints/{endpoint['id']}", headers=merchant.headers)
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"url": "ftp://shop.example", "events": ["*"]}, "url"),
        ({"url": "https://shop.example", "events": ["payment.exploded"]}, "events.0"),
        ({"url": "https://shop.example", "events": []}, "events"),
        ({"url": "https://shop.example"}, "events"),
        ({"url": "https://shop.example", "events": ["*"], "secret": "mine"}, "secret"),
        ({"url": "https://shop.example", "events": "*"}, "events"),
    ],
)
async def test_bad_endpoint_bodies_name_the_field(client, merchant, body, param):
    response = await client.post("/v1/webhook_endpoints", json=body, headers=merchant.headers)
    assert response.status_code == 400
    assert error_of(response)["param"] == param


async def test_endpoint_receives_only_what_it_subscribed_to(db, client, merchant, receivers):
    receiver = await receivers()
    endpoint = await register(client, merchant, receiver, events=["payment.captured"])
    await create(client, merchant, capture="manual")
    await create(client, merchant)  # automatic capture: payment.captured
    types = await db.fetch(
        "SELECT e.type FROM event_deliveries d JOIN events e ON e.id = d.event_id WHERE d.endpoint_id = $1",
        endpoint["id"],
    )
    assert [row["type"] for row in types] == ["payment.captured"]


def test_events_for_maps_changes_to_events():
    body = b'{"id":"pay_1"}'
    assert [e.type for e in events_for("m", "pay_1", "captured", body, livemode=False)] == ["payment.captured"]
    resolved = events_for("m", "pay_1", "authorized", body, livemode=True, previous_status="pending")
    assert [e.type for e in resolved] == ["payment.pending_resolved", "payment.authorized"]
    assert all('"livemode":true' in e.body for e in resolved)
    refund = events_for(
        "m", "pay_1", "refunded", body, livemode=False, previous_status="captured",
        refund_json=b'{"id":"re_1"}', refund_status="succeeded",
    )  # fmt: skip
    assert [e.type for e in refund] == ["payment.refunded", "refund.succeeded"]
    assert events_for("m", "pay_1", "pending", body, livemode=False, previous_status="pending") == []
    assert {
        "payment.authorized",
        "payment.captured",
        "payment.declined",
        "payment.voided",
        "payment.refunded",
        "payment.pending_resolved",
        "refund.succeeded",
        "review.opened",
        "review.closed",
    } <= EVENT_TYPES


def test_event_row_refuses_unknown_types_and_keeps_the_object_bytes():
    row = event_row("m", "review.opened", b'{"id":"rev_1","x":[1,2]}', payment_id="pay_1", livemode=False, created=5)
    assert row.body.endswith('"data":{"object":{"id":"rev_1","x":[1,2]}}}')
    assert '"created":5' in row.body
    with pytest.raises(ValueError, match="unknown event type"):
        event_row("m", "review.exploded", b"{}", payment_id=None, livemode=False)


async def test_payment_answer_does_not_wait_for_delivery(client, merchant, receivers):
    receiver = await receivers(delay_s=30)
    await register(client, merchant, receiver)
    response = await client.post("/v1/payments", json=payment_body(), headers=merchant.headers)
    assert response.status_code == 201
    # The endpoint has not answered anything yet, and the payment is already committed and answered.
    assert receiver.accepted == []
