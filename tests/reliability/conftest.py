"""Fixtures of the reliability suite: real PostgreSQL and Redis behind a proxy the test controls."""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import urllib.parse
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest_asyncio
from litestar import Litestar

from switch.config import Settings
from switch.ledger.migrate import migrate
from switch.merchants import create_merchant
from tests.conftest import MerchantKey, running_app
from tests.reliability.proxy import FaultProxy

#: Deadlines short enough that a test of a partition takes seconds, not minutes.
FAST = {
    "db_command_timeout_ms": 1_000,
    "db_connect_timeout_ms": 500,
    "ledger_submit_timeout_ms": 1_500,
}


def settings_for(database_url: str, **overrides: object) -> Settings:
    """Settings of an app under test: the suite's fast deadlines, and the same data directory (so
    the same vault master key) as the session's ``app`` fixture, which shares the database."""
    values: dict[str, object] = {**FAST, **overrides}
    return Settings(database_url=database_url, data_dir=tempfile.gettempdir(), **values)  # type: ignore[arg-type]


def upstream_of(url: str) -> tuple[str, int]:
    """Host and port of a DSN or Redis URL."""
    parsed = urllib.parse.urlsplit(url)
    return parsed.hostname or "127.0.0.1", parsed.port or (6379 if parsed.scheme.startswith("redis") else 5432)


@pytest_asyncio.fixture
async def pg_proxy(database_url: str) -> AsyncIterator[FaultProxy]:
    """A proxy in front of the test database's server."""
    proxy = await FaultProxy(*upstream_of(database_url)).start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest_asyncio.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[FaultProxy]:
    """A proxy in front of the test Redis (TCP only)."""
    proxy = await FaultProxy(*upstream_of(redis_url)).start()
    try:
        yield proxy
    finally:
        await proxy.close()


@contextlib.asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    """An app with its lifespan running, and an in-process client for it."""
    async with running_app(settings) as application:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://switch.test", timeout=30) as http:
            yield application, http


async def new_merchant(database_url: str) -> MerchantKey:
    """A merchant created directly on the (migrated) database, not through any proxy."""
    connection = await asyncpg.connect(database_url)
    try:
        await migrate(connection)
        merchant, key = await create_merchant(connection, "rel-" + secrets.token_hex(4))
    finally:
        await connection.close()
    return MerchantKey(merchant.id, key)
