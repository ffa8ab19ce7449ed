"""``POST /v1/payments/{id}/confirm``: finish a payment that waited for 3-D Secure.

A payment answered ``requires_action`` sent the customer to authenticate at the provider. Once
they have, the merchant confirms: the switch asks the provider for the attempt's state (the same
status look-up recovery uses, so confirming twice, or after a webhook already settled it, books
nothing twice: the payment row is updated only if its version is unchanged) and books what the
provider says. A successful authentication also restarts the card's low-value SCA counters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

import asyncpg

from adapters.base import Outcome, ProviderAdapter, ProviderResult, SyncRequest
from switch.errors import PaymentError
from switch.events.outbox import events_for
from switch.ledger.writer import AttemptUpdate, GroupCommitWriter, PaymentUpdate, WriteOp
from switch.merchants import Merchant
from switch.payments.locks import KeyedLocks
from switch.payments.model import ENCODER, PAYMENT_DECODER, AttemptOut, Payment
from switch.payments.outcome import apply_outcome
from switch.payments.risk_check import RiskCheck

logger = logging.getLogger(__name__)

_SETTLED = frozenset({Outcome.APPROVED, Outcome.DECLINED_HARD, Outcome.DECLINED_SOFT, Outcome.PENDING})


class PaymentConfirmation:
    """Settles ``requires_action`` payments by asking their provider."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        writer: GroupCommitWriter,
        adapters: Mapping[str, ProviderAdapter],
        locks: KeyedLocks,
        risk: RiskCheck,
        provider_timeout_s: float = 15.0,
    ) -> None:
        """Wire the confirmation to the payment path's collaborators (``locks`` shared with it)."""
        self._pool = pool
        self._writer = writer
        self._adapters = adapters
        self._locks = locks
        self._risk = risk
        self._timeout_s = provider_timeout_s

    async def confirm(self, merchant: Merchant, payment_id: str) -> bytes:
        """Book the provider's answer for a payment that waited for the customer; return the payment.

        A payment that already moved on from ``requires_action`` (confirmed before, or settled by a
        provider notification) is answered as it stands.

        Raises:
            PaymentError: 404 for an unknown payment; 409 ``payment_not_awaiting_action`` for one that
                never waited for the customer; 503 ``provider_unavailable`` when the provider cannot
                say now (retry).
        """
        async with self._locks.hold(payment_id):
            row = await self._pool.fetchrow(
                "SELECT body::text AS body, version, status, provider, provider_reference FROM payments"
                " WHERE id = $1 AND merchant_id = $2",
                payment_id,
                merchant.id,
            )
            if row is None:
                raise PaymentError("not_found", "resource_missing", "no such payment", "id")
            payment = PAYMENT_DECODER.decode(row["body"])
            if row["status"] != "requires_action":
                if any(attempt.outcome == "requires_action" for attempt in payment.routing.attempts):
                    return str(row["body"]).encode()
                raise PaymentError(
                    "state",
                    "payment_not_awaiting_action",
                    f"the payment is {row['status']}; only a payment that requires action can be confirmed",
                )
            attempt_id = await self._pool.fetchval(
                "SELECT id FROM payment_attempts WHERE payment_id = $1 AND provider = $2"
                " ORDER BY created DESC, id DESC LIMIT 1",
                payment_id,
                row["provider"],
            )
            adapter = self._adapters.get(row["provider"])
            if adapter is None or attempt_id is None:
                raise PaymentError("unavailable", "provider_unavailable", "the payment's provider cannot confirm now")
            found = await self._look_up(adapter, payment, attempt_id, row["provider_reference"])
            if found.outcome is Outcome.REQUIRES_ACTION:
                return str(row["body"]).encode()  # the customer has not finished yet
            if found.outcome not in _SETTLED:
                raise PaymentError(
                    "unavailable", "provider_unavailable", "the provider could not confirm the payment now; retry"
                )
            body = await self._settle(merchant, payment, row, attempt_id, found)
        if found.outcome is Outcome.APPROVED and payment.payment_method.card is not None:
            await self._risk.sca_completed(payment.payment_method.card.fingerprint)
        return body

    async def _look_up(
        self, adapter: ProviderAdapter, payment: Payment, attempt_id: str, reference: str | None
    ) -> ProviderResult:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await adapter.sync(
                    SyncRequest(
                        payment_id=payment.id,
                        provider_reference=reference,
                        attempt_id=attempt_id,
                        attempted_at=float(payment.created),
                    )
                )
        except Exception as exc:  # an unreachable provider confirms nothing
            logger.warning("confirm: %s look-up failed (%s)", adapter.name, type(exc).__name__)
            return ProviderResult(outcome=Outcome.UNKNOWN, code="lookup_failed")

    async def _settle(
        self, merchant: Merchant, payment: Payment, row: asyncpg.Record, attempt_id: str, found: ProviderResult
    ) -> bytes:
        previous_status = payment.status
        journal = apply_outcome(merchant.id, payment, found)
        provider = row["provider"]
        payment.routing.attempts.append(
            AttemptOut(provider=provider, outcome=found.outcome.value, code=found.code, latency_ms=0)
        )
        if payment.risk is not None and isinstance(payment.risk.get("sca"), dict):
            payment.risk["sca"]["authenticated"] = found.outcome is Outcome.APPROVED
        body = ENCODER.encode(payment)
        op = WriteOp(
            payment_update=PaymentUpdate(
                id=payment.id,
                expected_version=row["version"],
                status=payment.status,
                amount_captured=payment.amount_captured,
                amount_refunded=payment.amount_refunded,
                capture_closed=payment.capture == "automatic" and payment.status == "captured",
                body=body.decode(),
            ),
            attempt_updates=[
                AttemptUpdate(
                    id=attempt_id,
                    status="done",
                    outcome=found.outcome.value,
                    code=found.code,
                    provider_reference=found.provider_reference or row["provider_reference"],
                    latency_ms=None,
                )
            ],
            journal=journal,
            events=events_for(
                merchant.id,
                payment.id,
                payment.status,
                body,
                livemode=payment.livemode,
                previous_status=previous_status,
            ),
        )
        await self._writer.submit(op)
        logger.info("payment %s confirmed at %s: %s (%s)", payment.id, provider, payment.status, int(time.time()))
        return body
