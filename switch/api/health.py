"""Liveness and readiness probes; no key needed."""

from __future__ import annotations

import asyncio

from litestar import Request, Response, get

from switch.api.errors import error_response


@get("/health/live", summary="Liveness probe", tags=["health"])
async def live() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@get("/health/ready", summary="Readiness probe", tags=["health"])
async def ready(request: Request) -> Response[bytes] | dict[str, str]:
    """The database answers and the ledger writer runs; 503 otherwise."""
    state = request.app.state
    try:
        async with asyncio.timeout(2.0):
            await state.pool.fetchval("SELECT 1")
            store_ok = await state.store.ping()
    except Exception:
        return error_response(503, "api_error", "not_ready", "the database is not reachable")
    if not store_ok:
        return error_response(503, "api_error", "not_ready", "the store is not reachable")
    if not state.writer.running:
        return error_response(503, "api_error", "not_ready", "the ledger writer is not running")
    return {"status": "ready"}
