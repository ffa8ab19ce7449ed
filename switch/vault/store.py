"""Data keys: created, wrapped and kept in ``vault_keys``; unwrapped only in a worker's memory.

One data key is active (it seals new cards); older ones stay to open what they sealed until
``switch vault rotate-key`` has re-sealed it. Workers re-read which key is active every
``refresh_s`` seconds, so a rotation reaches every worker without a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import asyncpg

from switch.ids import new_id
from switch.vault.envelope import new_key, unwrap, wrap
from switch.vault.keys import MasterKeyRing

logger = logging.getLogger(__name__)


class VaultKeyMissing(LookupError):
    """A data key's master key is not in this worker's ring (configure it as a previous key)."""


async def create_data_key(connection: asyncpg.Connection | asyncpg.Pool, ring: MasterKeyRing, *, active: bool) -> str:
    """Create and store a new data key wrapped under the current master key; return its id."""
    key_id = new_id("dk")
    await connection.execute(
        "INSERT INTO vault_keys (id, master_key_id, wrapped, active, created) VALUES ($1, $2, $3, $4, $5)",
        key_id,
        ring.current_id,
        wrap(ring.current, new_key(), key_id),
        active,
        int(time.time()),
    )
    return key_id


def unwrap_row(ring: MasterKeyRing, row: asyncpg.Record) -> bytes:
    """Unwrap a ``vault_keys`` row with the ring's matching master key.

    Raises:
        VaultKeyMissing: When the ring lacks the master key that wrapped it.
    """
    master = ring.by_id(row["master_key_id"])
    if master is None:
        raise VaultKeyMissing(f"data key {row['id']} is wrapped by master key {row['master_key_id']}, not configured")
    return unwrap(master, bytes(row["wrapped"]), row["id"])


class DataKeyStore:
    """Unwrapped data keys of one worker, loaded on demand from ``vault_keys``."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        ring: MasterKeyRing,
        *,
        refresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create the store; call :meth:`start` before use."""
        self._pool = pool
        self._ring = ring
        self._refresh_s = refresh_s
        self._clock = clock
        self._keys: dict[str, bytes] = {}
        self._active: str | None = None
        self._active_read = float("-inf")

    @property
    def pool(self) -> asyncpg.Pool:
        """The read pool the vault reads sealed cards with."""
        return self._pool

    @property
    def ring(self) -> MasterKeyRing:
        """The master keys of this worker."""
        return self._ring

    async def start(self) -> None:
        """Make sure one active data key exists (the first start creates it) and load it.

        A worker whose master keys cannot unwrap the active key starts anyway, without saved
        cards (payments by card number go on; ``card_token`` payments are refused as
        unavailable), and says so in its log: payments must not stop because of the vault.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            # One creator at a time across workers: the partial unique index refuses a second.
            await connection.execute("LOCK TABLE vault_keys IN SHARE ROW EXCLUSIVE MODE")
            exists = await connection.fetchval("SELECT 1 FROM vault_keys WHERE active")
            if not exists:
                await create_data_key(connection, self._ring, active=True)
        try:
            await self._read_active()
        except VaultKeyMissing as exc:
            self._active_read = self._clock()
            logger.error(
                "card vault unavailable on this worker (%s): cards are not saved and card_token payments are"
                " refused until SWITCH_VAULT_MASTER_KEY (or a previous key) names the master key that wraps it",
                exc,
            )

    @property
    def available(self) -> bool:
        """True when this worker can seal new cards."""
        return self._active is not None

    async def active(self) -> tuple[str, bytes]:
        """Return the id and key that seal new cards (re-read every ``refresh_s``)."""
        if self._active is None or self._clock() - self._active_read >= self._refresh_s:
            try:
                await self._read_active()
            except VaultKeyMissing:
                self._active_read = self._clock()
                if self._active is None:
                    raise
                # A key this worker cannot unwrap became active: keep sealing under the previous
                # one (still readable by every worker that could read it) and say so.
                logger.error("the active vault data key is wrapped by a master key this worker lacks")
        if self._active is None:
            raise VaultKeyMissing("this worker cannot unwrap the active data key")
        return self._active, self._keys[self._active]

    async def key(self, key_id: str) -> bytes:
        """Return the data key ``key_id``, unwrapping it on first use.

        Raises:
            VaultKeyMissing: When it does not exist or its master key is not configured.
        """
        found = self._keys.get(key_id)
        if found is not None:
            return found
        row = await self._pool.fetchrow("SELECT id, master_key_id, wrapped FROM vault_keys WHERE id = $1", key_id)
        if row is None:
            raise VaultKeyMissing(f"no data key {key_id}")
        self._keys[key_id] = unwrap_row(self._ring, row)
        return self._keys[key_id]

    async def _read_active(self) -> None:
        row = await self._pool.fetchrow("SELECT id, master_key_id, wrapped FROM vault_keys WHERE active")
        if row is None:
            raise VaultKeyMissing("no active data key; start the switch once to create one")
        if row["id"] not in self._keys:
            self._keys[row["id"]] = unwrap_row(self._ring, row)
        self._active = row["id"]
        self._active_read = self._clock()
