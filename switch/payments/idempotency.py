"""Idempotency as Stripe promises it, on a fast store in front of a durable table.

``(merchant, Idempotency-Key)`` is claimed in the store (memory or Redis) before any work, so
concurrent duplicates see 409 at once. The same claim is made durable in ``idempotency_keys``
inside the request's first ledger write: if the store forgot a key (restart, eviction) the
database still refuses it. The final response is stored in both, in the same batch as the
request's ledger transaction, and replayed for the retention period.

When the fast store is unavailable (:class:`~switch.stores.redis.StoreUnavailable`), the guard
goes on without it: the durable reservation alone refuses a concurrent duplicate (409) and
replays a finished key, one database round trip later than the store would have. Nothing is
lost by skipping the store, because the store only ever holds copies of what the database has.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable

import asyncpg
import msgspec

from switch.errors import PaymentError
from switch.ledger.writer import IdempotencyFinish, IdempotencyReserve
from switch.stores.base import Store
from switch.stores.redis import StoreUnavailable

logger = logging.getLogger(__name__)

# While a request runs its claim lives this long; a crashed worker's claim expires by itself.
RUNNING_TTL_S = 120.0


class IdempotencyRequest(msgspec.Struct, frozen=True):
    """The key of a request and what identifies the request itself."""

    merchant_id: str
    key: str
    endpoint: str
    body_hash: bytes

    @classmethod
    def build(cls, merchant_id: str, key: str, endpoint: str, body: bytes) -> IdempotencyRequest:
        """Hash the body for later comparison."""
        return cls(merchant_id, key, endpoint, hashlib.sha256(body).digest())

    def reserve_row(self) -> IdempotencyReserve:
        """The durable claim, written with the request's first ledger batch."""
        return IdempotencyReserve(
            merchant_id=self.merchant_id,
            key=self.key,
            endpoint=self.endpoint,
            body_hash=self.body_hash,
            created=int(time.time()),
        )

    def finish_row(self, status_code: int, body: bytes) -> IdempotencyFinish:
        """The stored response, written with the request's final ledger batch."""
        return IdempotencyFinish(merchant_id=self.merchant_id, key=self.key, status_code=status_code, response=body)

    @property
    def store_key(self) -> str:
        """Key of this request's record in the fast store."""
        return f"idem:{self.merchant_id}:{self.key}"


class Replay(msgspec.Struct, frozen=True):
    """A stored response to send again."""

    status_code: int
    body: bytes


class _Record(msgspec.Struct, array_like=True):
    endpoint: str
    body_hash: bytes
    status_code: int = 0
    body: bytes = b""


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Record).decode


def _judge(request: IdempotencyRequest, endpoint: str, body_hash: bytes, status_code: int, body: bytes) -> Replay:
    if endpoint != request.endpoint or body_hash != request.body_hash:
        raise PaymentError(
            "idempotency_mismatch",
            "idempotency_key_reused",
            "this Idempotency-Key was already used with another request body or endpoint",
            None,
        )
    if status_code == 0:
        raise PaymentError(
            "conflict",
            "idempotency_key_in_use",
            "a request with this Idempotency-Key is still being processed; retry later",
            None,
        )
    return Replay(status_code, body)


async def _quietly(call: Awaitable[object]) -> None:
    """Run a store write whose failure only costs speed (the durable record is authoritative)."""
    with contextlib.suppress(StoreUnavailable):
        await call


class IdempotencyGuard:
    """Claims, replays and completes idempotent requests."""

    def __init__(self, store: Store, pool: asyncpg.Pool, ttl_s: float) -> None:
        """Create the guard.

        Args:
            store: Where claims and responses are kept for fast access.
            pool: Read pool, to consult the durable table after a store miss was refused.
            ttl_s: How long finished responses are replayed.
        """
        self._store = store
        self._pool = pool
        self._ttl_s = ttl_s
        self.fallbacks = 0

    async def begin(self, request: IdempotencyRequest) -> Replay | None:
        """Claim the key; return a stored response to replay instead, if there is one.

        Raises:
            PaymentError: 409 ``idempotency_key_in_use`` or 422 ``idempotency_key_reused``.
        """
        running = _encode(_Record(request.endpoint, request.body_hash))
        for _ in range(3):
            try:
                if await self._store.claim(request.store_key, running, RUNNING_TTL_S):
                    return None
                raw = await self._store.get(request.store_key)
            except StoreUnavailable:
                # The request's first ledger batch reserves the key durably; a duplicate is
                # refused (or replayed) there instead.
                self.fallbacks += 1
                return None
            if raw is None:
                continue  # expired between the two calls; claim again
            record = _decode(raw)
            if record.status_code == 0 and record.endpoint == request.endpoint:
                # The store says "running"; if Redis was down when that request finished, its
                # answer reached only the database. The durable record decides.
                return await self._durable_or_running(request, record)
            return _judge(request, record.endpoint, record.body_hash, record.status_code, record.body)
        raise PaymentError("conflict", "idempotency_key_in_use", "the Idempotency-Key is contended; retry later")

    async def _durable_or_running(self, request: IdempotencyRequest, record: _Record) -> Replay:
        row = await self._pool.fetchrow(
            "SELECT endpoint, body_hash, status_code, response FROM idempotency_keys"
            " WHERE merchant_id = $1 AND key = $2",
            request.merchant_id,
            request.key,
        )
        if row is None or row["status_code"] == 0:
            return _judge(request, record.endpoint, record.body_hash, record.status_code, record.body)
        return await self.durable_replay(request)

    async def durable_replay(self, request: IdempotencyRequest) -> Replay:
        """After the database refused our claim: replay its response, or refuse like ``begin``."""
        await _quietly(self._store.delete(request.store_key))
        row = await self._pool.fetchrow(
            "SELECT endpoint, body_hash, status_code, response FROM idempotency_keys"
            " WHERE merchant_id = $1 AND key = $2",
            request.merchant_id,
            request.key,
        )
        if row is None:
            raise PaymentError("conflict", "idempotency_key_in_use", "the Idempotency-Key is contended; retry later")
        replay = _judge(
            request, row["endpoint"], bytes(row["body_hash"]), row["status_code"], bytes(row["response"] or b"")
        )
        await _quietly(
            self._store.put(
                request.store_key,
                _encode(_Record(request.endpoint, request.body_hash, replay.status_code, replay.body)),
                self._ttl_s,
            )
        )
        return replay

    async def recorded(self, request: IdempotencyRequest) -> bool:
        """Whether the database holds a reservation or an answer for this key."""
        found = await self._pool.fetchval(
            "SELECT 1 FROM idempotency_keys WHERE merchant_id = $1 AND key = $2", request.merchant_id, request.key
        )
        return found is not None

    async def complete(self, request: IdempotencyRequest, status_code: int, body: bytes) -> None:
        """Remember the final response (already committed to the database) in the store."""
        record = _Record(request.endpoint, request.body_hash, status_code, body)
        await _quietly(self._store.put(request.store_key, _encode(record), self._ttl_s))

    async def abandon(self, request: IdempotencyRequest) -> None:
        """Drop the claim of a request that ended without a stored result."""
        await _quietly(self._store.delete(request.store_key))

    async def forget(self, request: IdempotencyRequest) -> None:
        """Drop the fast copy so the next request reads the durable (just updated) record."""
        await _quietly(self._store.delete(request.store_key))
