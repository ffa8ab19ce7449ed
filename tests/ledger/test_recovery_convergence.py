"""Recovery converges: idempotent, isolated, supervised and fair (DESIGN section 3, issue 8 item 4).

Every test here runs against a database of its own module (passes run with ``now`` far in the
future and would otherwise sweep other tests' rows) and a scripted provider account whose look-up
answers are set per attempt. Between tests every open intent is drained, so each test starts from
a database with nothing left to recover and ``ledger verify`` sees only this module's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping

import asyncpg
import httpx
import pytest
import pytest_asyncio
from litestar import Litestar

from adapters.base import (
    AuthorizeRequest,
    CaptureRequest,
    Flow,
    Outcome,
    ProviderAdapter,
    ProviderResult,
    RefundRequest,
    SyncRequest,
    WebhookEvent,
)
from switch.config import Settings
from switch.ids import new_id
from switch.ledger.verify import verify_ledger
from switch.ledger.writer import AttemptInsert, GroupCommitWriter, PaymentUpdate, WriteOp
from switch.merchants import create_merchant, set_merchant_providers
from switch.metrics import Metrics
from switch.payments.idempotency import IdempotencyGuard, IdempotencyRequest
from switch.payments.model import ENCODER, Payment
from switch.payments.operations import backoff_s
from switch.payments.recovery import AttemptRecovery, RecoveryReport, list_unresolved, stop_task
from tests.api.helpers import card, payment_body
from tests.conftest import MerchantKey, running_app, temporary_database, without_card_velocity
from tests.ledger.intents import pending_payment

SCRIPTED = "scripted"
LATER = 3600  # past every grace period and the first backoffs
# A look-up answer that is no ProviderResult at all: settling it raises inside the settlement
# itself (not in the adapter call, which recovery already guards), the one way left to make a
# settlement raise from the provider side.
GARBAGE = object()
Answer = ProviderResult | BaseException | object

APPROVED = ProviderResult(outcome=Outcome.APPROVED, provider_reference="scr_ok", raw_status="succeeded")
UNKNOWN = ProviderResult(outcome=Outcome.UNKNOWN, code="not_found_yet", raw_status="not_found")
NOT_FOUND = ProviderResult(outcome=Outcome.TECHNICAL, code="not_found", raw_status="not_found")


class ScriptedAdapter(ProviderAdapter):
    """A provider whose answers the test decides, and that keeps books of what it performed.

    Look-ups answer per attempt (or payment) id from ``answers``, else ``default``; an exception
    is raised, anything else returned as is. Captures and refunds act once per provider key, as
    real providers do, and with ``lose_answers`` the answer is lost after acting.
    """

    name = SCRIPTED
    flows = frozenset({Flow.AUTHORIZE, Flow.CAPTURE, Flow.REFUND, Flow.SYNC, Flow.WEBHOOK})
    method_types = frozenset({"card"})

    def __init__(self) -> None:
        """Create the account with nothing scripted."""
        super().__init__()
        self.reset()

    def reset(self) -> None:
        """Forget every script and every book (a fresh account per test)."""
        self.authorize_answer: ProviderResult = UNKNOWN
        self.answers: dict[str, Answer] = {}
        self.default: Answer = UNKNOWN
        self.sync_delay_s = 0.0
        self.sync_calls: Counter[str] = Counter()
        self.lose_answers = False
        self.performed: list[tuple[str, str, int]] = []
        self._replies: dict[tuple[str, str], ProviderResult] = {}

    async def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        """Answer the scripted authorization outcome."""
        return self.authorize_answer

    async def sync(self, request: SyncRequest) -> ProviderResult:
        """Answer the scripted look-up of this attempt."""
        self.sync_calls[request.attempt_id] += 1
        if self.sync_delay_s:
            await asyncio.sleep(self.sync_delay_s)
        if request.operation != "authorize":
            return UNKNOWN  # operations are settled by replaying them, never by a look-up here
        answer = self.answers.get(request.attempt_id, self.answers.get(request.payment_id, self.default))
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]

    def _act_once(self, flow: str, key: str, amount: int) -> ProviderResult:
        reply = self._replies.get((flow, key))
        if reply is None:
            self.performed.append((flow, key, amount))
            reply = self._replies[(flow, key)] = ProviderResult(
                outcome=Outcome.APPROVED, provider_reference="scr_ok", raw_status="succeeded"
            )
        if self.lose_answers:
            raise TimeoutError  # acted, then the answer never arrived
        return reply

    async def capture(self, request: CaptureRequest) -> ProviderResult:
        """Capture once per provider key."""
        return self._act_once("capture", request.idempotency_key, request.amount)

    async def refund(self, request: RefundRequest) -> ProviderResult:
        """Refund once per provider key."""
        return self._act_once("refund", request.idempotency_key, request.amount)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Trust the test's notification body as is (signatures are tested elsewhere)."""
        data = json.loads(body)
        return [
            WebhookEvent(
                provider=SCRIPTED,
                event_id=data["event_id"],
                event_type="payment.succeeded",
                provider_reference=data.get("reference"),
                outcome=Outcome(data["outcome"]),
                payment_id=data["payment_id"],
            )
        ]


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def convergence_database(server_url: str) -> Iterator[str]:
    with temporary_database(server_url, "switch_recovery_") as url:
        yield url


@pytest.fixture(scope="module")
def scripted() -> ScriptedAdapter:
    return ScriptedAdapter()


def _background_recovery(app: Litestar) -> asyncio.Task[None] | None:
    """The app's own recovery loop, which would otherwise race the passes these tests run."""
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        if (
            task.get_name() == "attempt-recovery"
            and frame is not None
            and frame.f_locals.get("self") is app.state.recovery
        ):
            return task
    return None


@pytest_asyncio.fixture(scope="module")
async def switch_app(convergence_database: str, redis_url: str, scripted: ScriptedAdapter) -> AsyncIterator[Litestar]:
    async with running_app(Settings(database_url=convergence_database, redis_url=redis_url)) as app:
        # Every service holds this very mapping, so the account is routable and recoverable.
        app.state.adapters[SCRIPTED] = scripted
        background = _background_recovery(app)
        assert background is not None, "the app's recovery loop was not found"
        await stop_task(background)
        yield app


@pytest_asyncio.fixture(scope="module")
async def client(switch_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=switch_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://switch.test", timeout=30) as http:
        yield http


@pytest_asyncio.fixture
async def merchant(switch_app: Litestar) -> MerchantKey:
    created, key = await create_merchant(switch_app.state.pool, "converge-" + secrets.token_hex(4))
    await without_card_velocity(switch_app, created.id)
    return MerchantKey(created.id, key)


@pytest_asyncio.fixture(autouse=True)
async def drained(switch_app: Litestar, scripted: ScriptedAdapter) -> AsyncIterator[None]:
    """Start each test with nothing open, and settle whatever it leaves (failed, nothing moved)."""
    assert await list_unresolved(switch_app.state.pool) == [], "a previous test left open intents"
    scripted.reset()
    yield
    scripted.reset()
    scripted.default = NOT_FOUND
    await _recovery(switch_app).run_once(now=time.time() + 10**8, limit=10_000)
    left = await list_unresolved(switch_app.state.pool)
    assert left == [], f"the test left intents recovery cannot settle: {left}"


def _recovery(app: Litestar, **options: float) -> AttemptRecovery:
    """A recovery of its own (own metrics), over the app's pool, writer and accounts."""
    settings = app.state.settings
    return AttemptRecovery(
        pool=app.state.pool,
        writer=app.state.writer,
        adapters=app.state.adapters,
        idempotency=IdempotencyGuard(app.state.store, app.state.pool, settings.idempotency_ttl_s),
        metrics=Metrics(),
        **options,
    )


# ---------------------------------------------------------------------------------- helpers


async def _crash_after_intent(
    app: Litestar,
    merchant_id: str,
    payment: Payment,
    *,
    key: IdempotencyRequest | None = None,
    provider: str = SCRIPTED,
    payment_id: str | None = None,
) -> str:
    """Write an attempt intent (and the key's reservation) as the live path does, then "crash"."""
    attempt_id = new_id("att")
    await app.state.writer.submit(
        WriteOp(
            reserve=key.reserve_row() if key is not None else None,
            attempts=[
                AttemptInsert(
                    id=attempt_id,
                    payment_id=payment_id or payment.id,
                    merchant_id=merchant_id,
                    provider=provider,
                    amount=payment.amount,
                    currency=payment.currency,
                    request=ENCODER.encode(payment).decode(),
                    idempotency_key=key.key if key is not None else None,
                    created=payment.created,
                )
            ],
        )
    )
    return attempt_id


async def _journal(pool: asyncpg.Pool, payment_id: str) -> list[str]:
    rows = await pool.fetch("SELECT kind FROM journal_transactions WHERE payment_id = $1 ORDER BY kind", payment_id)
    return [row["kind"] for row in rows]


async def _attempt(pool: asyncpg.Pool, attempt_id: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT status, checks, next_check, stuck_since FROM payment_attempts WHERE id = $1", attempt_id
    )
    assert row is not None, attempt_id
    return row


async def _payment_status(pool: asyncpg.Pool, payment_id: str) -> str | None:
    return await pool.fetchval("SELECT status FROM payments WHERE id = $1", payment_id)


async def _assert_verified(app: Litestar) -> None:
    report = await verify_ledger(app.state.pool)
    assert report.ok, report.render()


def _sample(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


async def _until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    """Poll an async predicate until it holds (background loops have no completion to await)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _pending_via_api(client: httpx.AsyncClient, merchant: MerchantKey, key: str) -> dict:
    """A payment whose provider answer was lost on the live path: 201 pending, attempt ``unknown``."""
    body = payment_body(amount=3100, capture="automatic")
    response = await client.post("/v1/payments", json=body, headers={**merchant.headers, "Idempotency-Key": key})
    assert response.status_code == 201, response.text
    payment = response.json()
    assert (payment["status"], payment["pending_reason"]) == ("pending", "provider_outcome_unknown"), payment
    return payment


# ---------------------------------------------------------------------------------- 1. idempotent


async def test_an_attempt_a_notification_settled_is_closed_without_booking_again(
    switch_app, client, merchant, scripted
):
    """The payment was settled by a notification meanwhile: recovery closes the attempt, books nothing."""
    await set_merchant_providers(switch_app.state.pool, merchant.id, (SCRIPTED,))
    key = secrets.token_hex(8)
    payment = await _pending_via_api(client, merchant, key)
    pool = switch_app.state.pool
    attempt_id = await pool.fetchval("SELECT id FROM payment_attempts WHERE payment_id = $1", payment["id"])
    assert (await _attempt(pool, attempt_id))["status"] == "unknown"
    notification = {"event_id": "evt_" + secrets.token_hex(4), "outcome": "approved", "payment_id": payment["id"]}
    delivered = await client.post(f"/webhooks/{SCRIPTED}", json=notification)
    assert delivered.status_code == 200 and delivered.json()["applied"] == 1, delivered.text
    assert await _journal(pool, payment["id"]) == ["sale"]
    # The provider would confirm the approval too: booking it again would be a second sale.
    scripted.default = APPROVED
    looked_up = scripted.sync_calls[attempt_id]
    failed_before = switch_app.state.writer.batches_failed

    first = await _recovery(switch_app).run_once(now=time.time() + LATER)
    again = await _recovery(switch_app).run_once(now=time.time() + 2 * LATER)

    assert (first.examined, first.resolved, first.errors) == (1, 1, 0), first
    assert again == RecoveryReport(), f"a settled attempt was examined again: {again}"
    assert scripted.sync_calls[attempt_id] == looked_up, "recovery asked the provider about a settled payment"
    assert await _journal(pool, payment["id"]) == ["sale"]
    assert (await _attempt(pool, attempt_id))["status"] == "done"
    assert switch_app.state.writer.batches_failed == failed_before
    retry = await client.post(
        "/v1/payments",
        json=payment_body(amount=3100, capture="automatic"),
        headers={**merchant.headers, "Idempotency-Key": key},
    )
    assert (retry.status_code, retry.json()["status"]) == (201, "captured"), retry.text
    await _assert_verified(switch_app)


async def test_two_concurrent_recoveries_book_an_unknown_attempt_once(switch_app, client, merchant, scripted):
    """Two workers recover the same pending payment at once: one sale, no failed batch, then nothing more."""
    await set_merchant_providers(switch_app.state.pool, merchant.id, (SCRIPTED,))
    payment = await _pending_via_api(client, merchant, secrets.token_hex(8))
    pool = switch_app.state.pool
    attempt_id = await pool.fetchval("SELECT id FROM payment_attempts WHERE payment_id = $1", payment["id"])
    scripted.default = APPROVED
    scripted.sync_delay_s = 0.05  # both passes are in flight at once
    failed_before = switch_app.state.writer.batches_failed
    now = time.time() + LATER

    reports = await asyncio.gather(_recovery(switch_app).run_once(now=now), _recovery(switch_app).run_once(now=now))

    assert sum(r.resolved for r in reports) == 1, reports
    assert sum(r.errors for r in reports) == 0, reports
    assert await _journal(pool, payment["id"]) == ["sale"]
    assert await _payment_status(pool, payment["id"]) == "captured"
    assert switch_app.state.writer.batches_failed == failed_before, "a concurrent settlement failed a batch"
    calls = scripted.sync_calls[attempt_id]
    for later in (2 * LATER, 3 * LATER):  # twice more in a row: nothing is due, nothing booked
        report = await _recovery(switch_app).run_once(now=time.time() + later)
        assert report == RecoveryReport(), report
    assert scripted.sync_calls[attempt_id] == calls
    assert await _journal(pool, payment["id"]) == ["sale"]
    assert switch_app.state.writer.batches_failed == failed_before
    await _assert_verified(switch_app)


# ---------------------------------------------------------------------------------- 2. isolated


@contextlib.asynccontextmanager
async def _writer_held(app: Litestar, payment_id: str) -> AsyncIterator[None]:
    """Stall the writer inside a commit, so everything submitted meanwhile forms its next batch.

    A row lock held by another connection blocks the writer's payment lock; the stalling op
    expects a version no row has, so it writes nothing once let through.
    """
    writer: GroupCommitWriter = app.state.writer
    connection = await asyncpg.connect(app.state.settings.database_url)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", payment_id)
        row = await app.state.pool.fetchrow("SELECT status, body::text AS body FROM payments WHERE id = $1", payment_id)
        stall = asyncio.create_task(
            writer.submit(
                WriteOp(
                    payment_update=PaymentUpdate(
                        id=payment_id,
                        expected_version=-1,
                        status=row["status"],
                        amount_captured=0,
                        amount_refunded=0,
                        capture_closed=False,
                        body=row["body"],
                    )
                )
            )
        )
        await asyncio.sleep(0)  # the stalling op is queued...
        await _until(lambda: _queue_drained(writer))  # ...and taken: the writer is inside its commit
        try:
            yield
        finally:
            await transaction.rollback()
            with contextlib.suppress(Exception):
                await stall
    finally:
        await connection.close()


async def _queue_drained(writer: GroupCommitWriter) -> bool:
    return not writer._queue


async def _queued(writer: GroupCommitWriter, count: int) -> bool:
    return len(writer._queue) >= count


async def test_a_settlement_that_violates_a_constraint_fails_alone_while_payments_commit(
    switch_app, client, merchant, scripted
):
    """A recovery write that breaks a constraint is its own transaction: concurrent payments still commit."""
    pool = switch_app.state.pool
    taken = await client.post("/v1/payments", json=payment_body(amount=900), headers=merchant.headers)
    assert taken.status_code == 201, taken.text
    # The attempt names a payment that was never written, but its stored request carries the id of
    # an existing payment: settling it inserts a payments row whose primary key is taken.
    old = int(time.time()) - 600
    conflicting = pending_payment(created=old)
    conflicting.id = taken.json()["id"]
    bad_id = await _crash_after_intent(switch_app, merchant.id, conflicting, payment_id=new_id("pay"))
    good = pending_payment(created=old + 1)
    await _crash_after_intent(switch_app, merchant.id, good)
    scripted.default = NOT_FOUND
    recovery = _recovery(switch_app)
    writer: GroupCommitWriter = switch_app.state.writer
    failed_before = writer.batches_failed
    try:
        async with _writer_held(switch_app, taken.json()["id"]):
            recovering = asyncio.create_task(recovery.run_once(now=time.time()))
            paying = [
                asyncio.create_task(client.post("/v1/payments", json=payment_body(), headers=merchant.headers))
                for _ in range(8)
            ]
            # The bad settlement and every payment's intent now wait in the writer's next batch.
            await _until(lambda: _queued(writer, len(paying) + 1))
            assert scripted.sync_calls[bad_id] == 1
        responses = await asyncio.gather(*paying)
        report = await recovering
        assert [r.status_code for r in responses] == [201] * len(paying), [r.text for r in responses]
        assert {r.json()["status"] for r in responses} == {"captured"}
        assert writer.batches_failed - failed_before == 1, "more than the bad settlement's own batch failed"
        assert (report.examined, report.resolved, report.errors) == (2, 1, 1), report
        assert _sample(recovery._metrics, "switch_recovery_errors_total") == 1
        assert await _payment_status(pool, good.id) == "failed"  # the rest of the pass went on
        assert (await _attempt(pool, bad_id))["status"] == "intent"
        await _assert_verified(switch_app)
    finally:
        await pool.execute("DELETE FROM payment_attempts WHERE id = $1", bad_id)  # it can never be settled


# ---------------------------------------------------------------------------------- 3. supervised


async def test_a_provider_look_up_that_raises_fails_only_its_own_attempt(switch_app, merchant, scripted):
    """Whatever one attempt's look-up raises, the pass counts it and settles the others."""
    pool = switch_app.state.pool
    old = int(time.time()) - 600
    payments = [pending_payment(created=old + i) for i in range(4)]
    interface, runtime, garbage, fine = [
        await _crash_after_intent(switch_app, merchant.id, payment) for payment in payments
    ]
    scripted.answers.update(
        {
            interface: asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
            runtime: RuntimeError("adapter bug"),
            garbage: GARBAGE,
            fine: APPROVED,
        }
    )
    recovery = _recovery(switch_app)
    now = int(time.time())

    report = await recovery.run_once(now=now)

    assert report == RecoveryReport(examined=4, resolved=1, still_unknown=2, errors=1), report
    assert _sample(recovery._metrics, "switch_recovery_errors_total") == 1
    assert _sample(recovery._metrics, "switch_recovery_passes_total") == 1
    assert await _payment_status(pool, payments[3].id) == "authorized"
    assert await _journal(pool, payments[3].id) == ["authorize"]
    for raised in (interface, runtime):  # a failed look-up proves nothing: pending, looked at later
        row = await _attempt(pool, raised)
        assert (row["status"], row["checks"], row["next_check"]) == ("unknown", 1, now + 30), raised
    await _assert_verified(switch_app)


async def test_the_recovery_loop_survives_an_attempt_that_always_raises(switch_app, merchant, scripted):
    """``run_forever`` keeps looping past a settlement that raises every pass, and settles newcomers."""
    pool = switch_app.state.pool
    always = await _crash_after_intent(switch_app, merchant.id, pending_payment(created=int(time.time()) - 600))
    scripted.answers[always] = GARBAGE
    recovery = _recovery(switch_app, grace_s=0)
    metrics = recovery._metrics
    loop = asyncio.create_task(recovery.run_forever(interval_s=0.01))
    try:
        await _until(_passes_at_least(metrics, 3))
        assert not loop.done()
        assert _sample(metrics, "switch_recovery_errors_total") >= 1
        newcomer = pending_payment(created=int(time.time()) - 1)
        scripted.answers[newcomer.id] = APPROVED
        newcomer_attempt = await _crash_after_intent(switch_app, merchant.id, newcomer)

        async def newcomer_settled() -> bool:
            return (await _attempt(pool, newcomer_attempt))["status"] == "done"

        await _until(newcomer_settled)
        passes = _sample(metrics, "switch_recovery_passes_total")
        await _until(_passes_at_least(metrics, passes + 2))
        assert not loop.done(), "the recovery loop ended"
        assert await _payment_status(pool, newcomer.id) == "authorized"
        assert (await _attempt(pool, always))["status"] == "intent"
    finally:
        await stop_task(loop)
    assert loop.cancelled()


def _passes_at_least(metrics: Metrics, passes: float) -> Callable[[], Awaitable[bool]]:
    async def done() -> bool:
        return _sample(metrics, "switch_recovery_passes_total") >= passes

    return done


# ---------------------------------------------------------------------------------- 4. fair


async def test_unsettleable_attempts_back_off_and_never_starve_a_newer_one(switch_app, merchant, scripted):
    """With ``limit`` below the number of attempts that stay unknown, a newer one still settles."""
    pool = switch_app.state.pool
    recovery = _recovery(switch_app, stuck_after_s=2000)
    start = int(time.time())
    # Five old attempts the provider can never answer for, oldest last, and one newer it can.
    stale = [
        await _crash_after_intent(switch_app, merchant.id, pending_payment(created=start - 1000 - i)) for i in range(5)
    ]
    newer = pending_payment(created=start - 500)
    newer_attempt = await _crash_after_intent(switch_app, merchant.id, newer)
    scripted.default = UNKNOWN
    scripted.answers[newer_attempt] = APPROVED

    first = await recovery.run_once(now=start, limit=3)
    assert (first.examined, first.still_unknown) == (3, 3), first
    for attempt_id in stale[2:]:  # the three oldest
        row = await _attempt(pool, attempt_id)
        assert (row["checks"], row["next_check"], row["stuck_since"]) == (1, start + 30, None), row
    second = await recovery.run_once(now=start, limit=3)
    assert (second.examined, second.resolved) == (3, 1), second
    assert (await _attempt(pool, newer_attempt))["status"] == "done", "a newer attempt was starved"
    assert await _payment_status(pool, newer.id) == "authorized"
    assert scripted.sync_calls[newer_attempt] == 1

    # Exponential backoff: each look finds it unknown and doubles the wait. The waits are spelled
    # out, not computed with backoff_s, so a backoff that stopped growing fails here.
    now = start
    for checks, waited, wait in ((2, 30, 60), (3, 60, 120), (4, 120, 240)):
        now += waited
        assert await recovery.run_once(now=now - 1, limit=10) == RecoveryReport(), "looked again before the backoff"
        report = await recovery.run_once(now=now, limit=10)
        assert (report.examined, report.still_unknown) == (5, 5), report
        for attempt_id in stale:
            row = await _attempt(pool, attempt_id)
            assert (row["checks"], row["next_check"]) == (checks, now + wait), row
            assert row["stuck_since"] is None  # younger than stuck_after_s still
    assert backoff_s(40) == 3600  # and it is capped at an hour: a stuck intent is still looked at hourly

    # Past stuck_after_s they are marked for an operator, listed and counted; a young intent that
    # is just as unsettleable is not (yet).
    stuck_at = start + 1100
    young = await _crash_after_intent(switch_app, merchant.id, pending_payment(created=stuck_at - 100))
    report = await recovery.run_once(now=stuck_at, limit=10)
    assert (report.examined, report.still_unknown) == (6, 6), report
    for attempt_id in stale:
        assert (await _attempt(pool, attempt_id))["stuck_since"] == stuck_at
    assert (await _attempt(pool, young))["stuck_since"] is None
    listed = await list_unresolved(pool, stuck_only=True)
    assert sorted(u.id for u in listed) == sorted(stale)
    assert {(u.kind, u.status) for u in listed} == {("authorize", "unknown")}
    assert {u.id for u in await list_unresolved(pool)} == {*stale, young}
    await recovery.refresh_gauges()
    assert _sample(recovery._metrics, "switch_stuck_intents") == 5
    assert _sample(recovery._metrics, "switch_unresolved_intents") == 6
    await _assert_verified(switch_app)


@pytest.mark.parametrize("cause", ["unusable_provider_answer", "constraint_violation"])
async def test_an_intent_whose_settlement_raises_backs_off_instead_of_starving_newer_ones(
    cause, switch_app, client, merchant, scripted
):
    """Fairness holds for every intent recovery cannot settle, including one whose settlement raises."""
    pool = switch_app.state.pool
    recovery = _recovery(switch_app)
    start = int(time.time())
    taken = await client.post("/v1/payments", json=payment_body(amount=900), headers=merchant.headers)
    assert taken.status_code == 201, taken.text
    broken = []
    for i in range(2):
        payment = pending_payment(created=start - 1000 - i)
        if cause == "constraint_violation":  # settling it inserts a payment whose id is taken
            payment.id = taken.json()["id"]
        attempt_id = await _crash_after_intent(switch_app, merchant.id, payment, payment_id=new_id("pay"))
        scripted.answers[attempt_id] = GARBAGE if cause == "unusable_provider_answer" else NOT_FOUND
        broken.append(attempt_id)
    newer = pending_payment(created=start - 500)
    newer_attempt = await _crash_after_intent(switch_app, merchant.id, newer)
    scripted.answers[newer_attempt] = APPROVED
    try:
        reports = [await recovery.run_once(now=now, limit=2) for now in (start, start, start + 31)]
        assert reports[0].errors == 2, reports
        assert scripted.sync_calls[newer_attempt] == 1, (
            "an intent whose settlement raises must back off (a next_check in the future), or it stays first"
            " among the due attempts on every pass and, with limit=2, the newer attempt is never examined."
            f" Passes: {reports}; broken rows: {[dict(await _attempt(pool, a)) for a in broken]}"
        )
        assert await _payment_status(pool, newer.id) == "authorized"
    finally:
        if cause == "constraint_violation":  # these can never be settled; the drain could not close them
            await pool.execute("DELETE FROM payment_attempts WHERE id = ANY($1::text[])", broken)


# ---------------------------------------------------------------------------------- 5. idempotency record


async def test_a_retry_after_a_crash_gets_pending_then_the_resolved_payment(switch_app, client, merchant, scripted):
    """The key of a request that crashed between intent and outcome is finished by recovery, never 409 forever."""
    key = "converge-" + secrets.token_hex(6)
    raw = json.dumps(payment_body(amount=4200)).encode()
    idem = IdempotencyRequest.build(merchant.id, key, "POST /v1/payments", raw)
    payment = pending_payment(created=int(time.time()) - 600)
    attempt_id = await _crash_after_intent(switch_app, merchant.id, payment, key=idem)
    headers = {**merchant.headers, "Idempotency-Key": key, "Content-Type": "application/json"}

    async def retry() -> httpx.Response:
        return await client.post("/v1/payments", content=raw, headers=headers)

    assert (await retry()).status_code == 409  # the original request may still be in flight
    scripted.default = UNKNOWN
    recovery = _recovery(switch_app)
    now = time.time() + LATER
    assert (await recovery.run_once(now=now)).still_unknown == 1
    for _ in range(2):  # the pending answer is the stored answer, from the database and the fast store
        pending = await retry()
        assert pending.status_code == 201, pending.text
        assert pending.headers["Idempotent-Replayed"] == "true"
        shown = pending.json()
        assert (shown["id"], shown["status"], shown["pending_reason"]) == (
            payment.id,
            "pending",
            "provider_outcome_unknown",
        )
    scripted.answers[attempt_id] = APPROVED
    assert (await recovery.run_once(now=now + 30)).resolved == 1  # past the first backoff
    resolved = await retry()
    assert resolved.status_code == 201, resolved.text
    assert (resolved.json()["id"], resolved.json()["status"]) == (payment.id, "authorized"), resolved.json()
    assert resolved.json().get("pending_reason") is None
    assert await _journal(switch_app.state.pool, payment.id) == ["authorize"]
    await _assert_verified(switch_app)


# ---------------------------------------------------------------------------------- 6. operations


@pytest.mark.parametrize("kind", ["capture", "refund"])
async def test_an_open_operation_is_replayed_with_its_key_and_booked_once(kind, switch_app, client, merchant, scripted):
    """A capture or refund whose answer was lost is finished by recovery; the merchant's retry gets that answer."""
    pool = switch_app.state.pool
    await set_merchant_providers(pool, merchant.id, (SCRIPTED,))
    scripted.authorize_answer = APPROVED
    body = {"amount": 2500, "currency": "EUR", "payment_method": card()}
    body["capture"] = "manual" if kind == "capture" else "automatic"
    created = await client.post("/v1/payments", json=body, headers=merchant.headers)
    assert created.status_code == 201, created.text
    payment_id = created.json()["id"]
    path = f"/v1/payments/{payment_id}/" + ("capture" if kind == "capture" else "refunds")
    headers = {**merchant.headers, "Idempotency-Key": secrets.token_hex(8)}

    scripted.lose_answers = True  # performed, answer lost, the replay's answer lost too
    lost = await client.post(path, json={"amount": 1000}, headers=headers)
    scripted.lose_answers = False
    assert lost.status_code == 503 and lost.json()["error"]["code"] == "provider_outcome_unknown", lost.text
    operation = await pool.fetchrow(
        "SELECT id, provider_key, status FROM payment_operations WHERE payment_id = $1", payment_id
    )
    assert operation["status"] == "open"
    assert [(f, a) for f, _, a in scripted.performed] == [(kind, 1000)]

    report = await _recovery(switch_app).run_once(now=time.time() + LATER)

    assert (report.examined, report.resolved, report.errors) == (1, 1, 0), report
    assert scripted.performed == [(kind, operation["provider_key"], 1000)], "the provider acted twice"
    closed = await pool.fetchval("SELECT status FROM payment_operations WHERE id = $1", operation["id"])
    assert closed == "succeeded"
    expected = ["capture", "authorize"] if kind == "capture" else ["refund", "sale"]
    assert await _journal(pool, payment_id) == sorted(expected)
    shown = (await client.get(f"/v1/payments/{payment_id}", headers=merchant.headers)).json()
    if kind == "capture":
        assert shown["amount_captured"] == 1000, shown
    else:
        assert shown["amount_refunded"] == 1000, shown
    stored = await pool.fetchrow(
        "SELECT status_code, response FROM idempotency_keys WHERE merchant_id = $1 AND key = $2",
        merchant.id,
        headers["Idempotency-Key"],
    )
    retries = [await client.post(path, json={"amount": 1000}, headers=headers) for _ in range(2)]
    for retry in retries:
        assert retry.status_code == stored["status_code"] == (200 if kind == "capture" else 201), retry.text
        assert retry.content == bytes(stored["response"])
    if kind == "refund":
        assert retries[0].json()["id"] == operation["id"]
    assert len(scripted.performed) == 1
    assert await _recovery(switch_app).run_once(now=time.time() + 2 * LATER) == RecoveryReport()
    await _assert_verified(switch_app)
