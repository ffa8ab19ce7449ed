"""Faults injected into the switch's own dependencies for tests (never into a provider: that is the
simulator's job). The database is real; only the writer's view of it is cut for one batch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg
from litestar import Litestar


@contextlib.contextmanager
def database_lost_at(app: Litestar, batch: int) -> Iterator[None]:
    """Make the ``batch``-th ledger batch from now find the database unreachable, as an outage would.

    The writer's connection is terminated under that batch and reconnecting fails until it has
    failed, so the batch fails as it would in a real outage; later batches reconnect.
    """
    writer = app.state.writer
    original_connect, original_write = writer._connect, writer._write_batch
    seen = 0
    down = False

    async def connect() -> asyncpg.Connection:
        if down:
            raise OSError("database unreachable (injected)")
        return await original_connect()

    async def write(pending):
        nonlocal seen, down
        seen += 1
        if seen != batch:
            return await original_write(pending)
        down = True
        try:
            writer._connection.terminate()
            return await original_write(pending)
        finally:
            down = False

    writer._connect, writer._write_batch = connect, write
    try:
        yield
    finally:
        writer._connect = original_connect
        del writer._write_batch  # the instance attribute shadowed the method
