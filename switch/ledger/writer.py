"""The group-commit writer: one connection, one transaction per batch, futures resolved after commit.

Requests hand the writer a :class:`WriteOp` and await it. The writer takes everything queued,
writes it in one transaction with one ``INSERT ... SELECT FROM unnest(...)`` per table, commits,
then resolves each request's future. While a commit is in flight, new ops queue up and form the
next batch, so the batch size follows the load with no timer. If a batch fails, every op in it
fails with :class:`LedgerUnavailable` and none is acknowledged.

Two per-op checks do not fail the batch: an idempotency reservation that finds the key already
taken, and a payment update whose expected version no longer matches (another worker won).
Such ops are dropped from the rest of the batch and told so in their :class:`WriteResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol

import asyncpg
import msgspec

from switch.errors import ConcurrentUpdate, LedgerUnavailable, PaymentError
from switch.ledger.postings import JournalTransaction

logger = logging.getLogger(__name__)

MAX_BATCH = 4_096


class PaymentInsert(msgspec.Struct, frozen=True, kw_only=True):
    """A new payments row."""

    id: str
    merchant_id: str
    status: str
    amount: int
    currency: str
    amount_captured: int
    amount_refunded: int
    capture_method: str
    capture_closed: bool
    provider: str | None
    provider_reference: str | None
    body: str
    reference: str | None
    created: int


class PaymentUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A change to a payments row, applied only if its version is still ``expected_version``."""

    id: str
    expected_version: int
    status: str
    amount_captured: int
    amount_refunded: int
    capture_closed: bool
    body: str


class AttemptInsert(msgspec.Struct, frozen=True, kw_only=True):
    """An attempt intent, written before the provider is called."""

    id: str
    payment_id: str
    merchant_id: str
    provider: str
    amount: int
    currency: str
    request: str
    idempotency_key: str | None
    created: int


class AttemptUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of an attempt."""

    id: str
    status: str
    outcome: str | None
    code: str | None
    provider_reference: str | None
    latency_ms: int | None


class RefundInsert(msgspec.Struct, frozen=True, kw_only=True):
    """A new refunds row."""

    id: str
    payment_id: str
    merchant_id: str
    amount: int
    currency: str
    status: str
    provider_reference: str | None
    reason: str | None
    metadata: str
    created: int


class IdempotencyReserve(msgspec.Struct, frozen=True, kw_only=True):
    """Claim ``(merchant_id, key)`` durably; fails softly when the key exists."""

    merchant_id: str
    key: str
    endpoint: str
    body_hash: bytes
    created: int


class EventClaim(msgspec.Struct, frozen=True, kw_only=True):
    """Record an inbound provider notification; fails softly when it was already recorded."""

    account: str
    event_id: str
    event_type: str
    payment_id: str | None
    outcome: str
    received: int


class IdempotencyFinish(msgspec.Struct, frozen=True, kw_only=True):
    """Store the final response of an idempotent request."""

    merchant_id: str
    key: str
    status_code: int
    response: bytes


class IdempotencyRelease(msgspec.Struct, frozen=True, kw_only=True):
    """Drop an unfinished reservation: the request certainly did nothing, so its retry may run anew."""

    merchant_id: str
    key: str


class OperationInsert(msgspec.Struct, frozen=True, kw_only=True):
    """A capture, void or refund intent; claims its payment (one open operation per payment)."""

    id: str
    payment_id: str
    merchant_id: str
    kind: str
    amount: int
    currency: str
    provider: str
    provider_key: str
    params: str
    idempotency_key: str | None
    # The claim holds only while the payment is still at the version the request read its state at.
    expected_version: int
    lease_until: int
    created: int


class OperationClose(msgspec.Struct, frozen=True, kw_only=True):
    """Close an open operation with its outcome; applies only while it is still open."""

    id: str
    status: str
    outcome: str | None
    code: str | None
    provider_reference: str | None
    finished: int


class OperationTouch(msgspec.Struct, frozen=True, kw_only=True):
    """Bookkeeping of an operation that stays open: who may drive it next, and when to look again."""

    id: str
    lease_until: int
    checks: int
    next_check: int
    stuck_since: int | None


class AttemptCheck(msgspec.Struct, frozen=True, kw_only=True):
    """Recovery's bookkeeping of an attempt it could not settle yet (``status`` None: unchanged)."""

    id: str
    checks: int
    next_check: int
    stuck_since: int | None
    status: str | None = None


class OutboxRow(Protocol):
    """An outbound merchant event (``switch.events.events_for`` builds them; structural, no import)."""

    id: str
    merchant_id: str
    type: str
    payment_id: str | None
    body: str
    created: int


class VaultCardRow(Protocol):
    """A sealed saved card (``switch.vault`` builds them): ciphertext and display fields only."""

    token: str
    merchant_id: str
    key_id: str
    nonce: bytes
    ciphertext: bytes
    brand: str
    bin: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str
    created: int


class WriteOp(msgspec.Struct, kw_only=True):
    """Everything one request writes, committed atomically with the rest of its batch.

    ``isolated`` ops (recovery's settlements) are written in a transaction of their own, so that
    a row one of them gets wrong can never fail the batch of unrelated requests.
    """

    reserve: IdempotencyReserve | None = None
    event: EventClaim | None = None
    operation: OperationInsert | None = None
    operation_close: OperationClose | None = None
    payment_update: PaymentUpdate | None = None
    payments: list[PaymentInsert] = msgspec.field(default_factory=list)
    attempts: list[AttemptInsert] = msgspec.field(default_factory=list)
    attempt_updates: list[AttemptUpdate] = msgspec.field(default_factory=list)
    refunds: list[RefundInsert] = msgspec.field(default_factory=list)
    journal: list[JournalTransaction] = msgspec.field(default_factory=list)
    finish: list[IdempotencyFinish] = msgspec.field(default_factory=list)
    release: list[IdempotencyRelease] = msgspec.field(default_factory=list)
    operation_touches: list[OperationTouch] = msgspec.field(default_factory=list)
    attempt_checks: list[AttemptCheck] = msgspec.field(default_factory=list)
    # Outbox rows of the change this op writes: committed with it or not at all.
    events: list[OutboxRow] = msgspec.field(default_factory=list)
    cards: list[VaultCardRow] = msgspec.field(default_factory=list)
    isolated: bool = False

    @property
    def conditional(self) -> bool:
        """True when part of the op depends on what the database holds (needs a transaction)."""
        return (
            self.reserve is not None
            or self.event is not None
            or self.operation is not None
            or self.operation_close is not None
            or self.payment_update is not None
        )


class WriteResult(msgspec.Struct, frozen=True):
    """What happened to one op.

    ``reserved`` is False when its idempotency key was already taken; ``fresh_event`` is False when
    its provider notification had been recorded before; ``claimed`` is False when its payment
    already had an open operation; ``closed`` is False when its operation had been closed by
    someone else. In each case nothing of the op was written.
    """

    reserved: bool = True
    fresh_event: bool = True
    claimed: bool = True
    closed: bool = True

    @property
    def applied(self) -> bool:
        """True when the op was written."""
        return self.reserved and self.fresh_event and self.claimed and self.closed


_SQL_RESERVE = """
INSERT INTO idempotency_keys (merchant_id, key, endpoint, body_hash, status_code, response, created)
SELECT m, k, e, h, 0, NULL, c
FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[]) AS u(m, k, e, h, c)
ON CONFLICT (merchant_id, key) DO NOTHING
RETURNING merchant_id, key
"""

_SQL_CLAIM_EVENT = """
INSERT INTO provider_events (account, event_id, event_type, payment_id, outcome, received)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
ON CONFLICT (account, event_id) DO NOTHING
RETURNING account, event_id
"""

_SQL_UNCLAIM_EVENT = """
DELETE FROM provider_events AS e
USING unnest($1::text[], $2::text[]) AS u(a, id)
WHERE e.account = u.a AND e.event_id = u.id
"""

_SQL_UPDATE_PAYMENT = """
UPDATE payments AS p
SET status = u.status, amount_captured = u.captured, amount_refunded = u.refunded,
    capture_closed = u.closed, body = u.body::json, version = p.version + 1
FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::bigint[], $6::bool[], $7::text[])
     AS u(id, expected, status, captured, refunded, closed, body)
WHERE p.id = u.id AND p.version = u.expected
RETURNING p.id
"""

# Every unconditional row of a batch in one statement: one round trip, and atomic on its own when
# the batch has no conditional step. Data-modifying CTEs cannot see each other's rows, which is
# fine here: no op updates a row inserted in the same batch, and foreign keys are checked at the
# end of the statement.
_SQL_ROWS = """
WITH payments_in AS (
    INSERT INTO payments (id, merchant_id, status, amount, currency, amount_captured, amount_refunded,
                          capture_method, capture_closed, provider, provider_reference, body, reference, created)
    SELECT id, m, s, a, c, ac, ar, cm, cc, p, pr, b::json, r, cr
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[],
                $8::text[], $9::bool[], $10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[])
         AS u(id, m, s, a, c, ac, ar, cm, cc, p, pr, b, r, cr)
), attempts_in AS (
    INSERT INTO payment_attempts (id, payment_id, merchant_id, provider, amount, currency, status,
                                  request, idempotency_key, created)
    SELECT id, pid, m, p, a, c, 'intent', r::json, k, cr
    FROM unnest($15::text[], $16::text[], $17::text[], $18::text[], $19::bigint[], $20::text[], $21::text[],
                $22::text[], $23::bigint[]) AS u(id, pid, m, p, a, c, r, k, cr)
), attempts_done AS (
    UPDATE payment_attempts AS t
    SET status = u.s, outcome = u.o, code = u.c, provider_reference = u.pr, latency_ms = u.l
    FROM unnest($24::text[], $25::text[], $26::text[], $27::text[], $28::text[], $29::int[])
         AS u(id, s, o, c, pr, l)
    WHERE t.id = u.id
), refunds_in AS (
    INSERT INTO refunds (id, payment_id, merchant_id, amount, currency, status, provider_reference, reason,
                         metadata, created)
    SELECT id, p, m, a, c, s, pr, r, md::json, cr
    FROM unnest($30::text[], $31::text[], $32::text[], $33::bigint[], $34::text[], $35::text[],
                $36::text[], $37::text[], $38::text[], $39::bigint[]) AS u(id, p, m, a, c, s, pr, r, md, cr)
), journal_in AS (
    INSERT INTO journal_transactions (id, merchant_id, payment_id, kind, operation_id, created)
    SELECT * FROM unnest($40::text[], $41::text[], $42::text[], $43::text[], $44::text[], $45::bigint[])
), entries_in AS (
    INSERT INTO journal_entries (transaction_id, account, currency, phase, amount)
    SELECT * FROM unnest($46::text[], $47::text[], $48::text[], $49::text[], $50::bigint[])
), finished AS (
    UPDATE idempotency_keys AS k SET status_code = u.s, response = u.r
    FROM unnest($51::text[], $52::text[], $53::int[], $54::bytea[]) AS u(m, key, s, r)
    WHERE k.merchant_id = u.m AND k.key = u.key
), released AS (
    DELETE FROM idempotency_keys AS k
    USING unnest($55::text[], $56::text[]) AS u(m, key)
    WHERE k.merchant_id = u.m AND k.key = u.key AND k.status_code = 0
), touched AS (
    UPDATE payment_operations AS o
    SET lease_until = u.lu, checks = u.n, next_check = u.nc, stuck_since = u.st
    FROM unnest($57::text[], $58::bigint[], $59::int[], $60::bigint[], $61::bigint[]) AS u(id, lu, n, nc, st)
    WHERE o.id = u.id AND o.status = 'open'
), checked AS (
    UPDATE payment_attempts AS t
    SET checks = u.n, next_check = u.nc, stuck_since = u.st, status = coalesce(u.s, t.status)
    FROM unnest($62::text[], $63::int[], $64::bigint[], $65::bigint[], $66::text[]) AS u(id, n, nc, st, s)
    WHERE t.id = u.id AND t.status IN ('intent', 'unknown')
), events_in AS (
    INSERT INTO events (id, merchant_id, type, payment_id, body, created)
    SELECT id, m, t, p, b::json, cr
    FROM unnest($67::text[], $68::text[], $69::text[], $70::text[], $71::text[], $72::bigint[])
         WITH ORDINALITY AS u(id, m, t, p, b, cr, n)
    ORDER BY n
    RETURNING seq, id, merchant_id, type, payment_id, created
), deliveries_in AS (
    -- Fanned out to the scope's subscribed endpoints in this statement: an event committed is an
    -- event queued for every endpoint that existed at that moment.
    INSERT INTO event_deliveries (endpoint_id, event_id, seq, ordering_key, next_attempt, created)
    SELECT w.id, e.id, e.seq, coalesce(e.payment_id, e.id), e.created, e.created
    FROM events_in AS e JOIN webhook_endpoints AS w
      ON w.merchant_id = e.merchant_id AND (e.type = ANY(w.events) OR '*' = ANY(w.events))
), cards_in AS (
    INSERT INTO vault_cards (token, merchant_id, key_id, nonce, ciphertext, brand, bin, last4, exp_month, exp_year,
                             fingerprint, created)
    SELECT * FROM unnest($73::text[], $74::text[], $75::text[], $76::bytea[], $77::bytea[], $78::text[], $79::text[],
                         $80::text[], $81::int[], $82::int[], $83::text[], $84::bigint[])
    ON CONFLICT (token) DO NOTHING
)
SELECT 1
"""

_PAYMENT_COLUMNS = (
    "id", "merchant_id", "status", "amount", "currency", "amount_captured", "amount_refunded",
    "capture_method", "capture_closed", "provider", "provider_reference", "body", "reference", "created",
)  # fmt: skip
_ATTEMPT_COLUMNS = (
    "id", "payment_id", "merchant_id", "provider", "amount", "currency", "request", "idempotency_key", "created",
)  # fmt: skip
_ATTEMPT_UPDATE_COLUMNS = ("id", "status", "outcome", "code", "provider_reference", "latency_ms")
_REFUND_COLUMNS = (
    "id", "payment_id", "merchant_id", "amount", "currency", "status", "provider_reference", "reason", "metadata",
    "created",
)  # fmt: skip
_JOURNAL_COLUMNS = ("id", "merchant_id", "payment_id", "kind", "operation_id", "created")
_ENTRY_COLUMNS = ("account", "currency", "phase", "amount")
_FINISH_COLUMNS = ("merchant_id", "key", "status_code", "response")

_OPERATION_COLUMNS = (
    "id", "payment_id", "merchant_id", "kind", "amount", "currency", "provider", "provider_key", "params",
    "idempotency_key", "expected_version", "lease_until", "created",
)  # fmt: skip
_CLOSE_COLUMNS = ("id", "status", "outcome", "code", "provider_reference", "finished")
_TOUCH_COLUMNS = ("id", "lease_until", "checks", "next_check", "stuck_since")
_ATTEMPT_CHECK_COLUMNS = ("id", "checks", "next_check", "stuck_since", "status")
_RELEASE_COLUMNS = ("merchant_id", "key")
_EVENT_COLUMNS = ("id", "merchant_id", "type", "payment_id", "body", "created")
_CARD_COLUMNS = (
    "token", "merchant_id", "key_id", "nonce", "ciphertext", "brand", "bin", "last4", "exp_month", "exp_year",
    "fingerprint", "created",
)  # fmt: skip

# The partial unique index on open operations is the one-writer-per-payment rule; a claim that
# meets it is refused without an error, so a racing worker is told before it calls anyone. The
# batch holds the payment rows' locks (_SQL_LOCK_PAYMENTS) before this statement starts, so its
# version test reads the latest committed version, never one a concurrent close just replaced.
_SQL_CLAIM_OPERATION = """
INSERT INTO payment_operations (id, payment_id, merchant_id, kind, amount, currency, provider, provider_key,
                                status, params, idempotency_key, lease_until, next_check, created)
SELECT id, p, m, k, a, c, pr, pk, 'open', par::json, ik, lu, cr, cr
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[],
            $9::text[], $10::text[], $11::int[], $12::bigint[], $13::bigint[])
     AS u(id, p, m, k, a, c, pr, pk, par, ik, v, lu, cr)
WHERE EXISTS (SELECT 1 FROM payments AS q WHERE q.id = u.p AND q.version = u.v)
ON CONFLICT (payment_id) WHERE status = 'open' DO NOTHING
RETURNING id
"""

_SQL_CLOSE_OPERATION = """
UPDATE payment_operations AS o
SET status = u.s, outcome = u.o, code = u.c, provider_reference = u.pr, finished = u.f, stuck_since = NULL
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) AS u(id, s, o, c, pr, f)
WHERE o.id = u.id AND o.status = 'open'
RETURNING o.id
"""

# Every batch that claims, closes or updates payments locks those rows first, in id order: claims
# and closes then never deadlock with each other across workers, and each sees the other's commit.
_SQL_LOCK_PAYMENTS = "SELECT id FROM payments WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"

_SQL_DROP_OPERATION = "DELETE FROM payment_operations WHERE id = ANY($1::text[])"
_SQL_REOPEN_OPERATION = "UPDATE payment_operations SET status = 'open', finished = NULL WHERE id = ANY($1::text[])"

_SQL_RELEASE = """
DELETE FROM idempotency_keys AS k
USING unnest($1::text[], $2::text[]) AS u(m, key)
WHERE k.merchant_id = u.m AND k.key = u.key AND k.status_code = 0
"""


def _reserved(result: WriteResult | Exception) -> bool:
    return isinstance(result, WriteResult) and result.applied


def _columns(rows: list[Any], names: tuple[str, ...]) -> list[list[Any]]:
    return [[getattr(row, name) for row in rows] for name in names]


class _Step(msgspec.Struct, frozen=True):
    """One conditional statement of a batch: which row of an op it takes and how it answers."""

    name: str
    row_of: Callable[[WriteOp], Any]
    dedupe: Callable[[Any], Hashable]
    match: Callable[[Any], Hashable]
    returned: Callable[[asyncpg.Record], Hashable]
    sql: str
    columns: tuple[str, ...]
    refused: WriteResult


def _merchant_key(row: Any) -> Hashable:
    return (row.merchant_id, row.key)


def _event_key(row: Any) -> Hashable:
    return (row.account, row.event_id)


def _row_id(row: Any) -> Hashable:
    return row.id


def _payment_of(row: Any) -> Hashable:
    return row.payment_id


# In order: the key reservation, the notification, the operation's claim of its payment, the close.
_STEPS = (
    _Step(
        "reserve",
        lambda op: op.reserve,
        _merchant_key,
        _merchant_key,
        lambda r: (r["merchant_id"], r["key"]),
        _SQL_RESERVE,
        ("merchant_id", "key", "endpoint", "body_hash", "created"),
        WriteResult(reserved=False),
    ),
    _Step(
        "event",
        lambda op: op.event,
        _event_key,
        _event_key,
        lambda r: (r["account"], r["event_id"]),
        _SQL_CLAIM_EVENT,
        ("account", "event_id", "event_type", "payment_id", "outcome", "received"),
        WriteResult(fresh_event=False),
    ),
    # One writer per payment, inside a batch too: claims are deduplicated by payment.
    _Step(
        "claim",
        lambda op: op.operation,
        _payment_of,
        _row_id,
        lambda r: r["id"],
        _SQL_CLAIM_OPERATION,
        _OPERATION_COLUMNS,
        WriteResult(claimed=False),
    ),
    _Step(
        "close",
        lambda op: op.operation_close,
        _row_id,
        _row_id,
        lambda r: r["id"],
        _SQL_CLOSE_OPERATION,
        _CLOSE_COLUMNS,
        WriteResult(closed=False),
    ),
)

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class _Pending(msgspec.Struct):
    op: WriteOp
    future: asyncio.Future[WriteResult]


class LedgerOverloaded(LedgerUnavailable):
    """The writer's queue is full: this request was shed before anything of it was queued."""

    def __init__(self) -> None:
        """Build the error (503 ``overloaded``; retry later with the same Idempotency-Key)."""
        PaymentError.__init__(self, "unavailable", "overloaded", "the switch is overloaded; retry shortly")


def starts_work(op: WriteOp) -> bool:
    """True for an op that begins a request's work (an intent), which may be shed under overload.

    Ops that record what a provider already did (outcomes, closes, recovery's settlements) are
    never shed: refusing them would leave money moved that the books do not show yet.
    """
    if op.isolated:
        return False
    return op.reserve is not None or op.operation is not None or (bool(op.attempts) and not op.attempt_updates)


class GroupCommitWriter:
    """Batches :class:`WriteOp` s from concurrent requests into one transaction per commit."""

    def __init__(
        self,
        connect: Connect,
        *,
        max_batch: int = MAX_BATCH,
        submit_timeout_s: float | None = None,
        max_queue: int | None = None,
    ) -> None:
        """Create a writer.

        Args:
            connect: Opens the writer's dedicated connection (called again after a failure).
            max_batch: Most ops in one transaction; the rest wait for the next one.
            submit_timeout_s: Longest :meth:`submit` waits for its commit (None: no deadline).
            max_queue: Most queued ops before new work (:func:`starts_work`) is shed (None: no bound).
        """
        self._connect = connect
        self._max_batch = max_batch
        self._submit_timeout_s = submit_timeout_s
        self._max_queue = max_queue
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches_committed = 0
        self.ops_committed = 0
        self.batches_failed = 0
        self.on_batch: Callable[[int, float], None] | None = None
        self.on_failure: Callable[[], None] | None = None

    async def start(self) -> None:
        """Open the connection and start the commit loop."""
        self._connection = await self._connect()
        self._task = asyncio.create_task(self._run(), name="ledger-group-commit")

    async def stop(self, timeout_s: float | None = None) -> None:
        """Commit what is queued (for at most ``timeout_s``), then stop and close the connection.

        Ops still queued when the deadline passes fail with :class:`LedgerUnavailable`.
        """
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(self._task)
            except TimeoutError:
                logger.error(
                    "ledger writer: %d ops not committed within the %ss shutdown deadline", len(self._queue), timeout_s
                )
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
                for pending in self._queue:
                    if not pending.future.done():
                        pending.future.set_exception(LedgerUnavailable())
                self._queue.clear()
        if self._connection is not None and not self._connection.is_closed():
            try:
                await self._connection.close(timeout=timeout_s)
            except Exception:  # a stalled server must not hold up the exit
                self._connection.terminate()

    @property
    def running(self) -> bool:
        """True while the commit loop runs and accepts ops."""
        return self._task is not None and not self._task.done() and not self._closing

    async def submit(self, op: WriteOp) -> WriteResult:
        """Queue ``op`` and wait until its batch committed.

        Raises:
            LedgerUnavailable: The batch failed; nothing of ``op`` was written.
            ConcurrentUpdate: Its payment update lost a race; nothing of ``op`` was written.
        """
        if self._closing or self._task is None:
            raise LedgerUnavailable("the ledger writer is not running")
        if self._max_queue is not None and len(self._queue) >= self._max_queue and starts_work(op):
            raise LedgerOverloaded()
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        pending = _Pending(op, future)
        self._queue.append(pending)
        self._wakeup.set()
        try:
            async with asyncio.timeout(self._submit_timeout_s):
                return await future
        except TimeoutError:
            queued = next((i for i, item in enumerate(self._queue) if item is pending), None)
            if queued is not None:
                # Never taken into a batch: it certainly is not committed, and now never will be.
                del self._queue[queued]
                raise LedgerUnavailable("the ledger did not commit in time; nothing was written, retry") from None
            # In a batch still in flight: it may commit yet, so the caller must treat it as unknown.
            raise LedgerUnavailable("the ledger did not confirm the commit in time; retry with the same key") from None

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            shared = [pending for pending in batch if not pending.op.isolated]
            if shared:
                await self._commit(shared)
            for pending in batch:
                if pending.op.isolated:
                    await self._commit([pending])

    async def _commit(self, batch: list[_Pending]) -> None:
        """Write ``batch`` in one transaction and resolve its futures; never raises."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            results = await self._write_batch(batch)
        except Exception as exc:  # every failure mode must fail the batch, never the loop
            self.batches_failed += 1
            if self.on_failure is not None:
                self.on_failure()
            logger.error("ledger batch of %d ops failed: %s %s", len(batch), type(exc).__name__, exc)
            await self._reset_connection()
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(LedgerUnavailable())
            return
        self.batches_committed += 1
        self.ops_committed += len(batch)
        if self.on_batch is not None:
            self.on_batch(len(batch), loop.time() - started)
        for pending, result in zip(batch, results, strict=True):
            if pending.future.done():
                continue
            if isinstance(result, Exception):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)

    async def _reset_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.terminate()
        self._connection = None
        try:
            self._connection = await self._connect()
        except Exception as exc:  # the next batch retries; requests meanwhile get 503
            logger.error("ledger writer cannot reconnect: %s", type(exc).__name__)

    async def _write_batch(self, batch: list[_Pending]) -> list[WriteResult | Exception]:
        if self._connection is None or self._connection.is_closed():
            self._connection = await self._connect()
        connection = self._connection
        results: list[WriteResult | Exception] = [WriteResult() for _ in batch]
        if not any(pending.op.conditional for pending in batch):
            await self._apply_rows(connection, [pending.op for pending in batch])
            return results
        async with connection.transaction():
            live = await self._apply_conditions(connection, batch, results)
            await self._apply_rows(connection, [batch[i].op for i in live])
        return results

    async def _apply_conditions(
        self, connection: asyncpg.Connection, batch: list[_Pending], results: list[WriteResult | Exception]
    ) -> list[int]:
        """Run the conditional statements in order; return the indexes of ops that go on.

        An op that passes one step and fails a later one leaves no trace of the earlier steps: its
        reservation is released, its notification unrecorded, its claim dropped, its close undone.
        """
        passed: dict[str, set[int]] = {"reserve": set(), "event": set(), "claim": set(), "close": set()}
        touched = sorted(
            {op.operation.payment_id for op in (p.op for p in batch) if op.operation is not None}
            | {op.payment_update.id for op in (p.op for p in batch) if op.payment_update is not None}
        )
        if touched:
            await connection.execute(_SQL_LOCK_PAYMENTS, touched)
        live = list(range(len(batch)))
        for step in _STEPS:
            live = await self._conditional_step(connection, batch, results, live, passed[step.name], step)
        live = await self._update_payments(connection, batch, results, live)
        survivors = set(live)
        await self._undo(connection, batch, {step: ops - survivors for step, ops in passed.items()})
        return live

    async def _update_payments(
        self,
        connection: asyncpg.Connection,
        batch: list[_Pending],
        results: list[WriteResult | Exception],
        live: list[int],
    ) -> list[int]:
        updating = [i for i in live if batch[i].op.payment_update is not None]
        lost: set[int] = set()
        first_for_payment: dict[str, int] = {}
        for i in updating:
            update = batch[i].op.payment_update
            assert update is not None
            if update.id in first_for_payment:
                # Both read the same version before this batch; only the first may apply.
                results[i] = ConcurrentUpdate(update.id)
                lost.add(i)
            else:
                first_for_payment[update.id] = i
        updating = [i for i in updating if i not in lost]
        if updating:
            rows = [batch[i].op.payment_update for i in updating]
            names = ("id", "expected_version", "status", "amount_captured", "amount_refunded", "capture_closed", "body")
            got = await connection.fetch(_SQL_UPDATE_PAYMENT, *_columns(rows, names))
            updated = {r["id"] for r in got}
            for i in updating:
                update = batch[i].op.payment_update
                assert update is not None
                if update.id not in updated:
                    results[i] = ConcurrentUpdate(update.id)
                    lost.add(i)
        return [i for i in live if i not in lost]

    async def _undo(self, connection: asyncpg.Connection, batch: list[_Pending], failed: dict[str, set[int]]) -> None:
        undo = [batch[i].op.reserve for i in sorted(failed["reserve"])]
        if undo:
            await connection.execute(_SQL_RELEASE, *_columns(undo, ("merchant_id", "key")))
        # A notification whose payment update lost is not recorded, so its retry applies.
        unclaim = [batch[i].op.event for i in sorted(failed["event"])]
        if unclaim:
            await connection.execute(_SQL_UNCLAIM_EVENT, *_columns(unclaim, ("account", "event_id")))
        dropped = [batch[i].op.operation for i in sorted(failed["claim"])]
        if dropped:
            await connection.execute(_SQL_DROP_OPERATION, [o.id for o in dropped if o is not None])
        reopened = [batch[i].op.operation_close for i in sorted(failed["close"])]
        if reopened:
            await connection.execute(_SQL_REOPEN_OPERATION, [c.id for c in reopened if c is not None])

    @staticmethod
    async def _conditional_step(
        connection: asyncpg.Connection,
        batch: list[_Pending],
        results: list[WriteResult | Exception],
        live: list[int],
        passed: set[int],
        step: _Step,
    ) -> list[int]:
        """Run one conditional statement for the live ops that carry its row; return those still live."""
        taking: list[int] = []
        seen: set[Hashable] = set()
        for i in live:
            row = step.row_of(batch[i].op)
            if row is None:
                continue
            if step.dedupe(row) in seen:
                # Two in one batch: both read the database before it, so only the first may go on.
                results[i] = step.refused
                continue
            seen.add(step.dedupe(row))
            taking.append(i)
        if taking:
            rows = [step.row_of(batch[i].op) for i in taking]
            won = {step.returned(r) for r in await connection.fetch(step.sql, *_columns(rows, step.columns))}
            for i in taking:
                if step.match(step.row_of(batch[i].op)) in won:
                    passed.add(i)
                else:
                    results[i] = step.refused
        return [i for i in live if _reserved(results[i])]

    async def _apply_rows(self, connection: asyncpg.Connection, ops: list[WriteOp]) -> None:
        journal = [t for op in ops for t in op.journal]
        rows = (
            _columns([p for op in ops for p in op.payments], _PAYMENT_COLUMNS),
            _columns([a for op in ops for a in op.attempts], _ATTEMPT_COLUMNS),
            _columns([a for op in ops for a in op.attempt_updates], _ATTEMPT_UPDATE_COLUMNS),
            _columns([r for op in ops for r in op.refunds], _REFUND_COLUMNS),
            _columns(journal, _JOURNAL_COLUMNS),
            [[t.id for t in journal for _ in t.entries]],
            _columns([e for t in journal for e in t.entries], _ENTRY_COLUMNS),
            _columns([f for op in ops for f in op.finish], _FINISH_COLUMNS),
            _columns([r for op in ops for r in op.release], _RELEASE_COLUMNS),
            _columns([t for op in ops for t in op.operation_touches], _TOUCH_COLUMNS),
            _columns([c for op in ops for c in op.attempt_checks], _ATTEMPT_CHECK_COLUMNS),
            _columns([e for op in ops for e in op.events], _EVENT_COLUMNS),
            _columns([c for op in ops for c in op.cards], _CARD_COLUMNS),
        )
        if any(column for group in rows for column in group[:1]):
            await connection.execute(_SQL_ROWS, *(column for group in rows for column in group))
