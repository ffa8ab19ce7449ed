"""Retention of stored idempotent responses: replayed for the configured period, then deleted.

Without it ``idempotency_keys`` would grow with every request forever. Keys still in flight
(``status_code = 0``) are kept whatever their age: recovery finishes them.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

logger = logging.getLogger(__name__)

_PURGE = """
DELETE FROM idempotency_keys
WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM idempotency_keys WHERE created < $1 AND status_code <> 0 LIMIT $2
))
"""


async def purge_expired_keys(pool: asyncpg.Pool, ttl_s: float, *, now: float | None = None, chunk: int = 5_000) -> int:
    """Delete finished idempotency records older than ``ttl_s``, in chunks; return how many."""
    cutoff = int((time.time() if now is None else now) - ttl_s)
    removed = 0
    while True:
        status = await pool.execute(_PURGE, cutoff, chunk)
        count = int(status.rsplit(" ", 1)[-1])
        removed += count
        if count < chunk:
            return removed


async def purge_forever(pool: asyncpg.Pool, ttl_s: float, interval_s: float = 3_600.0) -> None:
    """Purge now and then every ``interval_s`` seconds until cancelled."""
    while True:
        try:
            removed = await purge_expired_keys(pool, ttl_s)
            if removed:
                logger.info("retention: removed %d expired idempotency records", removed)
        except (OSError, asyncpg.PostgresError) as exc:
            logger.warning("retention pass failed: %s", type(exc).__name__)
        await asyncio.sleep(interval_s)
