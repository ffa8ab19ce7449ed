"""Inbound provider notifications: verify, deduplicate, and complete asynchronous payments.

A notification is verified by its provider's adapter (signature, freshness), recorded once per
``(account, event id)`` in the same ledger batch as its effect, and applied to the payment the
provider reference points at. Duplicates and replays are recorded as such and change nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import asyncpg
import msgspec

from adapters.base import (
    FlowNotSupported,
    Outcome,
    ProviderAdapter,
    ProviderResult,
    SyncRequest,
    WebhookEvent,
    WebhookRejected,
)
from switch.errors import PaymentError
from switch.events.outbox import events_for
from switch.ids import new_id
from switch.ledger import postings
from switch.ledger.writer import EventClaim, GroupCommitWriter, PaymentUpdate, RefundInsert, WriteOp
from switch.metrics import Metrics
from switch.payments.locks import KeyedLocks
from switch.payments.model import ENCODER, PAYMENT_DECODER, AttemptOut, Refund
from switch.payments.outcome import apply_outcome
from switch.payments.state import PaymentState, derive_status

logger = logging.getLogger(__name__)

# Payments still waiting for the customer or the provider; only these move on a notification.
_OPEN = frozenset({"pending", "requires_action"})
# Outcomes that settle an open payment.
_SETTLING = frozenset({Outcome.APPROVED, Outcome.DECLINED_HARD, Outcome.DECLINED_SOFT, Outcome.TECHNICAL})


class NotificationReport(msgspec.Struct):
    """What one delivery did, per event."""

    applied: int = 0
    duplicate: int = 0
    no_change: int = 0
    unmatched: int = 0


class NotificationService:
    """Applies verified provider notifications to payments."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        writer: GroupCommitWriter,
        adapters: Mapping[str, ProviderAdapter],
        metrics: Metrics,
        locks: KeyedLocks,
    ) -> None:
        """Wire the service; ``locks`` are shared with the payment service."""
        self._pool = pool
        self._writer = writer
        self._adapters = adapters
        self._metrics = metrics
        self._locks = locks

    async def receive(self, account: str, headers: Mapping[str, str], body: bytes) -> NotificationReport:
        """Verify and apply one delivery to ``POST /webhooks/{account}``.

        Raises:
            PaymentError: 404 for an unknown account or one without webhooks; 400
                ``webhook_rejected`` for a forged, stale or malformed notification.
        """
        adapter = self._adapters.get(account)
        if adapter is None:
            raise PaymentError("not_found", "resource_missing", f"no provider account {account!r}", "account")
        try:
            events = adapter.parse_webhook(headers, body)
        except FlowNotSupported:
            raise PaymentError(
                "not_found", "webhooks_not_supported", f"provider account {account!r} takes no webhooks"
            ) from None
        except WebhookRejected as rejected:
            self._metrics.webhooks_rejected.labels(account, rejected.reason).inc()
            logger.warning("rejected a %s notification: %s", account, rejected.reason)
            raise PaymentError(
                "invalid", "webhook_rejected", f"the notification was rejected: {rejected.reason}"
            ) from None
        report = NotificationReport()
        for event in events:
            result = await self._apply(account, event)
            setattr(report, result, getattr(report, result) + 1)
            self._metrics.webhooks.labels(account, result).inc()
        return report

    async def _find(self, account: str, event: WebhookEvent) -> str | None:
        if event.payment_id:
            found = await self._pool.fetchval(
                "SELECT id FROM payments WHERE id = $1 AND provider = $2", event.payment_id, account
            )
            if found:
                return str(found)
        if event.provider_reference:
            found = await self._pool.fetchval(
                "SELECT id FROM payments WHERE provider = $1 AND provider_reference = $2",
                account,
                event.provider_reference,
            )
            return str(found) if found else None
        return None

    async def _apply(self, account: str, event: WebhookEvent) -> str:
        claim = EventClaim(
            account=account,
            event_id=event.event_id,
            event_type=event.event_type,
            payment_id=None,
            outcome=event.outcome.value,
            received=int(time.time()),
        )
        payment_id = await self._find(account, event)
        if payment_id is None:
            written = await self._writer.submit(WriteOp(event=claim))
            return "unmatched" if written.fresh_event else "duplicate"
        claim = msgspec.structs.replace(claim, payment_id=payment_id)
        async with self._locks.hold(payment_id):
            row = await self._pool.fetchrow(
                "SELECT body::text AS body, version, merchant_id, status, provider, amount_captured, amount_refunded"
                " FROM payments WHERE id = $1",
                payment_id,
            )
            op = WriteOp(event=claim)
            reversal = event.reversal and row["amount_captured"] > row["amount_refunded"]
            settles = row["status"] in _OPEN and event.outcome in _SETTLING
            if settles and self._adapters[account].webhook_confirm_by_sync:
                event = await self._confirm(account, payment_id, event)
            changed = reversal or (row["status"] in _OPEN and event.outcome in _SETTLING)
            if reversal:
                self._reverse(op, row, event)
            elif changed:
                payment = PAYMENT_DECODER.decode(row["body"])
                result = ProviderResult(
                    outcome=event.outcome,
                    provider_reference=event.provider_reference,
                    raw_status=event.raw_status,
                    code=event.code,
                    message=None,
                )
                op.journal = apply_outcome(row["merchant_id"], payment, result)
                payment.routing.attempts.append(
                    AttemptOut(provider=account, outcome=event.outcome.value, code=event.code, latency_ms=0)
                )
                body = ENCODER.encode(payment)
                op.payment_update = PaymentUpdate(
                    id=payment_id,
                    expected_version=row["version"],
                    status=payment.status,
                    amount_captured=payment.amount_captured,
                    amount_refunded=payment.amount_refunded,
                    capture_closed=payment.capture == "automatic" and payment.status == "captured",
                    body=body.decode(),
                )
                op.events = events_for(
                    row["merchant_id"],
                    payment_id,
                    payment.status,
                    body,
                    livemode=payment.livemode,
                    previous_status=row["status"],
                )
            written = await self._writer.submit(op)
        if not written.fresh_event:
            return "duplicate"
        return "applied" if changed else "no_change"

    async def _confirm(self, account: str, payment_id: str, event: WebhookEvent) -> WebhookEvent:
        """Replace the notification's claimed outcome by the provider's own status.

        Raises:
            PaymentError: 503 when the provider cannot confirm now; the provider retries the
                notification later, and it has not been recorded, so the retry applies.
        """
        adapter = self._adapters[account]
        try:
            status = await adapter.sync(
                SyncRequest(payment_id=payment_id, provider_reference=event.provider_reference, attempt_id="")
            )
        except Exception as exc:  # an unreachable provider confirms nothing
            logger.warning("could not confirm a %s notification: %s", account, type(exc).__name__)
            status = None
        if status is None or status.outcome not in _SETTLING:
            self._metrics.webhooks.labels(account, "unconfirmed").inc()
            raise PaymentError(
                "unavailable", "notification_unconfirmed", "the provider did not confirm this notification yet"
            )
        return msgspec.structs.replace(event, outcome=status.outcome, code=status.code, raw_status=status.raw_status)

    @staticmethod
    def _reverse(op: WriteOp, row: asyncpg.Record, event: WebhookEvent) -> None:
        """Book a provider's reversal of settled money as a refund the bank initiated."""
        payment = PAYMENT_DECODER.decode(row["body"])
        amount = row["amount_captured"] - row["amount_refunded"]
        refund_id = new_id("re")
        created = int(time.time())
        reason = f"provider_reversal:{event.code}" if event.code else "provider_reversal"
        op.refunds.append(
            RefundInsert(
                id=refund_id,
                payment_id=payment.id,
                merchant_id=row["merchant_id"],
                amount=amount,
                currency=payment.currency,
                status="succeeded",
                provider_reference=event.provider_reference,
                reason=reason[:255],
                metadata="{}",
                created=created,
            )
        )
        op.journal.append(
            postings.refund(
                merchant_id=row["merchant_id"],
                payment_id=payment.id,
                refund_id=refund_id,
                provider=row["provider"],
                currency=payment.currency,
                amount=amount,
                created=created,
            )
        )
        state = PaymentState(
            status=row["status"],
            amount=payment.amount,
            amount_captured=row["amount_captured"],
            amount_refunded=row["amount_captured"],
            capture_closed=True,
        )
        payment.amount_refunded = state.amount_refunded
        payment.status = derive_status(state)
        body = ENCODER.encode(payment)
        op.payment_update = PaymentUpdate(
            id=payment.id,
            expected_version=row["version"],
            status=payment.status,
            amount_captured=payment.amount_captured,
            amount_refunded=payment.amount_refunded,
            capture_closed=True,
            body=body.decode(),
        )
        refund = Refund(
            id=refund_id,
            payment=payment.id,
            amount=amount,
            currency=payment.currency,
            status="succeeded",
            reason=reason[:255],
            created=created,
        )
        op.events = events_for(
            row["merchant_id"],
            payment.id,
            payment.status,
            body,
            livemode=payment.livemode,
            previous_status=row["status"],
            refund_json=ENCODER.encode(refund),
            refund_status="succeeded",
        )
