"""The payment state machine: authorize, capture, void and refund, each ending in one group commit.

Every operation follows the same shape: claim the idempotency key, check the state, call the
provider, then write the new state, its journal transaction and the stored response in one
ledger batch, and answer only after that batch committed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping

import asyncpg
import msgspec

from adapters.base import (
    AuthorizeRequest,
    CaptureRequest,
    Outcome,
    ProviderAdapter,
    ProviderResult,
    RefundRequest,
    SyncRequest,
    VoidRequest,
)
from switch import money
from switch.errors import PaymentError
from switch.ids import new_id
from switch.ledger import postings
from switch.ledger.writer import (
    AttemptInsert,
    AttemptUpdate,
    GroupCommitWriter,
    PaymentUpdate,
    RefundInsert,
    WriteOp,
)
from switch.merchants import Merchant
from switch.metrics import Metrics
from switch.payments.idempotency import IdempotencyGuard, IdempotencyRequest, Replay
from switch.payments.locks import KeyedLocks
from switch.payments.methods import prepare_method
from switch.payments.model import (
    ENCODER,
    PAYMENT_DECODER,
    AttemptOut,
    CaptureCreate,
    Payment,
    PaymentCreate,
    Refund,
    RefundCreate,
    RoutingOut,
    VoidCreate,
)
from switch.payments.outcome import apply_outcome, payment_row
from switch.payments.state import PaymentState, check_capture, check_refund, check_void, derive_status
from switch.routing.plan import NoRoute, may_cascade, priority_plan
from switch.vault.cards import Vault

logger = logging.getLogger(__name__)
_ATTEMPT_REQUEST_ENCODER = msgspec.json.Encoder()
_METADATA_DECODER = msgspec.json.Decoder(dict[str, str])
_ID_SHAPE = re.compile(r"[A-Za-z0-9_]{1,64}")

# A mutation checks the state, calls the provider and returns (status, body, ledger op).
_Mutation = Callable[[Payment, PaymentState, ProviderAdapter | None, str], Awaitable[tuple[int, bytes, WriteOp]]]
_Call = Callable[[ProviderAdapter], Awaitable[ProviderResult]]


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
        customer = request.customer
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
            result = await self._call_authorize(
                adapter,
                AuthorizeRequest(
                    payment_id=payment.id,
                    attempt_id=attempt_id,
                    idempotency_key=f"{merchant.id}:{idem.key}" if idem is not None else attempt_id,
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
                ),
            )
            if result.outcome is Outcome.UNKNOWN:
                # A status call is safe (read-only) and usually settles the question at once.
                result = await self._call_sync(adapter, payment.id, attempt_id, result)
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
        except Exception as exc:
            # Adapters turn provider failures into outcomes; an exception means the call could not
            # be made (unsupported flow, bad configuration), so nothing was authorized.
            logger.warning("adapter %s raised %s on authorize", adapter.name, type(exc).__name__)
            return ProviderResult(outcome=Outcome.TECHNICAL, code="adapter_error", message="the provider call failed")

    async def _call_sync(
        self, adapter: ProviderAdapter, payment_id: str, attempt_id: str, previous: ProviderResult
    ) -> ProviderResult:
        try:
            async with asyncio.timeout(self._provider_timeout_s):
                synced = await adapter.sync(
                    SyncRequest(
                        payment_id=payment_id, provider_reference=previous.provider_reference, attempt_id=attempt_id
                    )
                )
        except Exception:  # no answer is still an unknown outcome; recovery retries later
            return previous
        if synced.outcome is Outcome.DECLINED_HARD and synced.code == "resource_missing":
            # The provider never received the request: nothing was authorized.
            return ProviderResult(outcome=Outcome.TECHNICAL, code=previous.code or "timeout", message=previous.message)
        return synced

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

    async def _load(self, merchant: Merchant, payment_id: str) -> tuple[Payment, PaymentState, int, str]:
        if not _plausible_id(payment_id):
            raise _missing("payment", payment_id)
        row = await self._pool.fetchrow(
            "SELECT body::text AS body, status, amount, amount_captured, amount_refunded, capture_closed, version,"
            " provider FROM payments WHERE id = $1 AND merchant_id = $2",
            payment_id,
            merchant.id,
        )
        if row is None:
            raise _missing("payment", payment_id)
        state = PaymentState(
            status=row["status"],
            amount=row["amount"],
            amount_captured=row["amount_captured"],
            amount_refunded=row["amount_refunded"],
            capture_closed=row["capture_closed"],
        )
        return PAYMENT_DECODER.decode(row["body"]), state, row["version"], row["provider"] or ""

    async def _mutate(
        self, merchant: Merchant, payment_id: str, idem: IdempotencyRequest | None, action: _Mutation
    ) -> Response:
        async def run() -> Response:
            async with self._locks.hold(payment_id):
                payment, state, version, provider = await self._load(merchant, payment_id)
                status_code, body, op = await action(payment, state, self._adapters.get(provider), provider)
                op.payment_update = PaymentUpdate(
                    id=payment.id,
                    expected_version=version,
                    status=payment.status,
                    amount_captured=payment.amount_captured,
                    amount_refunded=payment.amount_refunded,
                    capture_closed=state.capture_closed,
                    body=ENCODER.encode(payment).decode(),
                )
                if idem is not None:
                    op.reserve = idem.reserve_row()
                    op.finish.append(idem.finish_row(status_code, body))
                written = await self._writer.submit(op)
                if not written.reserved:
                    assert idem is not None
                    return _replayed(await self._idempotency.durable_replay(idem))
            return Response(status_code, body)

        return await self._idempotent(idem, run)

    async def capture(
        self, merchant: Merchant, payment_id: str, request: CaptureCreate, idem: IdempotencyRequest | None
    ) -> Response:
        """Capture all or part of an authorization.

        Without ``final``, a partial capture leaves the rest capturable; ``final: true`` releases it.
        """

        async def action(
            payment: Payment, state: PaymentState, adapter: ProviderAdapter | None, provider: str
        ) -> tuple[int, bytes, WriteOp]:
            amount = check_capture(state, request.amount)
            capture_id = new_id("cap")
            result = await self._provider_call(
                adapter,
                "capture",
                lambda a: a.capture(
                    CaptureRequest(
                        payment_id=payment.id,
                        provider_reference=payment.provider_reference or "",
                        idempotency_key=capture_id,
                        amount=amount,
                        currency=payment.currency,
                        final=bool(request.final),
                    )
                ),
            )
            state.amount_captured += amount
            state.capture_closed = bool(request.final) or state.amount_captured == state.amount
            release = state.amount - state.amount_captured if state.capture_closed else 0
            _apply(payment, state)
            txn = postings.capture(
                merchant_id=merchant.id,
                payment_id=payment.id,
                capture_id=capture_id,
                provider=provider,
                currency=payment.currency,
                amount=amount,
                release=release,
                created=int(time.time()),
            )
            del result
            body = ENCODER.encode(payment)
            return 200, body, WriteOp(journal=[txn])

        return await self._mutate(merchant, payment_id, idem, action)

    async def void(
        self, merchant: Merchant, payment_id: str, request: VoidCreate, idem: IdempotencyRequest | None
    ) -> Response:
        """Release an uncaptured authorization."""

        async def action(
            payment: Payment, state: PaymentState, adapter: ProviderAdapter | None, provider: str
        ) -> tuple[int, bytes, WriteOp]:
            check_void(state)
            await self._provider_call(
                adapter,
                "void",
                lambda a: a.void(
                    VoidRequest(
                        payment_id=payment.id,
                        provider_reference=payment.provider_reference or "",
                        idempotency_key=f"void:{payment.id}",
                        amount=state.amount,
                        currency=payment.currency,
                    )
                ),
            )
            release = state.amount - state.amount_captured
            state.status = "voided"
            state.capture_closed = True
            _apply(payment, state)
            txn = postings.void(
                merchant_id=merchant.id,
                payment_id=payment.id,
                provider=provider,
                currency=payment.currency,
                release=release,
                created=int(time.time()),
            )
            return 200, ENCODER.encode(payment), WriteOp(journal=[txn])

        return await self._mutate(merchant, payment_id, idem, action)

    async def refund(
        self, merchant: Merchant, payment_id: str, request: RefundCreate, idem: IdempotencyRequest | None
    ) -> Response:
        """Refund part or all of what was captured; answers the refund object."""

        async def action(
            payment: Payment, state: PaymentState, adapter: ProviderAdapter | None, provider: str
        ) -> tuple[int, bytes, WriteOp]:
            amount = check_refund(state, request.amount)
            refund_id = new_id("re")
            result = await self._provider_call(
                adapter,
                "refund",
                lambda a: a.refund(
                    RefundRequest(
                        payment_id=payment.id,
                        refund_id=refund_id,
                        provider_reference=payment.provider_reference or "",
                        idempotency_key=refund_id,
                        amount=amount,
                        currency=payment.currency,
                    )
                ),
            )
            state.amount_refunded += amount
            _apply(payment, state)
            created = int(time.time())
            refund_status = "pending" if result.outcome is Outcome.PENDING else "succeeded"
            refund = Refund(
                id=refund_id,
                payment=payment.id,
                amount=amount,
                currency=payment.currency,
                status=refund_status,
                reason=request.reason,
                metadata=request.metadata,
                created=created,
            )
            txn = postings.refund(
                merchant_id=merchant.id,
                payment_id=payment.id,
                refund_id=refund_id,
                provider=provider,
                currency=payment.currency,
                amount=amount,
                created=created,
            )
            row = RefundInsert(
                id=refund_id,
                payment_id=payment.id,
                merchant_id=merchant.id,
                amount=amount,
                currency=payment.currency,
                status=refund_status,
                provider_reference=result.provider_reference,
                reason=request.reason,
                metadata=ENCODER.encode(request.metadata).decode(),
                created=created,
            )
            return 201, ENCODER.encode(refund), WriteOp(journal=[txn], refunds=[row])

        return await self._mutate(merchant, payment_id, idem, action)

    async def _provider_call(self, adapter: ProviderAdapter | None, flow: str, call: _Call) -> ProviderResult:
        if adapter is None:
            raise PaymentError("unavailable", "provider_unavailable", f"the payment's provider cannot {flow} now")
        try:
            async with asyncio.timeout(self._provider_timeout_s):
                result = await call(adapter)
        except TimeoutError:
            raise PaymentError(
                "unavailable", "provider_timeout", f"the provider did not answer the {flow} in time; retry"
            ) from None
        # PENDING: the provider accepted the request and confirms it later by notification (Adyen).
        if result.outcome not in (Outcome.APPROVED, Outcome.PENDING):
            raise PaymentError(
                "provider",
                f"{flow}_refused_by_provider",
                f"the provider refused the {flow}" + (f" ({result.code})" if result.code else ""),
            )
        return result


def _apply(payment: Payment, state: PaymentState) -> None:
    payment.amount_captured = state.amount_captured
    payment.amount_refunded = state.amount_refunded
    state.status = derive_status(state)
    payment.status = state.status


def _missing(kind: str, object_id: str) -> PaymentError:
    shown = object_id if _ID_SHAPE.fullmatch(object_id) else "(not a valid id)"
    return PaymentError("not_found", "resource_missing", f"no such {kind}: {shown}", "id")


def _plausible_id(object_id: str) -> bool:
    """Ids are ASCII letters, digits and underscores; anything else cannot exist (and must not reach SQL)."""
    return _ID_SHAPE.fullmatch(object_id) is not None
