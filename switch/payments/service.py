"""The payment state machine: authorize, capture, void and refund, intent first.

Every operation follows the same shape: claim the idempotency key, check the state, write the
intent (with the durable key reservation) before calling the provider, call it with a key derived
from the intent, then write the new state, its journal transaction and the stored response in one
ledger batch, and answer only after that batch committed. An outcome that is not the provider's
verdict never cascades: it is resolved by replay and look-up, or left to recovery (DESIGN
section 3). Capture, void and refund live in :mod:`switch.payments.operations`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping

import asyncpg
import msgspec

from adapters.base import AuthorizeRequest, FlowNotSupported, Outcome, ProviderAdapter, ProviderResult, SyncRequest
from switch import money
from switch.errors import PaymentError
from switch.ids import new_id
from switch.ledger.writer import AttemptInsert, AttemptUpdate, GroupCommitWriter, WriteOp
from switch.merchants import Merchant
from switch.metrics import Metrics
from switch.payments.idempotency import IdempotencyGuard, IdempotencyRequest, Replay
from switch.payments.locks import KeyedLocks
from switch.payments.methods import MethodDetails, prepare_method
from switch.payments.model import (
    ENCODER,
    AttemptOut,
    CaptureCreate,
    Payment,
    PaymentCreate,
    Refund,
    RefundCreate,
    RoutingOut,
    VoidCreate,
)
from switch.payments.operations import (
    ID_PREFIX,
    Operation,
    OperationDriver,
    OperationKind,
    OperationParams,
    load_payment,
    provider_key_for,
)
from switch.payments.outcome import apply_outcome, payment_row
from switch.payments.state import PaymentState, check_capture, check_refund, check_void
from switch.routing.plan import NoRoute, may_cascade, priority_plan
from switch.vault.cards import Vault

logger = logging.getLogger(__name__)
_ATTEMPT_REQUEST_ENCODER = msgspec.json.Encoder()
_METADATA_DECODER = msgspec.json.Decoder(dict[str, str])
_ID_SHAPE = re.compile(r"[A-Za-z0-9_]{1,64}")

# A mutation's plan checks the payment's state and returns the amount and parameters to act on.
_Plan = Callable[[PaymentState], tuple[int, OperationParams]]


class Response(msgspec.Struct, frozen=True):
    """An HTTP-ready answer: status code, JSON body, and whether it is a replay."""

    status_code: int
    body: bytes
    replayed: bool = False


def _replayed(replay: Replay) -> Response:
    return Response(replay.status_code, replay.body, replayed=True)


class PaymentService:
    """Runs payment operations for authenticated merchants."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        writer: GroupCommitWriter,
        adapters: Mapping[str, ProviderAdapter],
        vault: Vault,
        idempotency: IdempotencyGuard,
        metrics: Metrics | None = None,
        locks: KeyedLocks | None = None,
        provider_timeout_s: float = 15.0,
    ) -> None:
        """Wire the service to its collaborators (``locks`` shared with webhook handling)."""
        self._pool = pool
        self._writer = writer
        self._adapters = adapters
        self._vault = vault
        self._idempotency = idempotency
        self._provider_timeout_s = provider_timeout_s
        self._metrics = metrics or Metrics()
        self._locks = locks or KeyedLocks()
        self._operations = OperationDriver(
            pool=pool, writer=writer, adapters=adapters, provider_timeout_s=provider_timeout_s
        )

    # ------------------------------------------------------------------ authorize

    async def create_payment(
        self, merchant: Merchant, request: PaymentCreate, idem: IdempotencyRequest | None
    ) -> Response:
        """Authorize a payment (and capture it when ``capture`` is ``automatic``).

        Raises:
            PaymentError: For invalid input, idempotency conflicts, or a ledger failure.
        """
        return await self._idempotent(idem, lambda: self._authorize(merchant, request, idem))

    async def _idempotent(self, idem: IdempotencyRequest | None, run: Callable[[], Awaitable[Response]]) -> Response:
        """Run ``run`` under the request's Idempotency-Key: replay, refuse, or run and remember."""
        if idem is None:
            return await run()
        replay = await self._idempotency.begin(idem)
        if replay is not None:
            return _replayed(replay)
        try:
            response = await run()
        except BaseException:
            await self._idempotency.abandon(idem)
            raise
        if not response.replayed:
            await self._idempotency.complete(idem, response.status_code, response.body)
        return response

    async def _authorize(self, merchant: Merchant, request: PaymentCreate, idem: IdempotencyRequest | None) -> Response:
        if not money.is_known_currency(request.currency):
            raise PaymentError(
                "invalid", "invalid_currency", f"{request.currency!r} is not a supported ISO 4217 currency", "currency"
            )
        method = prepare_method(request, self._vault)
        try:
            plan = priority_plan(merchant.providers, self._adapters, method.method_type)
        except NoRoute as exc:
            raise PaymentError("invalid", "no_route", str(exc), "payment_method.type") from None
        payment = Payment(
            id=new_id("pay"),
            status="pending",
            amount=request.amount,
            currency=request.currency,
            amount_captured=0,
            amount_refunded=0,
            capture=request.capture,
            payment_method=method.shown,
            provider=None,
            provider_reference=None,
            routing=RoutingOut(strategy=plan.strategy, reason=plan.reason, attempts=[]),
            reference=request.reference,
            metadata=request.metadata,
            created=int(time.time()),
        )
        masked_request = _ATTEMPT_REQUEST_ENCODER.encode(payment).decode()
        pending_updates: list[AttemptUpdate] = []
        result: ProviderResult | None = None
        attempt_id = ""
        for position, provider in enumerate(plan.providers):
            attempt_id = new_id("att")
            intent = WriteOp(
                reserve=idem.reserve_row() if idem is not None and position == 0 else None,
                attempts=[
                    AttemptInsert(
                        id=attempt_id,
                        payment_id=payment.id,
                        merchant_id=merchant.id,
                        provider=provider,
                        amount=payment.amount,
                        currency=payment.currency,
                        request=masked_request,
                        idempotency_key=idem.key if idem is not None else None,
                        created=payment.created,
                    )
                ],
                attempt_updates=pending_updates,
            )
            written = await self._writer.submit(intent)
            if not written.reserved:
                assert idem is not None
                return _replayed(await self._idempotency.durable_replay(idem))
            pending_updates = []
            adapter = self._adapters[provider]
            started = time.perf_counter()
            authorize = _authorize_request(payment, attempt_id, method, request)
            result = await self._call_authorize(adapter, authorize)
            if result.outcome is Outcome.UNKNOWN:
                result = await self._resolve_unknown(adapter, authorize, payment.created, result)
                if result.outcome is Outcome.UNKNOWN:
                    self._metrics.unknown_outcomes.labels(provider, "authorize").inc()
            elapsed = time.perf_counter() - started
            latency_ms = int(elapsed * 1000)
            self._metrics.provider_calls.labels(provider, "authorize", result.outcome.value).observe(elapsed)
            payment.routing.attempts.append(
                AttemptOut(provider=provider, outcome=result.outcome.value, code=result.code, latency_ms=latency_ms)
            )
            pending_updates.append(
                AttemptUpdate(
                    id=attempt_id,
                    status="unknown" if result.outcome is Outcome.UNKNOWN else "done",
                    outcome=result.outcome.value,
                    code=result.code,
                    provider_reference=result.provider_reference,
                    latency_ms=latency_ms,
                )
            )
            payment.provider = provider
            if not (may_cascade(result) and position + 1 < len(plan.providers)):
                break
        assert result is not None
        method.card = None  # the number and CVC are not needed past the provider call
        return await self._finish_authorization(merchant, payment, result, pending_updates, idem)

    async def _call_authorize(self, adapter: ProviderAdapter, request: AuthorizeRequest) -> ProviderResult:
        try:
            async with asyncio.timeout(self._provider_timeout_s):
                return await adapter.authorize(request)
        except TimeoutError:
            return ProviderResult(
                outcome=Outcome.UNKNOWN, code="timeout", message="the provider did not answer in time"
            )
        except FlowNotSupported:
            return ProviderResult(outcome=Outcome.TECHNICAL, code="flow_not_supported", message="not supported")
        except Exception as exc:
            # Adapters turn provider failures into outcomes; one that raised anyway may have sent
            # the request first, which is not proof that nothing was authorized.
            logger.warning("adapter %s raised %s on authorize", adapter.name, type(exc).__name__)
            return ProviderResult(outcome=Outcome.UNKNOWN, code="adapter_error", message="the provider call failed")

    async def _resolve_unknown(
        self, adapter: ProviderAdapter, request: AuthorizeRequest, attempted_at: int, previous: ProviderResult
    ) -> ProviderResult:
        """Settle an unknown outcome in order of trust: replay with the same key, then look it up."""
        replayed = await self._call_authorize(adapter, request)
        if replayed.outcome is not Outcome.UNKNOWN:
            return replayed
        try:
            async with asyncio.timeout(self._provider_timeout_s):
                found = await adapter.sync(
                    SyncRequest(
                        payment_id=request.payment_id,
                        provider_reference=replayed.provider_reference or previous.provider_reference,
                        attempt_id=request.attempt_id,
                        attempted_at=float(attempted_at),
                    )
                )
        except Exception:  # a failed look-up proves nothing; the payment answers pending
            return previous
        # The adapter applies the outcome rule: a look-up that lags answers unknown, not "nothing".
        return found if found.outcome is not Outcome.UNKNOWN else previous

    async def _finish_authorization(
        self,
        merchant: Merchant,
        payment: Payment,
        result: ProviderResult,
        attempt_updates: list[AttemptUpdate],
        idem: IdempotencyRequest | None,
    ) -> Response:
        journal = apply_outcome(merchant.id, payment, result)
        self._metrics.payments.labels(payment.status, payment.provider or "none").inc()
        body = ENCODER.encode(payment)
        op = WriteOp(
            payments=[payment_row(merchant.id, payment, body)],
            attempt_updates=attempt_updates,
            journal=journal,
            finish=[idem.finish_row(201, body)] if idem is not None else [],
        )
        await self._writer.submit(op)
        return Response(201, body)

    # ------------------------------------------------------------------ reads

    async def get_payment(self, merchant: Merchant, payment_id: str) -> bytes:
        """Return the payment's JSON.

        Raises:
            PaymentError: 404 when it does not exist or belongs to another merchant.
        """
        if not _plausible_id(payment_id):
            raise _missing("payment", payment_id)
        body = await self._pool.fetchval(
            "SELECT body::text FROM payments WHERE id = $1 AND merchant_id = $2", payment_id, merchant.id
        )
        if body is None:
            raise _missing("payment", payment_id)
        return body.encode()

    async def list_payments(self, merchant: Merchant, limit: int, starting_after: str | None) -> bytes:
        """Return a page of payments, newest first, as a list object.

        Raises:
            PaymentError: 400 when ``starting_after`` names no payment of this merchant.
        """
        if starting_after is None:
            rows = await self._pool.fetch(
                "SELECT body::text AS body FROM payments WHERE merchant_id = $1"
                " ORDER BY created DESC, id DESC LIMIT $2",
                merchant.id,
                limit + 1,
            )
        else:
            anchor = None
            if _plausible_id(starting_after):
                anchor = await self._pool.fetchrow(
                    "SELECT created, id FROM payments WHERE id = $1 AND merchant_id = $2", starting_after, merchant.id
                )
            if anchor is None:
                raise PaymentError(
                    "invalid", "resource_missing", f"no payment {starting_after!r} to start after", "starting_after"
                )
            rows = await self._pool.fetch(
                "SELECT body::text AS body FROM payments WHERE merchant_id = $1 AND (created, id) < ($2, $3)"
                " ORDER BY created DESC, id DESC LIMIT $4",
                merchant.id,
                anchor["created"],
                anchor["id"],
                limit + 1,
            )
        has_more = len(rows) > limit
        data = ",".join(row["body"] for row in rows[:limit])
        return f'{{"object":"list","data":[{data}],"has_more":{"true" if has_more else "false"}}}'.encode()

    async def get_refund(self, merchant: Merchant, refund_id: str) -> bytes:
        """Return the refund's JSON, or raise 404."""
        if not _plausible_id(refund_id):
            raise _missing("refund", refund_id)
        row = await self._pool.fetchrow(
            "SELECT id, payment_id, amount, currency, status, reason, metadata::text AS metadata, created FROM refunds"
            " WHERE id = $1 AND merchant_id = $2",
            refund_id,
            merchant.id,
        )
        if row is None:
            raise _missing("refund", refund_id)
        refund = Refund(
            id=row["id"],
            payment=row["payment_id"],
            amount=row["amount"],
            currency=row["currency"],
            status=row["status"],
            reason=row["reason"],
            metadata=_METADATA_DECODER.decode(row["metadata"]),
            created=row["created"],
        )
        return ENCODER.encode(refund)

    # ------------------------------------------------------------------ mutations

    async def capture(
        self, merchant: Merchant, payment_id: str, request: CaptureCreate, idem: IdempotencyRequest | None
    ) -> Response:
        """Capture all or part of an authorization.

        Without ``final``, a partial capture leaves the rest capturable; ``final: true`` releases it.
        """

        def plan(state: PaymentState) -> tuple[int, OperationParams]:
            return check_capture(state, request.amount), OperationParams(final=bool(request.final))

        return await self._idempotent(idem, lambda: self._operate(merchant, payment_id, idem, "capture", plan))

    async def void(
        self, merchant: Merchant, payment_id: str, request: VoidCreate, idem: IdempotencyRequest | None
    ) -> Response:
        """Release an uncaptured authorization."""

        def plan(state: PaymentState) -> tuple[int, OperationParams]:
            check_void(state)
            return state.amount - state.amount_captured, OperationParams()

        return await self._idempotent(idem, lambda: self._operate(merchant, payment_id, idem, "void", plan))

    async def refund(
        self, merchant: Merchant, payment_id: str, request: RefundCreate, idem: IdempotencyRequest | None
    ) -> Response:
        """Refund part or all of what was captured; answers the refund object."""

        def plan(state: PaymentState) -> tuple[int, OperationParams]:
            amount = check_refund(state, request.amount)
            return amount, OperationParams(reason=request.reason, metadata=request.metadata)

        return await self._idempotent(idem, lambda: self._operate(merchant, payment_id, idem, "refund", plan))

    async def _operate(
        self,
        merchant: Merchant,
        payment_id: str,
        idem: IdempotencyRequest | None,
        kind: OperationKind,
        plan: _Plan,
    ) -> Response:
        """Intent first: reserve the key and claim the payment durably, then call the provider."""
        if not _plausible_id(payment_id):
            raise _missing("payment", payment_id)
        async with self._locks.hold(payment_id):
            loaded = await load_payment(self._pool, merchant.id, payment_id)
            if loaded is None:
                raise _missing("payment", payment_id)
            try:
                amount, params = plan(loaded.state)
            except PaymentError:
                # The state may forbid it because this very request already ran (the fast store
                # forgot the key): the durable record answers first.
                if idem is not None and await self._idempotency.recorded(idem):
                    return await self._resume(merchant, idem)
                raise
            if loaded.provider not in self._adapters:
                raise PaymentError("unavailable", "provider_unavailable", f"the payment's provider cannot {kind} now")
            now = int(time.time())
            operation_id = new_id(ID_PREFIX[kind])
            operation = Operation(
                id=operation_id,
                payment_id=payment_id,
                merchant_id=merchant.id,
                kind=kind,
                amount=amount,
                currency=loaded.payment.currency,
                provider=loaded.provider,
                provider_key=provider_key_for(operation_id),
                params=params,
                idempotency_key=idem.key if idem is not None else None,
                created=now,
            )
            intent = WriteOp(
                reserve=idem.reserve_row() if idem is not None else None,
                operation=operation.insert_row(
                    expected_version=loaded.version, lease_until=now + self._operations.lease_s
                ),
            )
            written = await self._writer.submit(intent)
            if not written.reserved:
                assert idem is not None
                return await self._resume(merchant, idem)
            if not written.claimed:
                raise PaymentError(
                    "state",
                    "payment_operation_in_progress",
                    "another capture, void or refund of this payment is in progress; retry once it has finished",
                )
            settled = await self._operations.drive(operation, loaded)
        return Response(settled.status_code, settled.body)

    async def _resume(self, merchant: Merchant, idem: IdempotencyRequest) -> Response:
        """The key is durably taken: replay its answer, or take over its open operation and finish it."""
        try:
            return _replayed(await self._idempotency.durable_replay(idem))
        except PaymentError as exc:
            if exc.code != "idempotency_key_in_use":
                raise
            now = int(time.time())
            row = await self._pool.fetchrow(
                "UPDATE payment_operations SET lease_until = $3"
                " WHERE merchant_id = $1 AND idempotency_key = $2 AND status = 'open' AND lease_until < $4"
                " RETURNING *",
                merchant.id,
                idem.key,
                now + self._operations.lease_s,
                now,
            )
            if row is None:
                raise  # still driven by the request that created it (or an authorization in flight)
        operation = Operation.from_row(row)
        loaded = await load_payment(self._pool, merchant.id, operation.payment_id)
        if loaded is None:
            raise _missing("payment", operation.payment_id)
        settled = await self._operations.drive(operation, loaded)
        return Response(settled.status_code, settled.body)


def _authorize_request(
    payment: Payment, attempt_id: str, method: MethodDetails, request: PaymentCreate
) -> AuthorizeRequest:
    """What the adapter is asked for one attempt; the same attempt always sends the same request."""
    customer = request.customer
    return AuthorizeRequest(
        payment_id=payment.id,
        attempt_id=attempt_id,
        # Derived from the durable intent, so every replay of this attempt is the same request.
        idempotency_key=provider_key_for(attempt_id),
        amount=payment.amount,
        currency=payment.currency,
        method_type=method.method_type,
        card=method.card,
        details=method.details,
        return_url=method.return_url,
        capture=request.capture == "automatic",
        reference=request.reference,
        customer_email=customer.email if customer else None,
        customer_country=customer.country if customer else None,
        customer_ip=customer.ip if customer else None,
        customer_name=(customer.name if customer and customer.name else None) or method.holder_name,
    )


def _missing(kind: str, object_id: str) -> PaymentError:
    shown = object_id if _ID_SHAPE.fullmatch(object_id) else "(not a valid id)"
    return PaymentError("not_found", "resource_missing", f"no such {kind}: {shown}", "id")


def _plausible_id(object_id: str) -> bool:
    """Ids are ASCII letters, digits and underscores; anything else cannot exist (and must not reach SQL)."""
    return _ID_SHAPE.fullmatch(object_id) is not None
