"""Merchants and their secret keys: only a SHA-256 of each key is stored.

Keys are 192-bit random strings, so an unsalted hash is safe against guessing; lookups go by
hash, which also means comparing key material never depends on how much of a guess matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

import asyncpg
import msgspec

from switch.ids import new_id

KEY_PREFIX = "sk_test_"


class Merchant(msgspec.Struct, frozen=True):
    """An authenticated merchant."""

    id: str
    name: str
    providers: tuple[str, ...]


class MerchantExists(ValueError):
    """A merchant with that name already exists."""


def hash_key(secret_key: str) -> bytes:
    """Return the stored form of a secret key."""
    return hashlib.sha256(secret_key.encode("utf-8")).digest()


def new_secret_key() -> str:
    """Return a fresh secret key (``sk_test_`` + 32 URL-safe characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(24)


async def create_merchant(
    connection: asyncpg.Connection | asyncpg.Pool, name: str, providers: tuple[str, ...] = ("sandbox",)
) -> tuple[Merchant, str]:
    """Create a merchant and return it with its secret key (shown once, stored as a hash).

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
    await connection.execute(
        "INSERT INTO merchants (id, name, key_hash, key_prefix, providers, created) VALUES ($1, $2, $3, $4, $5, $6)",
        merchant.id,
        name,
        hash_key(key),
        key[: len(KEY_PREFIX) + 4],
        list(providers),
        int(time.time()),
    )
    return merchant, key


async def list_merchants(connection: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    """Return every merchant's id, name, key prefix, providers and creation time, oldest first."""
    return await connection.fetch("SELECT id, name, key_prefix, providers, created FROM merchants ORDER BY created, id")


class MerchantDirectory:
    """Authenticates secret keys against an in-memory cache backed by the database.

    A miss queries the database once (merchants created while the switch runs are found), and
    unknown keys are remembered for a short time so a flood of bad keys costs no queries.
    """

    def __init__(
        self, pool: asyncpg.Pool, *, ttl_s: float = 30.0, negative_ttl_s: float = 5.0, max_negative: int = 10_000
    ) -> None:
        """Create the directory over ``pool``; known merchants are re-read after ``ttl_s`` seconds."""
        self._pool = pool
        self._ttl_s = ttl_s
        self._known: dict[bytes, tuple[Merchant, float]] = {}
        self._unknown: OrderedDict[bytes, float] = OrderedDict()
        self._negative_ttl_s = negative_ttl_s
        self._max_negative = max_negative

    async def authenticate(self, secret_key: str) -> Merchant | None:
        """Return the merchant owning ``secret_key``, or None."""
        digest = hash_key(secret_key)
        now = time.monotonic()
        cached = self._known.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        seen = self._unknown.get(digest)
        if seen is not None and now - seen < self._negative_ttl_s:
            return None
        row = await self._pool.fetchrow(
            "SELECT id, name, key_hash, providers FROM merchants WHERE key_hash = $1", digest
        )
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), digest):
            self._known.pop(digest, None)
            self._unknown[digest] = now
            self._unknown.move_to_end(digest)
            while len(self._unknown) > self._max_negative:
                self._unknown.popitem(last=False)
            return None
        merchant = Merchant(row["id"], row["name"], tuple(row["providers"]))
        self._known[digest] = (merchant, now + self._ttl_s)
        return merchant


async def set_merchant_providers(
    connection: asyncpg.Connection | asyncpg.Pool, merchant: str, accounts: tuple[str, ...]
) -> Merchant:
    """Set the provider accounts a merchant routes to, in priority order.

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
        "UPDATE merchants SET providers = $2 WHERE id = $1 OR name = $1 RETURNING id, name, providers",
        merchant,
        list(accounts),
    )
    if row is None:
        raise LookupError(f"no merchant with id or name {merchant!r}")
    return Merchant(row["id"], row["name"], tuple(row["providers"]))
