"""Versioned schema migrations: ``migrations/NNNN_name.sql`` applied in order, once each."""

from __future__ import annotations

import re
from importlib import resources

import asyncpg

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any fixed number works; it only has to be the same in every process that migrates.
_LOCK_ID = 7_310_442_001


def available_migrations() -> list[tuple[int, str, str]]:
    """Return ``(version, filename, sql)`` for every bundled migration, ordered by version."""
    found = []
    for entry in resources.files("switch.ledger.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(connection: asyncpg.Connection) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction.

    An advisory lock makes concurrent starts (several workers) apply each migration once.

    Returns:
        The filenames applied by this call.
    """
    applied_now: list[str] = []
    await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in available_migrations():
            if version in done:
                continue
            async with connection.transaction():
                await connection.execute(sql)
                await connection.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            applied_now.append(name)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return applied_now
