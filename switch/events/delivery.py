"""The delivery worker: claims due deliveries from the outbox and POSTs them, signed, off the request path.

- **Multi-worker safe.** Rows are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease, so two
  workers never send one delivery at once, and a worker that dies leaves its claims to others
  once the lease has run out.
- **In order per payment.** A delivery is due only when no earlier delivery of the same payment
  to the same endpoint is still pending, so a payment's events arrive in the order they were
  written; one claim therefore holds at most one delivery per payment and endpoint.
- **Isolated per endpoint.** Each endpoint gets its own task with bounded concurrency and a
  deadline per delivery; while an endpoint's task is busy this worker claims nothing more for
  it, so a slow or dead endpoint never holds up the others.
- **Retried with backoff.** A failed delivery waits ``min(base * 2**attempts, cap)``, with
  jitter, and is given up after ``give_up_s`` (3 days); ``POST /v1/events/{id}/redeliver``
  queues it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

import aiohttp
import asyncpg
import msgspec

from switch.events.signing import HEADER, sign

logger = logging.getLogger(__name__)

GIVE_UP_S = 3 * 86_400

_CLAIM_SQL = """
WITH due AS (
    SELECT d.endpoint_id, d.event_id FROM event_deliveries AS d
    WHERE d.status = 'pending' AND d.next_attempt <= $1 AND d.lease_until < $1
      AND NOT (d.endpoint_id = ANY($3::text[]))
      AND NOT EXISTS (
          SELECT 1 FROM event_deliveries AS o
          WHERE o.endpoint_id = d.endpoint_id AND o.ordering_key = d.ordering_key
            AND o.status = 'pending' AND o.seq < d.seq)
    ORDER BY d.seq
    LIMIT $2
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE event_deliveries AS d SET lease_until = $1 + $4
FROM due, events AS e, webhook_endpoints AS w
WHERE d.endpoint_id = due.endpoint_id AND d.event_id = due.event_id AND e.id = d.event_id AND w.id = d.endpoint_id
RETURNING d.endpoint_id, d.event_id, d.attempts, d.created, d.seq, e.body::text AS body, w.url, w.secret
"""

_DELIVERED_SQL = """
UPDATE event_deliveries SET status = 'delivered', delivered_at = $3, attempts = attempts + 1, last_status = $4,
    last_error = NULL, lease_until = 0
WHERE endpoint_id = $1 AND event_id = $2 AND status = 'pending'
"""

_FAILED_SQL = """
UPDATE event_deliveries SET status = $3, attempts = attempts + 1, next_attempt = $4, last_status = $5,
    last_error = $6, lease_until = 0
WHERE endpoint_id = $1 AND event_id = $2 AND status = 'pending'
"""


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One claimed delivery."""

    endpoint_id: str
    event_id: str
    attempts: int
    created: int
    seq: int
    body: bytes
    url: str
    secret: str


class DeliveryWorker:
    """Delivers outbox events to merchant endpoints; run one per switch worker."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        deadline_s: float = 10.0,
        per_endpoint_concurrency: int = 4,
        per_endpoint_batch: int = 20,
        claim_limit: int = 200,
        backoff_base_s: float = 10.0,
        backoff_cap_s: float = 3_600.0,
        give_up_s: int = GIVE_UP_S,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """Create the worker.

        Args:
            pool: Database pool.
            deadline_s: Most time one delivery may take (connect, send, answer).
            per_endpoint_concurrency: Deliveries in flight to one endpoint at once.
            per_endpoint_batch: Most deliveries claimed for one endpoint at once.
            claim_limit: Most deliveries claimed per pass.
            backoff_base_s: Wait after the first failure; doubles with each.
            backoff_cap_s: Longest wait between two tries.
            give_up_s: After this long since it was queued, a delivery is marked failed.
            clock: Unix time (tests inject one).
            jitter: Uniform [0, 1) draws for the backoff's jitter.
        """
        self._pool = pool
        self._deadline_s = deadline_s
        self._concurrency = per_endpoint_concurrency
        self._per_endpoint_batch = per_endpoint_batch
        self._claim_limit = claim_limit
        self._base_s = backoff_base_s
        self._cap_s = backoff_cap_s
        self._give_up_s = give_up_s
        self._clock = clock
        self._jitter = jitter
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.delivered = 0
        self.failed = 0

    @property
    def lease_s(self) -> int:
        """How long a claim is held: every claimed delivery of one endpoint, one slot at a time, and a margin."""
        rounds = -(-self._per_endpoint_batch // self._concurrency)
        return int(self._deadline_s * rounds) + 30

    def backoff_s(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed ones: exponential, half of it jittered."""
        delay = min(self._base_s * 2 ** min(attempts, 30), self._cap_s)
        return delay / 2 + delay / 2 * self._jitter()

    async def close(self) -> None:
        """Cancel endpoint tasks and close the HTTP session."""
        for task in list(self._busy.values()):
            task.cancel()
        for task in list(self._busy.values()):
            with contextlib.suppress(BaseException):
                await task
        self._busy.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run_once(self, *, now: float | None = None) -> int:
        """Claim what is due and deliver it, waiting for every delivery; return how many were tried."""
        tasks, claimed = await self._dispatch(now)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return claimed

    async def run_forever(self, interval_s: float = 1.0) -> None:
        """Claim and dispatch every ``interval_s``; endpoint tasks run on without being awaited."""
        while True:
            try:
                await self._dispatch(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed pass is retried next interval; never end the loop
                logger.warning("event delivery pass failed: %s", type(exc).__name__)
            await asyncio.sleep(interval_s)

    async def _dispatch(self, now: float | None) -> tuple[list[asyncio.Task[None]], int]:
        now_s = int(self._clock() if now is None else now)
        busy = [endpoint for endpoint, task in self._busy.items() if not task.done()]
        rows = await self._pool.fetch(_CLAIM_SQL, now_s, self._claim_limit, busy, self.lease_s)
        by_endpoint: dict[str, list[Delivery]] = {}
        release: list[tuple[str, str]] = []
        for row in rows:
            delivery = Delivery(
                endpoint_id=row["endpoint_id"],
                event_id=row["event_id"],
                attempts=row["attempts"],
                created=row["created"],
                seq=row["seq"],
                body=row["body"].encode(),
                url=row["url"],
                secret=row["secret"],
            )
            batch = by_endpoint.setdefault(delivery.endpoint_id, [])
            if len(batch) < self._per_endpoint_batch:
                batch.append(delivery)
            else:
                release.append((delivery.endpoint_id, delivery.event_id))
        if release:
            await self._pool.execute(
                "UPDATE event_deliveries AS d SET lease_until = 0 FROM unnest($1::text[], $2::text[]) AS u(e, v)"
                " WHERE d.endpoint_id = u.e AND d.event_id = u.v",
                [r[0] for r in release],
                [r[1] for r in release],
            )
        tasks = []
        for endpoint_id, batch in by_endpoint.items():
            task = asyncio.create_task(self._deliver_endpoint(batch, now_s), name=f"deliver-{endpoint_id}")
            self._busy[endpoint_id] = task
            task.add_done_callback(lambda done, key=endpoint_id: self._forget(key, done))
            tasks.append(task)
        return tasks, sum(len(batch) for batch in by_endpoint.values())

    def _forget(self, endpoint_id: str, task: asyncio.Task[None]) -> None:
        if self._busy.get(endpoint_id) is task:
            del self._busy[endpoint_id]

    async def _deliver_endpoint(self, batch: list[Delivery], now_s: int) -> None:
        slots = asyncio.Semaphore(self._concurrency)

        async def one(delivery: Delivery) -> None:
            async with slots:
                await self._deliver(delivery, now_s)

        await asyncio.gather(*(one(delivery) for delivery in batch), return_exceptions=True)

    async def _deliver(self, delivery: Delivery, now_s: int) -> None:
        status: int | None = None
        error: str | None = None
        try:
            status = await self._post(delivery)
        except TimeoutError:
            error = "timeout"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = type(exc).__name__
        finished = max(now_s, int(self._clock()))
        if status is not None and 200 <= status < 300:
            self.delivered += 1
            await self._pool.execute(_DELIVERED_SQL, delivery.endpoint_id, delivery.event_id, finished, status)
            return
        self.failed += 1
        error = error or f"http_{status}"
        gave_up = now_s - delivery.created >= self._give_up_s
        await self._pool.execute(
            _FAILED_SQL,
            delivery.endpoint_id,
            delivery.event_id,
            "failed" if gave_up else "pending",
            now_s + int(self.backoff_s(delivery.attempts)),
            status,
            error,
        )

    async def _post(self, delivery: Delivery) -> int:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._deadline_s),
                connector=aiohttp.TCPConnector(limit_per_host=self._concurrency),
            )
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "payment-switch-webhooks/1",
            HEADER: sign(delivery.secret, delivery.body, int(self._clock())),
            "Switch-Event-Id": delivery.event_id,
        }
        async with asyncio.timeout(self._deadline_s):
            async with self._session.post(
                delivery.url, data=delivery.body, headers=headers, allow_redirects=False
            ) as response:
                # The answer's body is not needed; reading a little lets the connection be reused.
                await response.content.read(1024)
                return response.status
