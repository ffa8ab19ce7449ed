"""Readiness tells the truth: each dependency that fails makes it 503 and is named, and it answers
within its own deadline even when the database or Redis accepts connections and never answers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg

from switch.api.health import CHECK_DEADLINE_S, LedgerHealth
from switch.ledger.writer import GroupCommitWriter
from switch.stores.redis import RedisStore
from tests.api.helpers import create
from tests.faults import database_lost_at


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A real TCP server that accepts connections and never answers: a hanging database or Redis."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@contextlib.contextmanager
def replaced(state, name: str, value):
    original = getattr(state, name)
    setattr(state, name, value)
    try:
        yield
    finally:
        setattr(state, name, original)


def _failed(response) -> dict:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    return error


async def test_ready_when_every_check_passes(client):
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_a_hanging_database_is_not_ready_within_the_probe_deadline(app, client):
    async with silent_server() as port:
        pool = await asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{port}/x", min_size=0, max_size=1)
        try:
            with replaced(app.state, "pool", pool):
                started = time.monotonic()
                response = await client.get("/health/ready")
                elapsed = time.monotonic() - started
        finally:
            pool.terminate()
    error = _failed(response)
    assert error["param"] == "database"
    assert "database: no answer within" in error["message"]
    assert CHECK_DEADLINE_S * 0.9 <= elapsed < CHECK_DEADLINE_S + 1.0


async def test_an_unreachable_database_is_not_ready(app, client):
    with socket_closed() as port:
        pool = await asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{port}/x", min_size=0, max_size=1)
        try:
            with replaced(app.state, "pool", pool):
                response = await client.get("/health/ready")
        finally:
            pool.terminate()
    assert _failed(response)["param"] == "database"


@contextlib.contextmanager
def socket_closed():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port  # nothing listens there any more: connection refused


async def test_a_hanging_redis_is_not_ready_within_the_probe_deadline(app, client, redis_url):
    working = RedisStore(redis_url, prefix="obs-health-ok:")
    try:
        with replaced(app.state, "store", working):
            assert (await client.get("/health/ready")).status_code == 200
    finally:
        await working.close()
    async with silent_server() as port:
        hanging = RedisStore(f"redis://127.0.0.1:{port}/0", prefix="obs-health:")
        try:
            with replaced(app.state, "store", hanging):
                started = time.monotonic()
                response = await client.get("/health/ready")
                elapsed = time.monotonic() - started
        finally:
            with contextlib.suppress(Exception):
                await hanging.close()
    error = _failed(response)
    assert error["param"] == "redis"
    assert elapsed < CHECK_DEADLINE_S + 1.0


async def test_a_stopped_ledger_writer_is_not_ready(app, client, database_url):
    stopped = GroupCommitWriter(lambda: asyncpg.connect(database_url))  # never started
    with replaced(app.state, "writer", stopped):
        response = await client.get("/health/ready")
    error = _failed(response)
    assert error["param"] == "ledger_writer"
    assert "not running" in error["message"]


async def test_a_failing_ledger_writer_is_not_ready_until_a_batch_commits_again(app, client, merchant):
    with database_lost_at(app, 1):
        assert (await create(client, merchant)).status_code == 503
    error = _failed(await client.get("/health/ready"))
    assert error["param"] == "ledger_writer"
    assert "last batch failed" in error["message"]
    assert (await create(client, merchant)).status_code == 201
    assert (await client.get("/health/ready")).status_code == 200


async def test_every_failed_check_is_named(app, client, database_url):
    async with silent_server() as port:
        pool = await asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{port}/x", min_size=0, max_size=1)
        stopped = GroupCommitWriter(lambda: asyncpg.connect(database_url))
        try:
            with replaced(app.state, "pool", pool), replaced(app.state, "writer", stopped):
                error = _failed(await client.get("/health/ready"))
        finally:
            pool.terminate()
    assert "database:" in error["message"] and "ledger_writer:" in error["message"]


def test_ledger_health_follows_the_latest_batch():
    now = [100.0]
    health = LedgerHealth(clock=lambda: now[0])
    assert not health.failing
    health.record_failure()
    assert health.failing
    now[0] += 1
    health.record_commit()
    assert not health.failing
    now[0] += 1
    health.record_failure()
    assert health.failing


async def test_liveness_stays_up_while_readiness_fails(app, client, database_url):
    stopped = GroupCommitWriter(lambda: asyncpg.connect(database_url))
    with replaced(app.state, "writer", stopped):
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/ready")).status_code == 503
