"""Capture, void and refund as durable intents: claimed before the provider call, closed after it.

The live request, a retried request with the same Idempotency-Key and recovery all drive an
operation through :class:`OperationDriver`, so an operation is settled the same way whoever
finishes it:

1. The intent (``payment_operations`` row) commits with the merchant's key reservation before any
   provider call. It claims the payment: the database admits one open operation per payment, and
   only while the payment is at the version the request read, so a racing worker is refused
   before it calls anyone.
2. The provider is called with a key derived from the intent id, never drawn per request: a replay
   (by a retry or by recovery) is answered from the provider's idempotency store instead of
   moving money again.
3. The outcome closes the intent, conditionally (only while it is open), in the same batch as the
   payment's new state, its postings, the refund row and the stored response. Whoever closes it
   second writes nothing.

An outcome that is not the provider's verdict (``unknown``) leaves the intent open: the request
answers ``503 provider_outcome_unknown`` and keeps its reservation, so a retry with the same key
resumes this very intent, and recovery replays it on its own schedule.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Mapping
from typing import Literal

import asyncpg
import msgspec

from adapters.base import (
    CaptureRequest,
    FlowNotSupported,
    Outcome,
    ProviderAdapter,
    ProviderResult,
    RefundRequest,
    SyncRequest,
    VoidRequest,
)
from switch.errors import ConcurrentUpdate, LedgerUnavailable, PaymentError
from switch.events.outbox import events_for
from switch.ledger import postings
from switch.ledger.writer import (
    GroupCommitWriter,
    IdempotencyFinish,
    IdempotencyRelease,
    OperationClose,
    OperationInsert,
    OperationTouch,
    PaymentUpdate,
    RefundInsert,
    WriteOp,
)
from switch.payments.model import ENCODER, PAYMENT_DECODER, Payment, Refund
from switch.payments.state import PaymentState, derive_status

logger = logging.getLogger(__name__)

OperationKind = Literal["capture", "void", "refund"]
ID_PREFIX: dict[str, str] = {"capture": "cap", "void": "void", "refund": "re"}

# How long the request that created an operation owns it before a retry or recovery may take over.
LEASE_MARGIN_S = 30
# Attempts to settle an operation against a payment a notification changed meanwhile.
_SETTLE_RETRIES = 5
# Of those, how many may meet a failed ledger batch (the money moved: booking it is worth a wait).
_LEDGER_RETRIES = 3


class OperationParams(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the merchant asked for besides the amount, kept with the intent so a replay acts on it."""

    final: bool = False
    reason: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


_PARAMS_ENCODER = msgspec.json.Encoder()
_PARAMS_DECODER = msgspec.json.Decoder(OperationParams)


class Operation(msgspec.Struct, kw_only=True):
    """An operation intent, as written and as read back."""

    id: str
    payment_id: str
    merchant_id: str
    kind: str
    amount: int
    currency: str
    provider: str
    provider_key: str
    params: OperationParams
    idempotency_key: str | None
    created: int
    checks: int = 0

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Operation:
        """Build from a ``payment_operations`` row."""
        return cls(
            id=row["id"],
            payment_id=row["payment_id"],
            merchant_id=row["merchant_id"],
            kind=row["kind"],
            amount=row["amount"],
            currency=row["currency"],
            provider=row["provider"],
            provider_key=row["provider_key"],
            params=_PARAMS_DECODER.decode(row["params"]),
            idempotency_key=row["idempotency_key"],
            created=row["created"],
            checks=row["checks"],
        )

    def insert_row(self, *, expected_version: int, lease_until: int) -> OperationInsert:
        """The claim written before the provider call."""
        return OperationInsert(
            id=self.id,
            payment_id=self.payment_id,
            merchant_id=self.merchant_id,
            kind=self.kind,
            amount=self.amount,
            currency=self.currency,
            provider=self.provider,
            provider_key=self.provider_key,
            params=_PARAMS_ENCODER.encode(self.params).decode(),
            idempotency_key=self.idempotency_key,
            expected_version=expected_version,
            lease_until=lease_until,
            created=self.created,
        )


def provider_key_for(intent_id: str) -> str:
    """The provider idempotency key of an intent (attempt or operation): its durable id, never random.

    Ids are unique across workers and time-ordered; each adapter fits the key to its provider's
    length and character rules (``adapters.base.provider_key``).
    """
    return intent_id


class LoadedPayment(msgspec.Struct, kw_only=True):
    """A payment as read for an operation: the API object, its state columns and its version."""

    payment: Payment
    state: PaymentState
    version: int
    provider: str


_LOAD_SQL = (
    "SELECT body::text AS body, status, amount, amount_captured, amount_refunded, capture_closed, version,"
    " provider FROM payments WHERE id = $1 AND merchant_id = $2"
)


async def load_payment(pool: asyncpg.Pool, merchant_id: str, payment_id: str) -> LoadedPayment | None:
    """Read one payment of ``merchant_id`` with its version, or None."""
    row = await pool.fetchrow(_LOAD_SQL, payment_id, merchant_id)
    if row is None:
        return None
    state = PaymentState(
        status=row["status"],
        amount=row["amount"],
        amount_captured=row["amount_captured"],
        amount_refunded=row["amount_refunded"],
        capture_closed=row["capture_closed"],
    )
    return LoadedPayment(
        payment=PAYMENT_DECODER.decode(row["body"]), state=state, version=row["version"], provider=row["provider"] or ""
    )


def refusal_body(flow: str, result: ProviderResult) -> bytes:
    """The stored error object of an operation the provider refused (a verdict, replayed as is)."""
    message = f"the provider refused the {flow}" + (f" ({result.code})" if result.code else "")
    error = {"type": "invalid_request_error", "code": f"{flow}_refused_by_provider", "message": message, "param": None}
    return ENCODER.encode({"error": error})


class Settled(msgspec.Struct, frozen=True):
    """The HTTP answer of a settled operation."""

    status_code: int
    body: bytes


class OutcomeUnknown(PaymentError):
    """The provider's answer to an operation was lost; the intent stays open for a retry or recovery."""

    def __init__(self, flow: str) -> None:
        """Build the error."""
        super().__init__(
            "unavailable",
            "provider_outcome_unknown",
            f"the provider's answer to the {flow} was lost; retry with the same Idempotency-Key (never a new one)"
            " and the switch will resume this operation without moving money twice",
        )


def _expected_total(operation: Operation, payment: Payment) -> int | None:
    """The provider's cumulative total for this kind of operation, had it been performed."""
    if operation.kind == "capture":
        return payment.amount_captured + operation.amount
    if operation.kind == "refund":
        return payment.amount_refunded + operation.amount
    return None


def backoff_s(checks: int) -> int:
    """Seconds until the next look at an unresolved operation or attempt: 30 s doubling to 1 h."""
    return min(30 * 2 ** min(checks, 10), 3600)


class OperationDriver:
    """Calls the provider for an open operation and settles it; shared by requests and recovery."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        writer: GroupCommitWriter,
        adapters: Mapping[str, ProviderAdapter],
        provider_timeout_s: float,
        stuck_after_s: float = 86_400.0,
    ) -> None:
        """Wire the driver.

        Args:
            pool: Read pool (payments are re-read when a notification changed one meanwhile).
            writer: The group-commit writer.
            adapters: Provider accounts by name.
            provider_timeout_s: Deadline of one provider call.
            stuck_after_s: After this long unresolved, an operation is listed for an operator.
        """
        self._pool = pool
        self._writer = writer
        self._adapters = adapters
        self._provider_timeout_s = provider_timeout_s
        self._stuck_after_s = stuck_after_s

    @property
    def lease_s(self) -> int:
        """How long a driver owns an operation: a replay, a look-up and the margin."""
        return int(self._provider_timeout_s * 3) + LEASE_MARGIN_S

    async def drive(self, operation: Operation, loaded: LoadedPayment, *, isolated: bool = False) -> Settled:
        """Call the provider (replaying with the same key when needed) and settle the operation.

        Raises:
            OutcomeUnknown: The outcome is still unknown; the intent stays open.
            PaymentError: ``provider_unavailable`` when the operation certainly did nothing (its
                reservation is released, so a retry with the same key runs anew).
        """
        result = await self.resolve(operation, loaded.payment)
        return await self.settle(operation, loaded, result, isolated=isolated)

    async def resolve(self, operation: Operation, payment: Payment) -> ProviderResult:
        """The provider's verdict on ``operation``, in order of trust: the call, its replay, a look-up."""
        adapter = self._adapters.get(operation.provider)
        if adapter is None:
            return ProviderResult(outcome=Outcome.UNKNOWN, code="provider_not_configured")
        result = await self._call(adapter, operation, payment)
        if result.outcome is Outcome.UNKNOWN:
            # The same key makes the provider answer from its idempotency store, not act again.
            result = await self._call(adapter, operation, payment)
        if result.outcome is Outcome.UNKNOWN:
            result = await self._look_up(adapter, operation, payment, result)
        return result

    async def _call(self, adapter: ProviderAdapter, operation: Operation, payment: Payment) -> ProviderResult:
        reference = payment.provider_reference or ""
        try:
            async with asyncio.timeout(self._provider_timeout_s):
                if operation.kind == "capture":
                    return await adapter.capture(
                        CaptureRequest(
                            payment_id=payment.id,
                            provider_reference=reference,
                            idempotency_key=operation.provider_key,
                            amount=operation.amount,
                            currency=operation.currency,
                            final=operation.params.final,
                        )
                    )
                if operation.kind == "void":
                    return await adapter.void(
                        VoidRequest(
                            payment_id=payment.id,
                            provider_reference=reference,
                            idempotency_key=operation.provider_key,
                            amount=operation.amount,
                            currency=operation.currency,
                        )
                    )
                return await adapter.refund(
                    RefundRequest(
                        payment_id=payment.id,
                        refund_id=operation.id,
                        provider_reference=reference,
                        idempotency_key=operation.provider_key,
                        amount=operation.amount,
                        currency=operation.currency,
                    )
                )
        except FlowNotSupported:
            return ProviderResult(outcome=Outcome.TECHNICAL, code="flow_not_supported")
        except TimeoutError:
            return ProviderResult(outcome=Outcome.UNKNOWN, code="timeout")
        except Exception as exc:
            # An adapter that raised may have sent the request first: not proof of nothing.
            logger.warning("adapter %s raised %s on %s", adapter.name, type(exc).__name__, operation.kind)
            return ProviderResult(outcome=Outcome.UNKNOWN, code="adapter_error")

    async def _look_up(
        self, adapter: ProviderAdapter, operation: Operation, payment: Payment, previous: ProviderResult
    ) -> ProviderResult:
        request = SyncRequest(
            payment_id=payment.id,
            provider_reference=payment.provider_reference,
            attempt_id=operation.id,
            attempted_at=float(operation.created),
            operation=operation.kind,
            operation_id=operation.id,
            amount=operation.amount,
            currency=operation.currency,
            expected_total=_expected_total(operation, payment),
        )
        try:
            async with asyncio.timeout(self._provider_timeout_s):
                found = await adapter.sync(request)
        except Exception:  # a look-up that failed proves nothing either way
            return previous
        if found.outcome in (Outcome.APPROVED, Outcome.DECLINED_HARD, Outcome.DECLINED_SOFT):
            return found
        return previous

    async def settle(
        self, operation: Operation, loaded: LoadedPayment, result: ProviderResult, *, isolated: bool = False
    ) -> Settled:
        """Write the outcome of ``operation``; see :meth:`drive` for what it raises."""
        for attempt in range(_SETTLE_RETRIES):
            op, settled = self._outcome_op(operation, loaded, result)
            op.isolated = isolated
            try:
                written = await self._writer.submit(op)
            except LedgerUnavailable:
                # Safe to write again: the close is conditional, so if the failed batch did commit
                # (its acknowledgement was lost) the second write finds the operation closed.
                if attempt + 1 >= _LEDGER_RETRIES:
                    raise
                await asyncio.sleep(0.05 * 4**attempt)
                continue
            except ConcurrentUpdate:
                # A notification changed the payment after we read it; the operation still holds
                # the payment, so settle against its current state.
                reloaded = await load_payment(self._pool, operation.merchant_id, operation.payment_id)
                if reloaded is None:
                    raise
                loaded = reloaded
                continue
            if not written.closed:
                return await self._closed_by_someone_else(operation)
            if settled is None:
                if result.outcome is Outcome.TECHNICAL:
                    raise PaymentError(
                        "unavailable",
                        "provider_unavailable",
                        f"the provider could not take the {operation.kind} now; nothing was done, retry",
                    )
                raise OutcomeUnknown(operation.kind)
            return settled
        raise ConcurrentUpdate(operation.payment_id)

    def _outcome_op(
        self, operation: Operation, loaded: LoadedPayment, result: ProviderResult
    ) -> tuple[WriteOp, Settled | None]:
        now = int(time.time())
        outcome = result.outcome
        if outcome is Outcome.UNKNOWN:
            age = now - operation.created
            touch = OperationTouch(
                id=operation.id,
                lease_until=0,  # released: a retry with the same key, or recovery, may drive it now
                checks=operation.checks + 1,
                next_check=now + backoff_s(operation.checks),
                stuck_since=now if age >= self._stuck_after_s else None,
            )
            return WriteOp(operation_touches=[touch]), None
        close = OperationClose(
            id=operation.id,
            status="succeeded",
            outcome=outcome.value,
            code=result.code,
            provider_reference=result.provider_reference,
            finished=now,
        )
        if outcome is Outcome.TECHNICAL:
            # Certainly nothing happened: close it and free the key, so a retry starts afresh.
            op = WriteOp(operation_close=msgspec.structs.replace(close, status="failed"))
            if operation.idempotency_key is not None:
                op.release.append(IdempotencyRelease(merchant_id=operation.merchant_id, key=operation.idempotency_key))
            return op, None
        if outcome not in (Outcome.APPROVED, Outcome.PENDING):
            # The provider's own verdict: nothing moved, and the refusal is the stored answer.
            settled = Settled(402, refusal_body(operation.kind, result))
            op = WriteOp(operation_close=msgspec.structs.replace(close, status="refused"))
            self._finish(op, operation, settled)
            return op, settled
        op, settled = self._performed(operation, loaded, result, now)
        op.operation_close = close
        self._finish(op, operation, settled)
        return op, settled

    @staticmethod
    def _finish(op: WriteOp, operation: Operation, settled: Settled) -> None:
        if operation.idempotency_key is not None:
            op.finish.append(
                IdempotencyFinish(
                    merchant_id=operation.merchant_id,
                    key=operation.idempotency_key,
                    status_code=settled.status_code,
                    response=settled.body,
                )
            )

    @staticmethod
    def _performed(
        operation: Operation, loaded: LoadedPayment, result: ProviderResult, now: int
    ) -> tuple[WriteOp, Settled]:
        """The provider performed ``operation`` (or accepted it for later confirmation): book it.

        Works on copies: a write that fails is built again from the same ``loaded`` state.
        """
        payment, state = PAYMENT_DECODER.decode(ENCODER.encode(loaded.payment)), copy.copy(loaded.state)
        common = {
            "merchant_id": operation.merchant_id,
            "payment_id": payment.id,
            "provider": loaded.provider or operation.provider,
            "currency": payment.currency,
            "created": now,
        }
        op = WriteOp()
        if operation.kind == "capture":
            state.amount_captured += operation.amount
            state.capture_closed = operation.params.final or state.amount_captured >= state.amount
            release = state.amount - state.amount_captured if state.capture_closed else 0
            op.journal.append(
                postings.capture(capture_id=operation.id, amount=operation.amount, release=release, **common)
            )
        elif operation.kind == "void":
            release = state.amount - state.amount_captured
            state.status = "voided"
            state.capture_closed = True
            op.journal.append(postings.void(operation_id=operation.id, release=release, **common))
        else:
            state.amount_refunded += operation.amount
            op.journal.append(postings.refund(refund_id=operation.id, amount=operation.amount, **common))
        payment.amount_captured = state.amount_captured
        payment.amount_refunded = state.amount_refunded
        state.status = derive_status(state)
        payment.status = state.status
        payment_body = ENCODER.encode(payment)
        op.payment_update = PaymentUpdate(
            id=payment.id,
            expected_version=loaded.version,
            status=payment.status,
            amount_captured=payment.amount_captured,
            amount_refunded=payment.amount_refunded,
            capture_closed=state.capture_closed,
            body=payment_body.decode(),
        )
        if operation.kind != "refund":
            op.events = events_for(
                operation.merchant_id,
                payment.id,
                payment.status,
                payment_body,
                livemode=payment.livemode,
                previous_status=loaded.state.status,
            )
            return op, Settled(200, payment_body)
        refund_status = "pending" if result.outcome is Outcome.PENDING else "succeeded"
        refund = Refund(
            id=operation.id,
            payment=payment.id,
            amount=operation.amount,
            currency=payment.currency,
            status=refund_status,
            reason=operation.params.reason,
            metadata=operation.params.metadata,
            created=operation.created,
        )
        op.refunds.append(
            RefundInsert(
                id=operation.id,
                payment_id=payment.id,
                merchant_id=operation.merchant_id,
                amount=operation.amount,
                currency=payment.currency,
                status=refund_status,
                provider_reference=result.provider_reference,
                reason=operation.params.reason,
                metadata=ENCODER.encode(operation.params.metadata).decode(),
                created=operation.created,
            )
        )
        refund_body = ENCODER.encode(refund)
        op.events = events_for(
            operation.merchant_id,
            payment.id,
            payment.status,
            payment_body,
            livemode=payment.livemode,
            previous_status=loaded.state.status,
            refund_json=refund_body,
            refund_status=refund_status,
        )
        return op, Settled(201, refund_body)

    async def _closed_by_someone_else(self, operation: Operation) -> Settled:
        """Another driver (a retry, recovery) closed the operation first: answer what it decided."""
        row = await self._pool.fetchrow(
            "SELECT o.status, o.code, k.status_code, k.response FROM payment_operations o"
            " LEFT JOIN idempotency_keys k ON k.merchant_id = o.merchant_id AND k.key = o.idempotency_key"
            " WHERE o.id = $1",
            operation.id,
        )
        if row is not None and row["status_code"]:
            return Settled(row["status_code"], bytes(row["response"]))
        status = row["status"] if row is not None else "failed"
        if status == "failed":
            raise PaymentError(
                "unavailable", "provider_unavailable", f"the {operation.kind} did not happen; nothing was done, retry"
            )
        if status == "refused":
            refused = ProviderResult(outcome=Outcome.DECLINED_HARD, code=row["code"] if row is not None else None)
            return Settled(402, refusal_body(operation.kind, refused))
        loaded = await load_payment(self._pool, operation.merchant_id, operation.payment_id)
        if loaded is None:
            raise PaymentError("not_found", "resource_missing", "no such payment", "id")
        if operation.kind != "refund":
            return Settled(200, ENCODER.encode(loaded.payment))
        refund_row = await self._pool.fetchrow(
            "SELECT status, created FROM refunds WHERE id = $1 AND merchant_id = $2",
            operation.id,
            operation.merchant_id,
        )
        refund = Refund(
            id=operation.id,
            payment=operation.payment_id,
            amount=operation.amount,
            currency=operation.currency,
            status=refund_row["status"] if refund_row is not None else "succeeded",
            reason=operation.params.reason,
            metadata=operation.params.metadata,
            created=refund_row["created"] if refund_row is not None else operation.created,
        )
        return Settled(201, ENCODER.encode(refund))
