"""Merchants, their modes and their secret keys: only a SHA-256 of each key is stored.

Keys are 192-bit random strings, so an unsalted hash is safe against guessing; lookups go by
hash, which also means comparing key material never depends on how much of a guess matched.

A merchant has two scopes: test (its own row, ``sk_test_`` keys) and live (a second row created
with its first live key, ``sk_live_`` keys). Everything the switch stores is filtered by the
scope id, so the two modes never see or touch each other's payments, saved cards or events.
Each scope may hold several keys at once: rotation issues a new one while the old ones keep
working until they are revoked or reach their expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import asyncpg
import msgspec

from switch.ids import new_id

KEY_PREFIX = "sk_test_"
LIVE_KEY_PREFIX = "sk_live_"
Mode = Literal["test", "live"]
_PREFIX_OF: dict[str, str] = {"test": KEY_PREFIX, "live": LIVE_KEY_PREFIX}
# Shown prefix: the mode and eight random characters, enough to tell keys apart in a listing.
_SHOWN = 8


class Merchant(msgspec.Struct, frozen=True):
    """An authenticated merchant scope (``id`` is the scope: test and live differ)."""

    id: str
    name: str
    providers: tuple[str, ...]
    livemode: bool = False


class MerchantExists(ValueError):
    """A merchant with that name already exists."""


class MerchantKey(msgspec.Struct, frozen=True, kw_only=True):
    """A key's public facts (never the key or its hash)."""

    id: str
    merchant_id: str
    mode: str
    prefix: str
    created: int
    expires_at: int | None
    revoked_at: int | None


def hash_key(secret_key: str) -> bytes:
    """Return the stored form of a secret key."""
    return hashlib.sha256(secret_key.encode("utf-8")).digest()


def new_secret_key(mode: Mode = "test") -> str:
    """Return a fresh secret key (``sk_test_`` or ``sk_live_`` + 32 URL-safe characters)."""
    return _PREFIX_OF[mode] + secrets.token_urlsafe(24)


def _shown_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + _SHOWN]


async def _insert_key(
    connection: asyncpg.Connection | asyncpg.Pool, scope_id: str, key: str, now: int, expires_at: int | None = None
) -> str:
    key_id = new_id("key")
    await connection.execute(
        "INSERT INTO merchant_keys (id, merchant_id, key_hash, key_prefix, created, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        key_id,
        scope_id,
        hash_key(key),
        _shown_prefix(key),
        now,
        expires_at,
    )
    return key_id


async def create_merchant(
    connection: asyncpg.Connection | asyncpg.Pool, name: str, providers: tuple[str, ...] = ("sandbox",)
) -> tuple[Merchant, str]:
    """Create a merchant and return it with its test secret key (shown once, stored as a hash).

    Raises:
        ValueError: When the name is empty or too long.
        MerchantExists: When the name is taken.
    """
    name = name.strip()
    if not name or len(name) > 200:
        raise ValueError("merchant name must be 1 to 200 characters")
    if await connection.fetchval("SELECT 1 FROM merchants WHERE name = $1", name):
        raise MerchantExists(f"a merchant named {name!r} already exists")
    key = new_secret_key()
    merchant = Merchant(new_id("mer"), name, providers)
    now = int(time.time())
    await connection.execute(
        "INSERT INTO merchants (id, name, key_hash, key_prefix, providers, created) VALUES ($1, $2, $3, $4, $5, $6)",
        merchant.id,
        name,
        hash_key(key),
        _shown_prefix(key),
        list(providers),
        now,
    )
    await _insert_key(connection, merchant.id, key, now)
    return merchant, key


async def list_merchants(connection: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    """Return every merchant's id, name, key prefix, providers and creation time, oldest first."""
    return await connection.fetch(
        "SELECT id, name, key_prefix, providers, created FROM merchants WHERE NOT livemode ORDER BY created, id"
    )


async def _account(connection: asyncpg.Connection | asyncpg.Pool, merchant: str) -> asyncpg.Record:
    row = await connection.fetchrow(
        "SELECT id, name, providers, created FROM merchants WHERE (id = $1 OR name = $1) AND NOT livemode", merchant
    )
    if row is None:
        raise LookupError(f"no merchant with id or name {merchant!r}")
    return row


async def _scope(connection: asyncpg.Connection, account: asyncpg.Record, mode: Mode, now: int) -> str:
    if mode == "test":
        return str(account["id"])
    scope_id = f"{account['id']}_live"
    # The live scope is a row of its own, so that every merchant_id filter isolates the modes.
    await connection.execute(
        "INSERT INTO merchants (id, name, key_prefix, providers, created, livemode, account_id)"
        " VALUES ($1, $2, $3, $4, $5, true, $6) ON CONFLICT DO NOTHING",
        scope_id,
        account["name"],
        LIVE_KEY_PREFIX,
        account["providers"],
        now,
        account["id"],
    )
    return scope_id


async def rotate_key(
    connection: asyncpg.Connection,
    merchant: str,
    *,
    mode: Mode = "test",
    expires_in_s: int | None = None,
    now: int | None = None,
) -> tuple[MerchantKey, str]:
    """Issue a new key for one mode of a merchant; the old keys work on for ``expires_in_s``.

    Args:
        connection: Database connection.
        merchant: The merchant's id or name.
        mode: ``test`` or ``live`` (the first live key creates the live scope).
        expires_in_s: When given, every other unexpired key of that mode expires this many
            seconds from now (0: at once); otherwise they work until revoked.
        now: Unix time (tests pass a clock).

    Returns:
        The new key's public facts and the secret key (shown once).

    Raises:
        LookupError: When no merchant has that id or name.
        ValueError: When ``expires_in_s`` is negative.
    """
    if expires_in_s is not None and expires_in_s < 0:
        raise ValueError("the expiry of the old keys must not be in the past")
    now = int(time.time()) if now is None else now
    async with connection.transaction():
        account = await _account(connection, merchant)
        scope_id = await _scope(connection, account, mode, now)
        if expires_in_s is not None:
            await connection.execute(
                "UPDATE merchant_keys SET expires_at = $2 WHERE merchant_id = $1 AND revoked_at IS NULL"
                " AND (expires_at IS NULL OR expires_at > $2)",
                scope_id,
                now + expires_in_s,
            )
        key = new_secret_key(mode)
        key_id = await _insert_key(connection, scope_id, key, now)
    facts = MerchantKey(
        id=key_id,
        merchant_id=scope_id,
        mode=mode,
        prefix=_shown_prefix(key),
        created=now,
        expires_at=None,
        revoked_at=None,
    )
    return facts, key


async def revoke_key(
    connection: asyncpg.Connection | asyncpg.Pool, merchant: str, key: str, *, now: int | None = None
) -> MerchantKey:
    """Revoke one key of a merchant, named by its id (``key_...``) or its shown prefix.

    Raises:
        LookupError: When the merchant or the key does not exist, or the prefix names several.
    """
    now = int(time.time()) if now is None else now
    account = await _account(connection, merchant)
    rows = await connection.fetch(
        "SELECT k.id FROM merchant_keys k JOIN merchants m ON m.id = k.merchant_id"
        " WHERE (m.id = $1 OR m.account_id = $1) AND (k.id = $2 OR k.key_prefix = $2) AND k.revoked_at IS NULL",
        account["id"],
        key,
    )
    if not rows:
        raise LookupError(f"merchant {account['name']!r} has no active key {key!r}")
    if len(rows) > 1:
        raise LookupError(f"{key!r} names {len(rows)} keys; give the key id")
    row = await connection.fetchrow(
        "UPDATE merchant_keys SET revoked_at = $2 WHERE id = $1 RETURNING *", rows[0]["id"], now
    )
    return _facts(row)


async def list_keys(connection: asyncpg.Connection | asyncpg.Pool, merchant: str) -> list[MerchantKey]:
    """Every key of both modes of a merchant, oldest first (revoked and expired ones too)."""
    account = await _account(connection, merchant)
    rows = await connection.fetch(
        "SELECT k.* FROM merchant_keys k JOIN merchants m ON m.id = k.merchant_id"
        " WHERE m.id = $1 OR m.account_id = $1 ORDER BY k.created, k.id",
        account["id"],
    )
    return [_facts(row) for row in rows]


def _facts(row: asyncpg.Record) -> MerchantKey:
    return MerchantKey(
        id=row["id"],
        merchant_id=row["merchant_id"],
        mode="live" if row["key_prefix"].startswith(LIVE_KEY_PREFIX) else "test",
        prefix=row["key_prefix"],
        created=row["created"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


_AUTH_SQL = """
SELECT k.key_hash, k.expires_at, m.id, m.name, m.providers, m.livemode
FROM merchant_keys k JOIN merchants m ON m.id = k.merchant_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL
"""


class MerchantDirectory:
    """Authenticates secret keys against an in-memory cache backed by the database.

    A miss queries the database once (merchants created while the switch runs are found), and
    unknown keys are remembered for a short time so a flood of bad keys costs no queries. A
    known key is re-read after ``ttl_s``, so a revocation reaches every worker within ``ttl_s``;
    an expiry is checked on every request against the cached expiry time, so it is exact.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl_s: float = 10.0,
        negative_ttl_s: float = 5.0,
        max_negative: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Create the directory over ``pool``; known keys are re-read after ``ttl_s`` seconds."""
        self._pool = pool
        self._ttl_s = ttl_s
        self._clock = clock
        self._known: dict[bytes, tuple[Merchant, float, float | None]] = {}
        self._unknown: OrderedDict[bytes, float] = OrderedDict()
        self._negative_ttl_s = negative_ttl_s
        self._max_negative = max_negative

    async def authenticate(self, secret_key: str) -> Merchant | None:
        """Return the merchant scope owning ``secret_key``, or None (unknown, revoked or expired)."""
        digest = hash_key(secret_key)
        now = self._clock()
        cached = self._known.get(digest)
        if cached is not None and cached[1] > now:
            merchant, _, expires_at = cached
            return merchant if expires_at is None or now < expires_at else None
        seen = self._unknown.get(digest)
        if seen is not None and now - seen < self._negative_ttl_s:
            return None
        row = await self._pool.fetchrow(_AUTH_SQL, digest)
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), digest):
            self._known.pop(digest, None)
            self._unknown[digest] = now
            self._unknown.move_to_end(digest)
            while len(self._unknown) > self._max_negative:
                self._unknown.popitem(last=False)
            return None
        merchant = Merchant(row["id"], row["name"], tuple(row["providers"]), bool(row["livemode"]))
        expires_at = float(row["expires_at"]) if row["expires_at"] is not None else None
        self._known[digest] = (merchant, now + self._ttl_s, expires_at)
        return merchant if expires_at is None or now < expires_at else None


async def set_merchant_providers(
    connection: asyncpg.Connection | asyncpg.Pool, merchant: str, accounts: tuple[str, ...]
) -> Merchant:
    """Set the provider accounts a merchant routes to, in priority order (both modes).

    Args:
        connection: Database connection.
        merchant: The merchant's id or name.
        accounts: Account names, first tried first.

    Raises:
        LookupError: When no merchant has that id or name.
        ValueError: When ``accounts`` is empty or repeats a name.
    """
    if not accounts or len(set(accounts)) != len(accounts):
        raise ValueError("give one or more distinct provider account names")
    row = await connection.fetchrow(
        "UPDATE merchants SET providers = $2 WHERE (id = $1 OR name = $1) AND NOT livemode"
        " RETURNING id, name, providers",
        merchant,
        list(accounts),
    )
    if row is None:
        raise LookupError(f"no merchant with id or name {merchant!r}")
    await connection.execute("UPDATE merchants SET providers = $2 WHERE account_id = $1", row["id"], list(accounts))
    return Merchant(row["id"], row["name"], tuple(row["providers"]))
