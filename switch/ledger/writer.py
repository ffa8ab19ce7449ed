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
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec

from switch.errors import ConcurrentUpdate, LedgerUnavailable
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


class WriteOp(msgspec.Struct, kw_only=True):
    """Everything one request writes, committed atomically with the rest of its batch."""

    reserve: IdempotencyReserve | None = None
    event: EventClaim | None = None
    payment_update: PaymentUpdate | None = None
    payments: list[PaymentInsert] = msgspec.field(default_factory=list)
    attempts: list[AttemptInsert] = msgspec.field(default_factory=list)
    attempt_updates: list[AttemptUpdate] = msgspec.field(default_factory=list)
    refunds: list[RefundInsert] = msgspec.field(default_factory=list)
    journal: list[JournalTransaction] = msgspec.field(default_factory=list)
    finish: list[IdempotencyFinish] = msgspec.field(default_factory=list)

    @property
    def conditional(self) -> bool:
        """True when part of the op depends on what the database holds (needs a transaction)."""
        return self.reserve is not None or self.event is not None or self.payment_update is not None


class WriteResult(msgspec.Struct, frozen=True):
    """What happened to one op.

    ``reserved`` is False when its idempotency key was already taken; ``fresh_event`` is False when
    its provider notification had been recorded before. Either way nothing of the op was written.
    """

    reserved: bool = True
    fresh_event: bool = True


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

_SQL_RELEASE = """
DELETE FROM idempotency_keys AS k
USING unnest($1::text[], $2::text[]) AS u(m, key)
WHERE k.merchant_id = u.m AND k.key = u.key AND k.status_code = 0
"""


def _reserved(result: WriteResult | Exception) -> bool:
    return not isinstance(result, WriteResult) or (result.reserved and result.fresh_event)


def _columns(rows: list[Any], names: tuple[str, ...]) -> list[list[Any]]:
    return [[getattr(row, name) for row in rows] for name in names]


Connect = Callable[[], Awaitable[asyncpg.Connection]]


class _Pending(msgspec.Struct):
    op: WriteOp
    future: asyncio.Future[WriteResult]


class GroupCommitWriter:
    """Batches :class:`WriteOp` s from concurrent requests into one transaction per commit."""

    def __init__(self, connect: Connect, *, max_batch: int = MAX_BATCH) -> None:
        """Create a writer.

        Args:
            connect: Opens the writer's dedicated connection (called again after a failure).
            max_batch: Most ops in one transaction; the rest wait for the next one.
        """
        self._connect = connect
        self._max_batch = max_batch
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

    async def stop(self) -> None:
        """Commit what is queued, then stop and close the connection."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._connection is not None and not self._connection.is_closed():
            await self._connection.close()

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
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(op, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            started = loop.time()
            try:
                results = await self._write_batch(batch)
            except Exception as exc:  # every failure mode must fail the batch, never the loop
                self.batches_failed += 1
                if self.on_failure is not None:
                    self.on_failure()
                logger.error("ledger batch of %d ops failed: %s", len(batch), type(exc).__name__)
                await self._reset_connection()
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(LedgerUnavailable())
                continue
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
        """Run the conditional statements; return the indexes of ops that go on."""
        live = list(range(len(batch)))
        reserving = []
        claimed: set[tuple[str, str]] = set()
        for i in live:
            reserve = batch[i].op.reserve
            if reserve is None:
                continue
            if (reserve.merchant_id, reserve.key) in claimed:
                # Duplicates inside one batch: the first claims the key, the rest find it taken.
                results[i] = WriteResult(reserved=False)
                continue
            claimed.add((reserve.merchant_id, reserve.key))
            reserving.append(i)
        if reserving:
            rows = [batch[i].op.reserve for i in reserving]
            got = await connection.fetch(
                _SQL_RESERVE, *_columns(rows, ("merchant_id", "key", "endpoint", "body_hash", "created"))
            )
            won = {(r["merchant_id"], r["key"]) for r in got}
            for i in reserving:
                reserve = batch[i].op.reserve
                assert reserve is not None
                if (reserve.merchant_id, reserve.key) not in won:
                    results[i] = WriteResult(reserved=False)
        live = [i for i in live if _reserved(results[i])]
        live = await self._claim_events(connection, batch, results, live)
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
        live = [i for i in live if i not in lost]
        # An op that reserved its key but lost the update must leave no trace.
        undo = [batch[i].op.reserve for i in sorted(lost) if batch[i].op.reserve is not None]
        if undo:
            await connection.execute(_SQL_RELEASE, *_columns(undo, ("merchant_id", "key")))
        # Likewise a notification whose payment update lost is not recorded, so its retry applies.
        unclaim = [batch[i].op.event for i in sorted(lost) if batch[i].op.event is not None]
        if unclaim:
            await connection.execute(_SQL_UNCLAIM_EVENT, *_columns(unclaim, ("account", "event_id")))
        return live

    async def _claim_events(
        self,
        connection: asyncpg.Connection,
        batch: list[_Pending],
        results: list[WriteResult | Exception],
        live: list[int],
    ) -> list[int]:
        claiming: list[int] = []
        seen: set[tuple[str, str]] = set()
        for i in live:
            event = batch[i].op.event
            if event is None:
                continue
            if (event.account, event.event_id) in seen:
                results[i] = WriteResult(fresh_event=False)
                continue
            seen.add((event.account, event.event_id))
            claiming.append(i)
        if claiming:
            rows = [batch[i].op.event for i in claiming]
            names = ("account", "event_id", "event_type", "payment_id", "outcome", "received")
            got = await connection.fetch(_SQL_CLAIM_EVENT, *_columns(rows, names))
            fresh = {(r["account"], r["event_id"]) for r in got}
            for i in claiming:
                event = batch[i].op.event
                assert event is not None
                if (event.account, event.event_id) not in fresh:
                    results[i] = WriteResult(fresh_event=False)
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
        )
        if any(column for group in rows for column in group[:1]):
            await connection.execute(_SQL_ROWS, *(column for group in rows for column in group))
