"""Recovery of every open intent: authorization attempts and capture, void and refund operations.

An intent is written before every provider call. If the worker dies before the outcome commits,
or the provider's answer stayed ambiguous, the intent stays open. Recovery finishes it exactly as
the live path would have, and stores the resolved answer under the request's Idempotency-Key so a
retry gets it:

* an authorization attempt is looked up (retrieve by reference, else search by attempt id, which
  is trusted to say "nothing" only after the provider's consistency window);
* an operation is replayed with its own provider key (the provider answers from its idempotency
  store), then looked up.

Recovery is idempotent (it reads the payment's current state and never books what a notification
already booked; every settlement is conditional and written in a transaction of its own, so one
bad intent never fails a batch), supervised (no exception ends the loop; each is logged and
counted) and fair (each intent has its own next check with exponential backoff; after
``stuck_after_s`` it is marked for an operator, listed by ``switch recovery list`` and counted,
and keeps being checked hourly without holding back newer ones). One worker at a time recovers
(a PostgreSQL advisory lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Mapping

import asyncpg
import msgspec

from adapters.base import Outcome, ProviderAdapter, ProviderResult, SyncRequest
from switch.errors import ConcurrentUpdate, PaymentError
from switch.events.outbox import events_for
from switch.ledger.writer import (
    AttemptCheck,
    AttemptUpdate,
    GroupCommitWriter,
    IdempotencyFinish,
    PaymentUpdate,
    WriteOp,
)
from switch.metrics import Metrics
from switch.payments.idempotency import IdempotencyGuard, IdempotencyRequest
from switch.payments.model import ENCODER, PAYMENT_DECODER, AttemptOut, Payment
from switch.payments.operations import (
    Operation,
    OperationDriver,
    OutcomeUnknown,
    backoff_s,
    load_payment,
)
from switch.payments.outcome import apply_outcome, payment_row

logger = logging.getLogger(__name__)

_LOCK_ID = 7_310_442_002
# Oldest due first by next check, so an intent that can never be settled backs off and newer
# ones are examined; one that is stuck for an operator is still looked at, hourly.
_DUE_ATTEMPTS = """
SELECT a.id, a.payment_id, a.merchant_id, a.provider, a.request::text AS request, a.idempotency_key,
       a.provider_reference, a.status, a.checks, a.created, a.stuck_since,
       p.version, p.status AS payment_status, p.body::text AS body,
       k.status_code AS key_status
FROM payment_attempts a
LEFT JOIN payments p ON p.id = a.payment_id
LEFT JOIN idempotency_keys k ON k.merchant_id = a.merchant_id AND k.key = a.idempotency_key
WHERE a.status IN ('intent', 'unknown') AND a.created <= $1 AND coalesce(a.next_check, a.created) <= $2
ORDER BY coalesce(a.next_check, a.created)
LIMIT $3
"""
_DUE_OPERATIONS = """
UPDATE payment_operations AS o SET lease_until = $3
FROM (
    SELECT id FROM payment_operations
    WHERE status = 'open' AND created <= $1 AND next_check <= $2 AND lease_until < $2
    ORDER BY next_check
    LIMIT $4
    FOR UPDATE SKIP LOCKED
) AS due
WHERE o.id = due.id AND o.status = 'open'
RETURNING o.*
"""
_UNRESOLVED = """
SELECT 'authorize' AS kind, id, payment_id, merchant_id, provider, amount, currency, status, checks, created,
       stuck_since
FROM payment_attempts WHERE status IN ('intent', 'unknown')
UNION ALL
SELECT kind, id, payment_id, merchant_id, provider, amount, currency, status, checks, created, stuck_since
FROM payment_operations WHERE status = 'open'
ORDER BY created
"""


class RecoveryReport(msgspec.Struct):
    """What one recovery pass did."""

    examined: int = 0
    resolved: int = 0
    still_unknown: int = 0
    errors: int = 0
    stuck: int = 0


class Unresolved(msgspec.Struct, frozen=True):
    """An intent recovery has not settled: an authorization attempt or an operation."""

    kind: str
    id: str
    payment_id: str
    merchant_id: str
    provider: str
    amount: int
    currency: str
    status: str
    checks: int
    created: int
    stuck_since: int | None


async def list_unresolved(pool: asyncpg.Pool | asyncpg.Connection, *, stuck_only: bool = False) -> list[Unresolved]:
    """Every open intent, oldest first (only those marked for an operator with ``stuck_only``)."""
    rows = await pool.fetch(_UNRESOLVED)
    found = [Unresolved(**dict(row)) for row in rows]
    return [u for u in found if u.stuck_since is not None] if stuck_only else found


class AttemptRecovery:
    """Finds open intents and settles them with the provider's answer."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        writer: GroupCommitWriter,
        adapters: Mapping[str, ProviderAdapter],
        idempotency: IdempotencyGuard,
        metrics: Metrics | None = None,
        grace_s: float = 60.0,
        provider_timeout_s: float = 15.0,
        stuck_after_s: float = 86_400.0,
    ) -> None:
        """Create the recovery.

        Args:
            pool: Read pool.
            writer: The ledger writer (settlements go through it, each in its own transaction).
            adapters: Providers by name.
            idempotency: To refresh stored responses in the fast store.
            metrics: Where passes, errors and unresolved intents are counted.
            grace_s: Intents younger than this may still be in flight and are left alone.
            provider_timeout_s: Deadline of each provider call.
            stuck_after_s: After this long unresolved, an intent is marked for an operator.
        """
        self._pool = pool
        self._writer = writer
        self._adapters = adapters
        self._idempotency = idempotency
        self._metrics = metrics or Metrics()
        self._grace_s = grace_s
        self._provider_timeout_s = provider_timeout_s
        self._stuck_after_s = stuck_after_s
        self._operations = OperationDriver(
            pool=pool,
            writer=writer,
            adapters=adapters,
            provider_timeout_s=provider_timeout_s,
            stuck_after_s=stuck_after_s,
        )

    async def run_once(self, *, now: float | None = None, limit: int = 500) -> RecoveryReport:
        """Settle up to ``limit`` due attempts and ``limit`` due operations older than the grace period."""
        report = RecoveryReport()
        clock = time.time() if now is None else now
        cutoff, due = int(clock - self._grace_s), int(clock)
        async with self._pool.acquire() as connection:
            if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_ID):
                return report  # another worker is recovering
            try:
                attempts = await connection.fetch(_DUE_ATTEMPTS, cutoff, due, limit)
                for row in attempts:
                    if not await self._guarded(report, row["id"], self._settle_attempt(row, due)):
                        await self._back_off_failed_attempt(row, due)
                # Operations are leased row by row, so a retry of the merchant's request and
                # recovery never drive the same one at once.
                operations = await connection.fetch(_DUE_OPERATIONS, cutoff, due, due + self._operations.lease_s, limit)
                for row in operations:
                    await self._guarded(report, row["id"], self._settle_operation(row))
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
        self._metrics.recovery_passes.inc()
        return report

    async def _guarded(self, report: RecoveryReport, intent_id: str, settle: Awaitable[bool]) -> bool:
        """Run one settlement; whatever it raises is logged and counted, never the end of the pass.

        Returns:
            False when the settlement raised.
        """
        report.examined += 1
        try:
            resolved = await settle
        except Exception as exc:
            report.errors += 1
            self._metrics.recovery_errors.inc()
            logger.warning("recovery of %s failed: %s", intent_id, type(exc).__name__)
            return False
        if resolved:
            report.resolved += 1
        else:
            report.still_unknown += 1
        return True

    async def _back_off_failed_attempt(self, row: asyncpg.Record, now: int) -> None:
        """An attempt whose settlement raised backs off like an unresolved one, so it cannot starve
        newer attempts, and is marked for an operator after ``stuck_after_s``.

        (An operation needs nothing here: its lease, taken for this pass, already postpones it.)
        """
        age = now - row["created"]
        check = AttemptCheck(
            id=row["id"],
            checks=row["checks"] + 1,
            next_check=now + backoff_s(row["checks"]),
            stuck_since=row["stuck_since"] or (now if age >= self._stuck_after_s else None),
        )
        try:
            await self._writer.submit(WriteOp(attempt_checks=[check], isolated=True))
        except Exception as exc:  # the database itself is failing: the next pass tries again
            logger.warning("recovery could not back off %s: %s", row["id"], type(exc).__name__)

    async def run_forever(self, interval_s: float = 30.0) -> None:
        """Run a pass now and then every ``interval_s`` seconds until cancelled; nothing else ends it."""
        while True:
            try:
                report = await self.run_once()
                if report.examined:
                    logger.info(
                        "recovery: %d open intents, %d resolved, %d still unknown, %d errors",
                        report.examined,
                        report.resolved,
                        report.still_unknown,
                        report.errors,
                    )
                await self.refresh_gauges()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # supervised: a pass that failed is retried at the next tick
                self._metrics.recovery_errors.inc()
                logger.warning("recovery pass failed: %s", type(exc).__name__)
            await asyncio.sleep(interval_s)

    async def refresh_gauges(self) -> None:
        """Publish how many intents are unresolved, how many are stuck and the age of the oldest."""
        unresolved = await list_unresolved(self._pool)
        now = time.time()
        self._metrics.unresolved_intents.set(len(unresolved))
        self._metrics.stuck_intents.set(sum(1 for u in unresolved if u.stuck_since is not None))
        self._metrics.oldest_unresolved_seconds.set(now - unresolved[0].created if unresolved else 0)

    # ------------------------------------------------------------------ authorization attempts

    async def _status(self, row: asyncpg.Record) -> ProviderResult:
        adapter = self._adapters.get(row["provider"])
        if adapter is None:
            logger.warning("recovery: provider %s of attempt %s is not configured", row["provider"], row["id"])
            return ProviderResult(outcome=Outcome.UNKNOWN, code="provider_not_configured")
        request = SyncRequest(
            payment_id=row["payment_id"],
            provider_reference=row["provider_reference"],
            attempt_id=row["id"],
            attempted_at=float(row["created"]),
        )
        try:
            async with asyncio.timeout(self._provider_timeout_s):
                return await adapter.sync(request)
        except Exception as exc:  # a look-up that failed proves nothing; look again later
            logger.info("recovery: status call for %s failed: %s", row["id"], type(exc).__name__)
            return ProviderResult(outcome=Outcome.UNKNOWN, code="status_call_failed")

    async def _settle_attempt(self, row: asyncpg.Record, now: int) -> bool:
        merchant_id = row["merchant_id"]
        existing = row["body"] is not None
        if existing and row["payment_status"] != "pending":
            # Settled meanwhile (a notification): close the attempt, book nothing.
            payment = PAYMENT_DECODER.decode(row["body"])
            op = WriteOp(
                attempt_updates=[_attempt_done(row["id"], payment.status, None, payment.provider_reference)],
                isolated=True,
            )
            self._finish_key(op, row, ENCODER.encode(payment))
            await self._writer.submit(op)
            await self._refresh_key(row)
            return True
        result = await self._status(row)
        payment = PAYMENT_DECODER.decode(row["body"] if existing else row["request"])
        payment.provider = row["provider"]
        if result.outcome is Outcome.UNKNOWN:
            await self._still_unknown(row, payment, now)
            return False
        journal = apply_outcome(merchant_id, payment, result)
        _replace_attempt_outcome(payment, row["provider"], result)
        body = ENCODER.encode(payment)
        op = WriteOp(
            journal=journal,
            attempt_updates=[_attempt_done(row["id"], result.outcome.value, result.code, result.provider_reference)],
            isolated=True,
        )
        if existing:
            op.payment_update = _payment_update(payment, row["version"], body)
        else:
            op.payments.append(payment_row(merchant_id, payment, body))
        op.events = events_for(
            merchant_id,
            payment.id,
            payment.status,
            body,
            livemode=payment.livemode,
            previous_status=row["payment_status"] if existing else None,
        )
        self._finish_key(op, row, body)
        try:
            await self._writer.submit(op)
        except ConcurrentUpdate:
            return False  # changed under us (a notification); the next pass sees its new state
        await self._refresh_key(row)
        return True

    async def _still_unknown(self, row: asyncpg.Record, payment: Payment, now: int) -> None:
        """Back off; after a crash, answer pending so a retry is not refused with 409 forever."""
        age = now - row["created"]
        stuck_since = row["stuck_since"] or (now if age >= self._stuck_after_s else None)
        op = WriteOp(
            attempt_checks=[
                AttemptCheck(
                    id=row["id"],
                    checks=row["checks"] + 1,
                    next_check=now + backoff_s(row["checks"]),
                    stuck_since=stuck_since,
                )
            ],
            isolated=True,
        )
        if row["body"] is None:
            # The worker died between intent and outcome: the payment exists for the merchant as
            # pending with an unknown outcome, which a retry with the same key now gets.
            apply_outcome(row["merchant_id"], payment, ProviderResult(outcome=Outcome.UNKNOWN, code="timeout"))
            _replace_attempt_outcome(payment, row["provider"], ProviderResult(outcome=Outcome.UNKNOWN))
            body = ENCODER.encode(payment)
            op.payments.append(payment_row(row["merchant_id"], payment, body))
            op.events = events_for(row["merchant_id"], payment.id, payment.status, body, livemode=payment.livemode)
            # One statement may update a row once: the status rides on the check.
            op.attempt_checks[0] = msgspec.structs.replace(op.attempt_checks[0], status="unknown")
            self._finish_key(op, row, body)
        await self._writer.submit(op)
        if row["body"] is None:
            await self._refresh_key(row)

    @staticmethod
    def _finish_key(op: WriteOp, row: asyncpg.Record, body: bytes) -> None:
        key = row["idempotency_key"]
        if key is not None:
            op.finish.append(IdempotencyFinish(merchant_id=row["merchant_id"], key=key, status_code=201, response=body))

    async def _refresh_key(self, row: asyncpg.Record) -> None:
        key = row["idempotency_key"]
        if key is not None:
            # The fast store may still hold the in-flight claim or the pending answer.
            await self._idempotency.forget(IdempotencyRequest(row["merchant_id"], key, "", b""))

    # ------------------------------------------------------------------ operations

    async def _settle_operation(self, row: asyncpg.Record) -> bool:
        operation = Operation.from_row(row)
        loaded = await load_payment(self._pool, operation.merchant_id, operation.payment_id)
        if loaded is None:
            raise PaymentError("not_found", "resource_missing", f"operation {operation.id} names no payment")
        try:
            await self._operations.drive(operation, loaded, isolated=True)
        except OutcomeUnknown:
            return False
        except PaymentError as exc:
            if exc.code != "provider_unavailable":
                raise
            # Certainly nothing happened: the operation is closed as failed, its key released.
        if operation.idempotency_key is not None:
            await self._idempotency.forget(
                IdempotencyRequest(operation.merchant_id, operation.idempotency_key, "", b"")
            )
        return True


def _attempt_done(attempt_id: str, outcome: str, code: str | None, reference: str | None) -> AttemptUpdate:
    return AttemptUpdate(
        id=attempt_id, status="done", outcome=outcome, code=code, provider_reference=reference, latency_ms=None
    )


def _replace_attempt_outcome(payment: Payment, provider: str, result: ProviderResult) -> None:
    payment.routing.attempts = [a for a in payment.routing.attempts if a.outcome != Outcome.UNKNOWN.value]
    payment.routing.attempts.append(
        AttemptOut(provider=provider, outcome=result.outcome.value, code=result.code, latency_ms=0)
    )


def _payment_update(payment: Payment, version: int, body: bytes) -> PaymentUpdate:
    return PaymentUpdate(
        id=payment.id,
        expected_version=version,
        status=payment.status,
        amount_captured=payment.amount_captured,
        amount_refunded=payment.amount_refunded,
        capture_closed=payment.capture == "automatic" and payment.status == "captured",
        body=body.decode(),
    )


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait for it."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
