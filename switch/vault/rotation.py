"""``switch vault rotate-key``: a new data key, every data key re-wrapped, every card re-sealed, online.

Nothing is locked for longer than one small batch of cards, and every row changes in one update
(key id, nonce and ciphertext together), so a payment reading a card during the rotation reads
either the old sealed form or the new one, and both open: old data keys are kept. Workers pick
the new active key up within their refresh interval; cards they seal meanwhile under the old key
stay readable and are re-sealed by the next rotation.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import msgspec

from switch.vault.cards import associated_data
from switch.vault.envelope import open_sealed, seal, wrap
from switch.vault.keys import MasterKeyRing
from switch.vault.store import create_data_key, unwrap_row


class RotationReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a rotation did."""

    new_key_id: str
    rewrapped: int
    resealed: int
    remaining: int


_RESEAL_BATCH_SQL = """
SELECT token, merchant_id, key_id, nonce, ciphertext FROM vault_cards
WHERE key_id <> $1 ORDER BY token LIMIT $2 FOR UPDATE SKIP LOCKED
"""

_RESEAL_UPDATE_SQL = """
UPDATE vault_cards AS c SET key_id = $1, nonce = u.n, ciphertext = u.c
FROM unnest($2::text[], $3::bytea[], $4::bytea[]) AS u(t, n, c)
WHERE c.token = u.t
"""


async def rewrap_keys(connection: asyncpg.Connection, ring: MasterKeyRing) -> int:
    """Re-wrap every data key not yet under the ring's current master key; return how many."""
    rows = await connection.fetch(
        "SELECT id, master_key_id, wrapped FROM vault_keys WHERE master_key_id <> $1", ring.current_id
    )
    for row in rows:
        key = unwrap_row(ring, row)
        await connection.execute(
            "UPDATE vault_keys SET master_key_id = $2, wrapped = $3 WHERE id = $1 AND master_key_id = $4",
            row["id"],
            ring.current_id,
            wrap(ring.current, key, row["id"]),
            row["master_key_id"],
        )
    return len(rows)


async def rotate_key(
    connection: asyncpg.Connection,
    ring: MasterKeyRing,
    *,
    batch_size: int = 500,
    on_batch: Callable[[int], None] | None = None,
) -> RotationReport:
    """Activate a new data key, re-wrap all keys under the current master key, re-seal all cards.

    Args:
        connection: A dedicated connection (not the app's pool).
        ring: Master keys: the current one wraps, previous ones unwrap keys not yet re-wrapped.
        batch_size: Cards re-sealed per transaction.
        on_batch: Called with the number of cards of each committed batch (progress).

    Raises:
        VaultKeyMissing: When a data key's master key is not in ``ring``.
    """
    async with connection.transaction():
        # Serialized with other rotations and first starts: exactly one active key at any moment.
        await connection.execute("LOCK TABLE vault_keys IN SHARE ROW EXCLUSIVE MODE")
        await connection.execute("UPDATE vault_keys SET active = false WHERE active")
        new_key_id = await create_data_key(connection, ring, active=True)
    rewrapped = await rewrap_keys(connection, ring)
    keys = {
        row["id"]: unwrap_row(ring, row)
        for row in await connection.fetch("SELECT id, master_key_id, wrapped FROM vault_keys")
    }
    new_key = keys[new_key_id]
    resealed = 0
    while True:
        async with connection.transaction():
            rows = await connection.fetch(_RESEAL_BATCH_SQL, new_key_id, batch_size)
            if not rows:
                break
            tokens, nonces, ciphertexts = [], [], []
            for row in rows:
                bound = associated_data(row["token"], row["merchant_id"])
                plaintext = open_sealed(keys[row["key_id"]], bytes(row["nonce"]), bytes(row["ciphertext"]), bound)
                nonce, ciphertext = seal(new_key, plaintext, bound)
                del plaintext
                tokens.append(row["token"])
                nonces.append(nonce)
                ciphertexts.append(ciphertext)
            await connection.execute(_RESEAL_UPDATE_SQL, new_key_id, tokens, nonces, ciphertexts)
        resealed += len(rows)
        if on_batch is not None:
            on_batch(len(rows))
    remaining = await connection.fetchval("SELECT count(*) FROM vault_cards WHERE key_id <> $1", new_key_id)
    return RotationReport(new_key_id=new_key_id, rewrapped=rewrapped, resealed=resealed, remaining=remaining)
