"""Event rows for the outbox, built beside the change they describe and written in its batch.

``events_for`` is the one place that decides which events a payment change emits; code that
settles payments (authorization, capture/void/refund, notifications, recovery, reviews) adds its
rows to the :class:`~switch.ledger.writer.WriteOp` that writes the change, so an event exists
exactly when its change committed.
"""

from __future__ import annotations

import time

import msgspec

from switch.ids import new_id

# Every type the switch emits; endpoints subscribe to some of them or to "*".
EVENT_TYPES = frozenset(
    {
        "payment.authorized",
        "payment.captured",
        "payment.partially_captured",
        "payment.declined",
        "payment.failed",
        "payment.voided",
        "payment.refunded",
        "payment.partially_refunded",
        "payment.requires_action",
        "payment.pending",
        "payment.pending_resolved",
        "refund.succeeded",
        "refund.pending",
        "refund.failed",
        "review.opened",
        "review.closed",
    }
)

# The event a payment's new status emits.
_STATUS_EVENTS = {
    "authorized": "payment.authorized",
    "captured": "payment.captured",
    "partially_captured": "payment.partially_captured",
    "declined": "payment.declined",
    "failed": "payment.failed",
    "voided": "payment.voided",
    "refunded": "payment.refunded",
    "partially_refunded": "payment.partially_refunded",
    "requires_action": "payment.requires_action",
    "pending": "payment.pending",
}

# Statuses a payment waits in for an outcome decided elsewhere (provider, customer, recovery).
_WAITING = frozenset({"pending", "requires_action"})


class OutboxEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One ``events`` row: the exact JSON that is delivered and signed."""

    id: str
    merchant_id: str
    type: str
    payment_id: str | None
    body: str
    created: int


def event_row(
    merchant_id: str,
    event_type: str,
    object_json: bytes,
    *,
    payment_id: str | None,
    livemode: bool,
    created: int | None = None,
) -> OutboxEvent:
    """Build one event whose ``data.object`` is ``object_json`` (already-encoded API object).

    Raises:
        ValueError: When ``event_type`` is not one of :data:`EVENT_TYPES`.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    event_id = new_id("evt")
    created = int(time.time()) if created is None else created
    head = (
        f'{{"id":"{event_id}","object":"event","type":"{event_type}","created":{created},'
        f'"livemode":{"true" if livemode else "false"},"data":{{"object":'
    )
    return OutboxEvent(
        id=event_id,
        merchant_id=merchant_id,
        type=event_type,
        payment_id=payment_id,
        body=head + object_json.decode() + "}}",
        created=created,
    )


def events_for(
    merchant_id: str,
    payment_id: str,
    status: str,
    payment_json: bytes,
    *,
    livemode: bool,
    previous_status: str | None = None,
    refund_json: bytes | None = None,
    refund_status: str | None = None,
    created: int | None = None,
) -> list[OutboxEvent]:
    """The outbox rows of one payment change, in the order they are to be delivered.

    Args:
        merchant_id: The merchant scope (test and live modes are different scopes).
        payment_id: The payment changed.
        status: Its new status.
        payment_json: The payment object after the change, as stored.
        livemode: Whether the scope is live.
        previous_status: Its status before (None for a new payment). No status event is emitted
            when the status did not change, except for partial captures and refunds, which
            change amounts.
        refund_json: The refund object, when the change is a refund.
        refund_status: That refund's status (``succeeded``, ``pending``, ``failed``).
        created: Event time (Unix seconds); now when None.
    """
    rows: list[OutboxEvent] = []

    def add(event_type: str, body: bytes) -> None:
        rows.append(event_row(merchant_id, event_type, body, payment_id=payment_id, livemode=livemode, created=created))

    if previous_status in _WAITING and status not in _WAITING:
        add("payment.pending_resolved", payment_json)
    amounts_changed = refund_json is not None or status in ("partially_captured", "captured")
    if status in _STATUS_EVENTS and (status != previous_status or amounts_changed):
        add(_STATUS_EVENTS[status], payment_json)
    if refund_json is not None and refund_status is not None and f"refund.{refund_status}" in EVENT_TYPES:
        add(f"refund.{refund_status}", refund_json)
    return rows
