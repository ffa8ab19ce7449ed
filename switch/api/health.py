"""Liveness and readiness probes; no key needed.

Readiness runs its checks concurrently, each under its own deadline, so the probe answers within
:data:`CHECK_DEADLINE_S` (plus scheduling) even when the database or Redis accepts connections and
never answers. The 503 body names every check that failed: the first in ``param``, all of them in
``message``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from litestar import Request, Response, get
from litestar.datastructures import State

from switch.api.errors import error_response
from switch.stores.redis import RedisStore

CHECK_DEADLINE_S = 1.0


class LedgerHealth:
    """Whether the group-commit writer's latest batch committed; fed by the writer's hooks."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Start healthy: no batch has failed yet."""
        self._clock = clock
        self.last_commit: float | None = None
        self.last_failure: float | None = None

    def record_commit(self) -> None:
        """A batch committed."""
        self.last_commit = self._clock()

    def record_failure(self) -> None:
        """A batch failed."""
        self.last_failure = self._clock()

    @property
    def failing(self) -> bool:
        """True when the most recent batch failed (a later commit clears it)."""
        if self.last_failure is None:
            return False
        return self.last_commit is None or self.last_failure >= self.last_commit


async def _database(state: State) -> str | None:
    await state.pool.fetchval("SELECT 1")
    return None


async def _redis(state: State) -> str | None:
    return None if await state.store.ping() else "Redis did not answer PING"


async def _ledger_writer(state: State) -> str | None:
    if not state.writer.running:
        return "the ledger writer is not running"
    health: LedgerHealth | None = getattr(state, "ledger_health", None)
    if health is not None and health.failing:
        return "the ledger writer's last batch failed"
    return None


async def _bounded(name: str, check: Awaitable[str | None], deadline_s: float) -> tuple[str, str | None]:
    # The check runs as its own task and is not awaited past the deadline: cancelling a query on a
    # stalled connection waits for the connection's release, which would stretch the probe.
    task = asyncio.ensure_future(check)
    done, _ = await asyncio.wait({task}, timeout=deadline_s)
    if not done:
        task.cancel()
        return name, f"no answer within {deadline_s:g}s"
    try:
        return name, task.result()
    except Exception as exc:  # a probe reports; it never fails with a traceback
        return name, f"{type(exc).__name__}"


async def readiness_failures(state: State, deadline_s: float = CHECK_DEADLINE_S) -> dict[str, str]:
    """Run every readiness check concurrently; return ``{check: why}`` for those that failed.

    Checks: ``database`` (a query on the read pool), ``redis`` (PING, only when the store is
    Redis), ``ledger_writer`` (running, and its last batch did not fail).
    """
    checks = [_bounded("database", _database(state), deadline_s)]
    if isinstance(state.store, RedisStore):
        checks.append(_bounded("redis", _redis(state), deadline_s))
    checks.append(_bounded("ledger_writer", _ledger_writer(state), deadline_s))
    results = await asyncio.gather(*checks)
    return {name: why for name, why in results if why is not None}


@get("/health/live", summary="Liveness probe", tags=["health"])
async def live() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@get("/health/ready", summary="Readiness probe", tags=["health"])
async def ready(request: Request) -> Response[bytes] | dict[str, str]:
    """The database, Redis (when configured) and the ledger writer work; 503 naming what does not."""
    failures = await readiness_failures(request.app.state)
    if failures:
        message = "not ready: " + "; ".join(f"{name}: {why}" for name, why in failures.items())
        return error_response(503, "api_error", "not_ready", message, next(iter(failures)))
    return {"status": "ready"}
