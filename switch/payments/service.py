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
from typing import Any

import asyncpg
import msgspec

from adapters.base import AuthorizeRequest, FlowNotSupported, Outcome, ProviderAdapter, ProviderResult, SyncRequest
from switch import money
from switch.errors import PaymentError
from switch.events.outbox import events_for
from switch.ids import new_id
from switch.ledger.writer import AttemptInsert, AttemptUpdate, GroupCommitWriter, WriteOp
from switch.merchants import Merchant
from switch.metrics import Metrics
from switch.payments.facts import PaymentProfile, Profiler, routing_facts
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
    RoutingCost,
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
from switch.payments.risk_check import Assessment, RiskCheck
from switch.payments.state import PaymentState, check_capture, check_refund, check_void
from switch.routing.plan import cascade_reason
from switch.routing.router import Router, RoutingDecision
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
        router: Router,
        risk: RiskCheck | None = None,
        profiler: Profiler | None = None,
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
        self._router = router
        self._risk = risk or RiskCheck(metrics=metrics)
        self._profiler = profiler or Profiler()
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

    async def simulate_route(self, merchant: Merchant, request: PaymentCreate) -> dict[str, Any]:
        """Explain how ``request`` would be routed now; nothing is stored and no provider is called.

        Raises:
            PaymentError: For invalid input, as ``create_payment`` would.
        """
        _check_currency(request.currency)
        # No merchant scope: a simulation must not save the card it is shown.
        method = await prepare_method(request, self._vault)
        profile = self._profiler.profile(request, method)
        facts = routing_facts(request, method, profile)
        method.card = None
        decision = await self._router.decide(merchant.id, merchant.providers, facts, profile.sticky, dry_run=True)
        return {
            "object": "routing_simulation",
            "rule": decision.rule,
            "strategy": decision.strategy,
            "version": decision.version,
            "canary": decision.canary,
            "reason": decision.reason,
            "candidates": msgspec.to_builtins(decision.candidates),
            "plan": list(decision.plan),
            "cascade": {
                "max_attempts": decision.cascade.max_attempts,
                "soft_decline_codes": sorted(decision.cascade.soft_decline_codes),
                "deadline_ms": decision.cascade.deadline_ms,
            },
            "facts": {
                "card_country": facts.card_country,
                "ip_country": facts.ip_country,
                "card_brand": facts.card_brand,
                "funding": facts.funding,
                "payment_method": facts.payment_method,
            },
        }

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
        _check_currency(request.currency)
        method = await prepare_method(request, self._vault, merchant.id)
        profile = self._profiler.profile(request, method)
        payment_id = new_id("pay")
        assessment = await self._risk.assess(merchant.id, payment_id, request, method, profile)
        if assessment.decision.decision == "decline":
            method.card = None  # no provider is called
            payment = _new_payment(payment_id, request, method, None, assessment)
            return await self._decline_by_risk(merchant, payment, assessment, idem, method)
        decision = await self._route(merchant, request, method, profile)
        payment = _new_payment(payment_id, request, method, decision, assessment)
        attempted = await self._attempt(merchant, payment, decision, method, request, idem, assessment)
        method.card = None  # the number and CVC are not needed past the provider call
        if isinstance(attempted, Response):
            return attempted
        result, attempt_updates = attempted
        if result.outcome is Outcome.APPROVED:
            await self._risk.authorized_without_sca(assessment)
        return await self._finish_authorization(merchant, payment, result, attempt_updates, idem, method)

    async def _decline_by_risk(
        self,
        merchant: Merchant,
        payment: Payment,
        assessment: Assessment,
        idem: IdempotencyRequest | None,
        method: MethodDetails,
    ) -> Response:
        """Store a payment risk declined before any provider was called (201, ``status: declined``)."""
        code = assessment.decision.decline_code or "risk_blocked"
        message = (
            "The payment was declined: a name matched a sanctions list."
            if code == "sanctions_hit"
            else "The payment was declined by the merchant's risk rules."
        )
        result = ProviderResult(outcome=Outcome.DECLINED_HARD, code=code, message=message)
        return await self._finish_authorization(merchant, payment, result, [], idem, method, reserve=True)

    async def _route(
        self, merchant: Merchant, request: PaymentCreate, method: MethodDetails, profile: PaymentProfile
    ) -> RoutingDecision:
        """The attempt plan: the merchant's routing config, its matching rule, the ranked candidates."""
        facts = routing_facts(request, method, profile)
        decision = await self._router.decide(merchant.id, merchant.providers, facts, profile.sticky)
        if not decision.plan:
            raise PaymentError(
                "invalid",
                "no_route",
                f"no provider account can take this {method.method_type} payment: {decision.reason}",
                "payment_method.type",
            )
        return decision

    async def _attempt(
        self,
        merchant: Merchant,
        payment: Payment,
        decision: RoutingDecision,
        method: MethodDetails,
        request: PaymentCreate,
        idem: IdempotencyRequest | None,
        assessment: Assessment,
    ) -> tuple[ProviderResult, list[AttemptUpdate]] | Response:
        """Try the plan's providers in order, each behind a durable intent, as far as cascading is safe.

        Returns:
            The last attempt's result and the attempt rows to close with it, or the stored answer
            when another request already holds this Idempotency-Key.
        """
        deadline = time.monotonic() + decision.cascade.deadline_ms / 1000
        pending_updates: list[AttemptUpdate] = []
        masked_request = _ATTEMPT_REQUEST_ENCODER.encode(payment).decode()
        result: ProviderResult | None = None
        for position, provider in enumerate(decision.plan):
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
            authorize = _authorize_request(payment, attempt_id, method, request, assessment)
            result = await self._call_authorize(adapter, authorize)
            if result.outcome is Outcome.UNKNOWN:
                result = await self._resolve_unknown(adapter, authorize, payment.created, result)
                if result.outcome is Outcome.UNKNOWN:
                    self._metrics.unknown_outcomes.labels(provider, "authorize").inc()
            elapsed = time.perf_counter() - started
            latency_ms = int(elapsed * 1000)
            self._metrics.provider_calls.labels(provider, "authorize", result.outcome.value).observe(elapsed)
            await self._router.record(
                provider, method.method_type, payment.currency, result.outcome, latency_ms, decision.reliable
            )
            self._metrics.routing_attempts.labels(provider, method.method_type, result.outcome.value).inc()
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
            if result.outcome in (Outcome.DECLINED_SOFT, Outcome.DECLINED_HARD):
                await self._risk.declined_at_provider(assessment)
            reason = cascade_reason(result, decision.cascade)
            if reason is None or position + 1 >= len(decision.plan) or time.monotonic() >= deadline:
                break
            self._metrics.cascades.labels(provider, decision.plan[position + 1], reason).inc()
        assert result is not None
        return result, pending_updates

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
        method: MethodDetails | None = None,
        *,
        reserve: bool = False,
    ) -> Response:
        """Write the outcome, its postings, the stored answer and the events in one batch; answer.

        ``reserve`` takes the Idempotency-Key in the same batch, for a payment that wrote no intent
        first (risk declined it before any provider call).
        """
        journal = apply_outcome(merchant.id, payment, result)
        self._metrics.payments.labels(payment.status, payment.provider or "none").inc()
        payment.livemode = merchant.livemode
        body = ENCODER.encode(payment)
        op = WriteOp(
            reserve=idem.reserve_row() if reserve and idem is not None else None,
            payments=[payment_row(merchant.id, payment, body)],
            attempt_updates=attempt_updates,
            journal=journal,
            finish=[idem.finish_row(201, body)] if idem is not None else [],
            # The saved card and the payment's events commit with the payment, or not at all.
            cards=[method.sealed] if method is not None and method.sealed is not None else [],
            events=events_for(merchant.id, payment.id, payment.status, body, livemode=merchant.livemode),
        )
        written = await self._writer.submit(op)
        if not written.reserved:
            assert idem is not None
            return _replayed(await self._idempotency.durable_replay(idem))
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


def _check_currency(currency: str) -> None:
    if not money.is_known_currency(currency):
        raise PaymentError(
            "invalid", "invalid_currency", f"{currency!r} is not a supported ISO 4217 currency", "currency"
        )


def _new_payment(
    payment_id: str,
    request: PaymentCreate,
    method: MethodDetails,
    decision: RoutingDecision | None,
    assessment: Assessment,
) -> Payment:
    """The payment as it stands before its first attempt: pending, with its risk and its route.

    ``decision`` is None for a payment risk declined before routing.
    """
    if decision is None:
        routing = RoutingOut(
            strategy="none", reason="declined by risk before routing; no provider was called", attempts=[]
        )
    else:
        routing = _routing_out(decision)
    return Payment(
        id=payment_id,
        status="pending",
        amount=request.amount,
        currency=request.currency,
        amount_captured=0,
        amount_refunded=0,
        capture=request.capture,
        payment_method=method.shown,
        provider=None,
        provider_reference=None,
        routing=routing,
        risk=assessment.shown,
        customer=request.customer,
        reference=request.reference,
        metadata=request.metadata,
        created=int(time.time()),
    )


def _routing_out(decision: RoutingDecision) -> RoutingOut:
    """The payment's ``routing``: the version and rule, and the cost of the first two candidates."""
    costs = [
        RoutingCost(account=view.account, fee=view.fee, fx_cost=view.fx_cost)
        for account in decision.plan[:2]
        for view in decision.candidates
        if view.account == account
    ]
    return RoutingOut(
        strategy=decision.strategy,
        reason=decision.reason,
        attempts=[],
        rule=decision.rule,
        version=decision.version,
        cost=costs[0] if costs else None,
        runner_up=costs[1] if len(costs) > 1 else None,
    )


def _authorize_request(
    payment: Payment, attempt_id: str, method: MethodDetails, request: PaymentCreate, assessment: Assessment
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
        # A payment held for review is only authorized; approving the review captures it.
        capture=request.capture == "automatic" and assessment.decision.decision != "review",
        three_ds_required=assessment.decision.sca_required or assessment.decision.decision == "request_3ds",
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
