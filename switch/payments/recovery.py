"""Recovery of attempts whose outcome is unknown: a crash or timeout between intent and outcome.

An attempt intent is written before every provider call. If the worker dies before the outcome
batch commits, or the provider's answer stayed ambiguous, the attempt is left ``intent`` or
``unknown``. Recovery asks the provider for its status and settles the payment exactly as the
live path would have, storing the resolved response under the request's Idempotency-Key so a
retry gets it. One worker at a time recovers (a PostgreSQL advisory lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

import asyncpg
import msgspec

from adapters.base import Outcome, ProviderAdapter, ProviderResult, SyncRequest
from switch.errors import PaymentError
from switch.ledger.writer import AttemptUpdate, GroupCommitWriter, IdempotencyFinish, PaymentUpdate, WriteOp
from switch.payments.idempotency import IdempotencyGuard, IdempotencyRequest
from switch.payments.model import ENCODER, PAYMENT_DECODER, AttemptOut
from switch.payments.outcome import apply_outcome, payment_row

logger = logging.getLogger(__name__)

_LOCK_ID = 7_310_442_002
_OPEN_ATTEMPTS = """
SELECT a.id, a.payment_id, a.merchant_id, a.provider, a.request::text AS request, a.idempotency_key,
       a.provider_reference, a.status, p.version, p.body::text AS body
FROM payment_attempts a LEFT JOIN payments p ON p.id = a.payment_id
WHERE a.status IN ('intent', 'unknown') AND a.created <= $1
ORDER BY a.created
LIMIT $2
"""


class RecoveryReport(msgspec.Struct):
    """What one recovery pass did."""

    examined: int = 0
    resolved: int = 0
    still_unknown: int = 0


class AttemptRecovery:
    """Finds open attempts and settles them with the provider's status call."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        writer: GroupCommitWriter,
        adapters: Mapping[str, ProviderAdapter],
        idempotency: IdempotencyGuard,
        grace_s: float = 60.0,
        provider_timeout_s: float = 15.0,
    ) -> None:
        """Create the recovery.

        Args:
            pool: Read pool.
            writer: The ledger writer (settlements go through the same group commit).
            adapters: Providers by name.
            idempotency: To refresh stored responses in the fast store.
            grace_s: Attempts younger than this may still be in flight and are left alone.
            provider_timeout_s: Deadline of each status call.
        """
        self._pool = pool
        self._writer = writer
        self._adapters = adapters
        self._idempotency = idempotency
        self._grace_s = grace_s
        self._provider_timeout_s = provider_timeout_s

    async def run_once(self, *, now: float | None = None, limit: int = 500) -> RecoveryReport:
        """Settle up to ``limit`` open attempts older than the grace period."""
        report = RecoveryReport()
        cutoff = int((time.time() if now is None else now) - self._grace_s)
        async with self._pool.acquire() as connection:
            if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_ID):
                return report  # another worker is recovering
            try:
                rows = await connection.fetch(_OPEN_ATTEMPTS, cutoff, limit)
                for row in rows:
                    report.examined += 1
                    if await self._settle(row):
                        report.resolved += 1
                    else:
                        report.still_unknown += 1
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
        return report

    async def run_forever(self, interval_s: float = 30.0) -> None:
        """Run a pass now and then every ``interval_s`` seconds until cancelled."""
        while True:
            try:
                report = await self.run_once()
                if report.examined:
                    logger.info(
                        "recovery: %d open attempts, %d resolved, %d still unknown",
                        report.examined,
                        report.resolved,
                        report.still_unknown,
                    )
            except (OSError, asyncpg.PostgresError, PaymentError) as exc:
                logger.warning("recovery pass failed: %s", type(exc).__name__)
            await asyncio.sleep(interval_s)

    async def _status(self, row: asyncpg.Record) -> ProviderResult | None:
        adapter = self._adapters.get(row["provider"])
        if adapter is None:
            logger.warning("recovery: provider %s of attempt %s is not configured", row["provider"], row["id"])
            return None
        request = SyncRequest(
            payment_id=row["payment_id"], provider_reference=row["provider_reference"], attempt_id=row["id"]
        )
        try:
            async with asyncio.timeout(self._provider_timeout_s):
                result = await adapter.sync(request)
        except Exception as exc:  # any failure leaves the attempt for the next pass
            logger.info("recovery: status call for %s failed: %s", row["id"], type(exc).__name__)
            return None
        if result.outcome is Outcome.DECLINED_HARD and result.code == "resource_missing":
            # The provider never saw the request, so nothing was authorized.
            return ProviderResult(outcome=Outcome.TECHNICAL, code="provider_unreachable", message="never reached")
        if result.outcome in (Outcome.UNKNOWN, Outcome.TECHNICAL):
            return None
        return result

    async def _settle(self, row: asyncpg.Record) -> bool:
        result = await self._status(row)
        if result is None:
            return False
        existing = row["body"] is not None
        payment = PAYMENT_DECODER.decode(row["body"] if existing else row["request"])
        payment.provider = row["provider"]
        merchant_id = row["merchant_id"]
        journal = apply_outcome(merchant_id, payment, result)
        payment.routing.attempts = [a for a in payment.routing.attempts if a.outcome != Outcome.UNKNOWN.value]
        payment.routing.attempts.append(
            AttemptOut(provider=row["provider"], outcome=result.outcome.value, code=result.code, latency_ms=0)
        )
        body = ENCODER.encode(payment)
        op = WriteOp(
            journal=journal,
            attempt_updates=[
                AttemptUpdate(
                    id=row["id"],
                    status="done",
                    outcome=result.outcome.value,
                    code=result.code,
                    provider_reference=result.provider_reference,
                    latency_ms=None,
                )
            ],
        )
        if existing:
            op.payment_update = PaymentUpdate(
                id=payment.id,
                expected_version=row["version"],
                status=payment.status,
                amount_captured=payment.amount_captured,
                amount_refunded=payment.amount_refunded,
                capture_closed=payment.capture == "automatic" and payment.status == "captured",
                body=body.decode(),
            )
        else:
            op.payments.append(payment_row(merchant_id, payment, body))
        key = row["idempotency_key"]
        if key is not None:
            op.finish.append(IdempotencyFinish(merchant_id=merchant_id, key=key, status_code=201, response=body))
        try:
            await self._writer.submit(op)
        except PaymentError as exc:
            logger.warning("recovery: settling %s failed: %s", row["id"], exc.code)
            return False
        if key is not None:
            # Refresh the fast store, which may still hold the in-flight claim or the pending answer.
            await self._idempotency.forget(IdempotencyRequest(merchant_id, key, "", b""))
        return True


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait for it."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
