"""Versioned per-merchant documents (routing config, risk rules), cached in every worker.

Every PUT keeps a new version in PostgreSQL; one version is active and a newer one may roll out
to a percentage of traffic first (the canary); a rollback makes any earlier version active again
without creating a new one. Each worker keeps the compiled head of the merchants it serves in
memory, so the request path never queries the database for it. A change is published on a Redis
channel and every worker drops its copy, which makes a PUT live everywhere well within a second;
with one worker and no Redis the change is dropped locally. A worker whose subscription broke
forgets everything on reconnecting, because it may have missed messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

import asyncpg
import msgspec
import redis.asyncio as aioredis

logger = logging.getLogger(__name__)

T = TypeVar("T")

CHANNEL = "switch:documents"


class StoredDocument(msgspec.Struct, frozen=True):
    """One kept version."""

    version: int
    body: dict[str, object]
    created: int


class Head(msgspec.Struct, Generic[T], frozen=True):
    """What a worker routes with: the compiled active version, and the canary if one rolls out.

    ``active`` is None for a merchant that never stored a document (the caller's implied default).
    """

    active: T | None
    active_version: int
    canary: T | None = None
    canary_version: int | None = None
    canary_percent: int = 0


class UnknownVersion(LookupError):
    """The merchant has no such version."""


_SQL_HEAD = """
SELECT h.active_version, a.body::text AS active_body, h.canary_version, h.canary_percent,
       c.body::text AS canary_body
FROM merchant_document_heads h
JOIN merchant_documents a
  ON a.merchant_id = h.merchant_id AND a.kind = h.kind AND a.version = h.active_version
LEFT JOIN merchant_documents c
  ON c.merchant_id = h.merchant_id AND c.kind = h.kind AND c.version = h.canary_version
WHERE h.merchant_id = $1 AND h.kind = $2
"""


class VersionedDocuments(Generic[T]):
    """Store, version and cache one kind of document for every merchant."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        kind: str,
        compile_document: Callable[[int, dict[str, object]], T],
        *,
        redis_url: str = "",
        max_cached: int = 10_000,
    ) -> None:
        """Configure the store.

        Args:
            pool: The database pool.
            kind: ``routing`` or ``risk``.
            compile_document: Turns a stored version's body into what the request path uses; it
                is called once per version per worker, not per request.
            redis_url: Where changes are published to the other workers; empty with one worker.
            max_cached: Merchants' heads kept in memory (least recently used go first).
        """
        self._pool = pool
        self._kind = kind
        self._compile = compile_document
        self._redis_url = redis_url
        self._max_cached = max_cached
        self._cache: OrderedDict[str, Head[T]] = OrderedDict()
        # Bumped on every invalidation, so a load that raced with one is not cached stale.
        self._generation = 0
        self._listener: asyncio.Task[None] | None = None
        self._publisher: aioredis.Redis | None = None
        self.subscribed = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Subscribe to other workers' changes (when Redis is configured)."""
        if self._redis_url:
            self._publisher = aioredis.Redis.from_url(self._redis_url)
            self._listener = asyncio.create_task(self._listen(), name=f"{self._kind}-documents-listener")

    async def stop(self) -> None:
        """Stop listening and close the connections."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._publisher is not None:
            await self._publisher.aclose()

    async def _listen(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self._redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    # Anything published while we were not subscribed is lost: start afresh.
                    self._forget_all()
                    self.subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        kind, _, merchant_id = bytes(message["data"]).decode().partition(":")
                        if kind == self._kind:
                            self._forget(merchant_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                self._forget_all()
                logger.warning("%s document subscription lost (%s); reconnecting", self._kind, type(exc).__name__)
                await asyncio.sleep(0.5)
            finally:
                await client.aclose()

    def _forget(self, merchant_id: str) -> None:
        self._generation += 1
        self._cache.pop(merchant_id, None)

    def _forget_all(self) -> None:
        self._generation += 1
        self._cache.clear()

    async def _announce(self, merchant_id: str) -> None:
        self._forget(merchant_id)
        if self._publisher is None:
            return
        try:
            await self._publisher.publish(CHANNEL, f"{self._kind}:{merchant_id}")
        except Exception as exc:
            # The change is committed; other workers pick it up when their subscription recovers.
            logger.warning("could not publish a %s change (%s)", self._kind, type(exc).__name__)

    # ------------------------------------------------------------------ reads

    async def head(self, merchant_id: str) -> Head[T]:
        """Return the merchant's compiled head, from memory when this worker has it."""
        cached = self._cache.get(merchant_id)
        if cached is not None:
            self._cache.move_to_end(merchant_id)
            return cached
        generation = self._generation
        row = await self._pool.fetchrow(_SQL_HEAD, merchant_id, self._kind)
        if row is None:
            head: Head[T] = Head(active=None, active_version=0)
        else:
            head = Head(
                active=self._compile(row["active_version"], json.loads(row["active_body"])),
                active_version=row["active_version"],
                canary=(
                    self._compile(row["canary_version"], json.loads(row["canary_body"]))
                    if row["canary_version"] is not None
                    else None
                ),
                canary_version=row["canary_version"],
                canary_percent=row["canary_percent"] or 0,
            )
        if generation == self._generation:
            self._cache[merchant_id] = head
            if len(self._cache) > self._max_cached:
                self._cache.popitem(last=False)
        return head

    async def versions(self, merchant_id: str) -> list[StoredDocument]:
        """Every kept version, newest first."""
        rows = await self._pool.fetch(
            "SELECT version, body::text AS body, created FROM merchant_documents"
            " WHERE merchant_id = $1 AND kind = $2 ORDER BY version DESC",
            merchant_id,
            self._kind,
        )
        return [StoredDocument(row["version"], json.loads(row["body"]), row["created"]) for row in rows]

    async def stored(self, merchant_id: str, version: int) -> StoredDocument:
        """One kept version.

        Raises:
            UnknownVersion: When the merchant has no such version.
        """
        row = await self._pool.fetchrow(
            "SELECT version, body::text AS body, created FROM merchant_documents"
            " WHERE merchant_id = $1 AND kind = $2 AND version = $3",
            merchant_id,
            self._kind,
            version,
        )
        if row is None:
            raise UnknownVersion(version)
        return StoredDocument(row["version"], json.loads(row["body"]), row["created"])

    # ------------------------------------------------------------------ writes

    async def put(self, merchant_id: str, body: dict[str, object], canary_percent: int | None = None) -> int:
        """Keep ``body`` as the next version and make it active, or the canary at ``canary_percent``.

        Returns:
            The new version number.
        """
        now = int(time.time())
        async with self._pool.acquire() as connection, connection.transaction():
            # Serializes writers of this merchant's documents, so versions never collide.
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1 || ':' || $2))", self._kind, merchant_id)
            version = await connection.fetchval(
                "SELECT COALESCE(max(version), 0) + 1 FROM merchant_documents WHERE merchant_id = $1 AND kind = $2",
                merchant_id,
                self._kind,
            )
            await connection.execute(
                "INSERT INTO merchant_documents (merchant_id, kind, version, body, created)"
                " VALUES ($1, $2, $3, $4::jsonb, $5)",
                merchant_id,
                self._kind,
                version,
                json.dumps(body),
                now,
            )
            if canary_percent is None:
                await connection.execute(
                    "INSERT INTO merchant_document_heads (merchant_id, kind, active_version, updated)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (merchant_id, kind) DO UPDATE"
                    " SET active_version = $3, canary_version = NULL, canary_percent = NULL, updated = $4",
                    merchant_id,
                    self._kind,
                    version,
                    now,
                )
            else:
                updated = await connection.execute(
                    "UPDATE merchant_document_heads SET canary_version = $3, canary_percent = $4, updated = $5"
                    " WHERE merchant_id = $1 AND kind = $2",
                    merchant_id,
                    self._kind,
                    version,
                    canary_percent,
                    now,
                )
                if updated == "UPDATE 0":
                    # Nothing to compare against yet: the first version is simply active.
                    await connection.execute(
                        "INSERT INTO merchant_document_heads (merchant_id, kind, active_version, updated)"
                        " VALUES ($1, $2, $3, $4)",
                        merchant_id,
                        self._kind,
                        version,
                        now,
                    )
        await self._announce(merchant_id)
        return int(version)

    async def activate(self, merchant_id: str, version: int) -> StoredDocument:
        """Make a kept version active (a rollback, or promoting the canary); any canary stops.

        Raises:
            UnknownVersion: When the merchant has no such version.
        """
        document = await self.stored(merchant_id, version)
        await self._pool.execute(
            "UPDATE merchant_document_heads SET active_version = $3, canary_version = NULL, canary_percent = NULL,"
            " updated = $4 WHERE merchant_id = $1 AND kind = $2",
            merchant_id,
            self._kind,
            version,
            int(time.time()),
        )
        await self._announce(merchant_id)
        return document
