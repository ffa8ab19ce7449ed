"""Routing statistics: success rate and latency over sliding windows, and circuit breakers.

What an attempt counts for (key: account x method x currency):

========================  =======  =======  =========================================
outcome                   attempt  success  breaker
========================  =======  =======  =========================================
approved                  yes      yes      closes (resets the failure run)
declined_soft             yes      no       resets the run (the provider answered)
declined_hard             no       no       resets the run
pending, requires_action  no       no       resets the run
technical, unknown        yes      no       one more consecutive failure
========================  =======  =======  =========================================

A soft decline counts against the route because approval rates do differ by route (local
acquiring, an acquirer's own risk rules). A hard decline (stolen card, wrong CVC) would fail on
every provider and says nothing about this one, so it is left out instead of punishing whichever
provider happened to receive the fraud. Pending and requires-action answers are not final yet.
Every finished attempt records its latency.

Windows are time buckets (``bucket_s``, 10 s by default) kept for ``max_window_s``; a window of
``window_s`` sums the newest ``ceil(window_s / bucket_s)`` buckets, the current one included.
Results are memoized per key until the key changes or a new bucket starts, so reads cost a dict
look-up.

The breaker of an account opens after ``failures`` consecutive technical-or-unknown outcomes and
stays open for ``cooldown_s`` after the last one; then it is half-open: :meth:`allow_probe` lets one
request through (per worker; a new one when a cool-down passes without an answer), whose success
closes the breaker and whose failure re-opens it. Thresholds are the caller's (the merchant's
``reliable`` section); the shared state is just the failure run and the time of its last failure.

:class:`MemoryRoutingStats` serves one process. :class:`RedisRoutingStats` shares everything
between workers: one Lua script call per recorded attempt (one round trip), and reads from a
local snapshot that :meth:`RedisRoutingStats.refresh` renews (about once a second, from a task
``start`` runs); only the current buckets are fetched again, closed ones are kept. A Redis outage
never fails a payment: failures are counted, logged at most once per interval, and routing keeps
using the last snapshot plus this worker's own records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from adapters.base import Outcome

log = logging.getLogger(__name__)

BreakerState = Literal["closed", "open", "half_open"]
Key = tuple[str, str, str]

BUCKET_S = 10
MAX_WINDOW_S = 3600
MAX_KEYS = 10_000

_FAIL = 1
_RESET = 0
# outcome -> (attempt, success, breaker effect)
_ACCOUNTING: dict[Outcome, tuple[int, int, int]] = {
    Outcome.APPROVED: (1, 1, _RESET),
    Outcome.DECLINED_SOFT: (1, 0, _RESET),
    Outcome.DECLINED_HARD: (0, 0, _RESET),
    Outcome.PENDING: (0, 0, _RESET),
    Outcome.REQUIRES_ACTION: (0, 0, _RESET),
    Outcome.TECHNICAL: (1, 0, _FAIL),
    Outcome.UNKNOWN: (1, 0, _FAIL),
}


class StatsView(Protocol):
    """What strategies read; every call is served from memory."""

    def success_rate(self, account: str, method: str, currency: str, window_s: int = 300) -> tuple[float, int]:
        """Return (success rate 0..1, attempts) over the window; (0.0, 0) without attempts."""
        ...

    def mean_latency_ms(self, account: str, method: str, currency: str, window_s: int = 300) -> float | None:
        """Return the mean latency of finished attempts over the window, None without any."""
        ...

    def breaker(self, account: str, failures: int = 5, cooldown_s: float = 30) -> BreakerState:
        """Return the account's circuit state under these thresholds."""
        ...

    def allow_probe(self, account: str, failures: int = 5, cooldown_s: float = 30) -> bool:
        """Return whether a request may go to the account now; claims the probe when half-open."""
        ...


class _Windows:
    """Bucketed counters, breaker runs and probe claims of one process (the shared core)."""

    def __init__(self, clock: Callable[[], float], bucket_s: int, max_window_s: int, max_keys: int) -> None:
        self.clock = clock
        self.bucket_s = bucket_s
        self.buckets_kept = math.ceil(max_window_s / bucket_s)
        self.max_keys = max_keys
        # key -> bucket index -> [attempts, successes, latency sum ms, latency count]
        self.data: dict[Key, dict[int, list[int]]] = {}
        self.memo: dict[Key, dict[int, tuple[tuple[float, int], float | None]]] = {}
        self.memo_bucket = -1
        # account -> [consecutive failures, time of the last failure]
        self.breakers: dict[str, list[float]] = {}
        self.probes: dict[str, float] = {}

    def bucket(self, now: float) -> int:
        return int(now // self.bucket_s)

    def add(self, key: Key, bucket: int, attempts: int, successes: int, latency_ms: int) -> None:
        buckets = self.data.get(key)
        if buckets is None:
            if len(self.data) >= self.max_keys:
                oldest = next(iter(self.data))
                del self.data[oldest]
                self.memo.pop(oldest, None)
            buckets = self.data[key] = {}
        counts = buckets.get(bucket)
        if counts is None:
            counts = buckets[bucket] = [0, 0, 0, 0]
            self._prune(buckets, bucket)
        counts[0] += attempts
        counts[1] += successes
        counts[2] += latency_ms
        counts[3] += 1
        self.memo.pop(key, None)

    def _prune(self, buckets: dict[int, list[int]], newest: int) -> None:
        oldest = newest - self.buckets_kept
        for index in [index for index in buckets if index <= oldest]:
            del buckets[index]

    def set_bucket(self, bucket: int, entries: dict[Key, list[int]]) -> None:
        """Replace one bucket of every key with ``entries`` (an authoritative copy)."""
        for key, buckets in self.data.items():
            if bucket in buckets and key not in entries:
                del buckets[bucket]
                self.memo.pop(key, None)
        for key, counts in entries.items():
            buckets = self.data.get(key)
            if buckets is None:
                if len(self.data) >= self.max_keys:
                    continue
                buckets = self.data[key] = {}
            buckets[bucket] = counts
            self.memo.pop(key, None)

    def prune_all(self, now_bucket: int) -> None:
        for key in list(self.data):
            buckets = self.data[key]
            self._prune(buckets, now_bucket)
            if not buckets:
                del self.data[key]
                self.memo.pop(key, None)

    def window(self, key: Key, window_s: int) -> tuple[tuple[float, int], float | None]:
        """Return ((success rate, attempts), mean latency) of ``key``, memoized."""
        now_bucket = int(self.clock() // self.bucket_s)
        if now_bucket != self.memo_bucket:
            self.memo.clear()
            self.memo_bucket = now_bucket
        memo = self.memo.get(key)
        if memo is not None:
            found = memo.get(window_s)
            if found is not None:
                return found
        attempts = successes = latency = latency_count = 0
        buckets = self.data.get(key)
        if buckets:
            first = now_bucket - math.ceil(window_s / self.bucket_s) + 1
            for index, counts in buckets.items():
                if first <= index <= now_bucket:
                    attempts += counts[0]
                    successes += counts[1]
                    latency += counts[2]
                    latency_count += counts[3]
        result = (
            (successes / attempts if attempts else 0.0, attempts),
            latency / latency_count if latency_count else None,
        )
        self.memo.setdefault(key, {})[window_s] = result
        return result

    def breaker_event(self, account: str, effect: int, now: float) -> None:
        run = self.breakers.get(account)
        if effect == _FAIL:
            if run is None:
                self.breakers[account] = [1, now]
            else:
                run[0] += 1
                run[1] = now
        elif run is not None:
            run[0] = 0
        self.probes.pop(account, None)  # the probe (if any) has its answer

    def breaker(self, account: str, failures: int, cooldown_s: float) -> BreakerState:
        run = self.breakers.get(account)
        if run is None or run[0] < failures:
            return "closed"
        return "open" if self.clock() - run[1] < cooldown_s else "half_open"

    def allow_probe(self, account: str, failures: int, cooldown_s: float) -> bool:
        state = self.breaker(account, failures, cooldown_s)
        if state != "half_open":
            return state == "closed"
        now = self.clock()
        claimed = self.probes.get(account)
        if claimed is not None and now - claimed < cooldown_s:
            return False
        self.probes[account] = now
        return True


class _StatsBase:
    """The :class:`StatsView` methods over a :class:`_Windows`."""

    _windows: _Windows

    def success_rate(self, account: str, method: str, currency: str, window_s: int = 300) -> tuple[float, int]:
        """Return (success rate 0..1, attempts) over the window; (0.0, 0) without attempts."""
        return self._windows.window((account, method, currency), window_s)[0]

    def mean_latency_ms(self, account: str, method: str, currency: str, window_s: int = 300) -> float | None:
        """Return the mean latency of finished attempts over the window, None without any."""
        return self._windows.window((account, method, currency), window_s)[1]

    def breaker(self, account: str, failures: int = 5, cooldown_s: float = 30) -> BreakerState:
        """Return the account's circuit state under these thresholds."""
        return self._windows.breaker(account, failures, cooldown_s)

    def allow_probe(self, account: str, failures: int = 5, cooldown_s: float = 30) -> bool:
        """Return whether a request may go to the account now; claims the probe when half-open."""
        return self._windows.allow_probe(account, failures, cooldown_s)

    def _apply(self, account: str, method: str, currency: str, outcome: Outcome, latency_ms: float) -> tuple:
        windows = self._windows
        now = windows.clock()
        attempts, successes, effect = _ACCOUNTING[outcome]
        latency = max(0, round(latency_ms))
        bucket = windows.bucket(now)
        windows.add((account, method, currency), bucket, attempts, successes, latency)
        windows.breaker_event(account, effect, now)
        return now, bucket, attempts, successes, effect, latency


class MemoryRoutingStats(_StatsBase):
    """Routing statistics of one process."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        bucket_s: int = BUCKET_S,
        max_window_s: int = MAX_WINDOW_S,
        max_keys: int = MAX_KEYS,
    ) -> None:
        """Create empty statistics.

        Args:
            clock: Seconds since the epoch (injected in tests).
            bucket_s: Width of one time bucket.
            max_window_s: The longest window a reader may ask for.
            max_keys: Bound on (account, method, currency) keys kept.
        """
        self._windows = _Windows(clock, bucket_s, max_window_s, max_keys)

    def record_now(self, account: str, method: str, currency: str, outcome: Outcome, latency_ms: float) -> None:
        """Record one finished attempt."""
        self._apply(account, method, currency, outcome, latency_ms)

    async def record(self, account: str, method: str, currency: str, outcome: Outcome, latency_ms: float) -> None:
        """Record one finished attempt (async, like the Redis twin)."""
        self._apply(account, method, currency, outcome, latency_ms)

    async def refresh(self) -> None:
        """Drop buckets that left the longest window (nothing to fetch in one process)."""
        windows = self._windows
        windows.prune_all(windows.bucket(windows.clock()))

    async def start(self) -> None:
        """Nothing to start in one process."""

    async def stop(self) -> None:
        """Nothing to stop in one process."""


# One round trip per recorded attempt: bucket counters and the breaker run, with expiries.
_RECORD = """
local f = ARGV[1]
if ARGV[2] ~= '0' then redis.call('HINCRBY', KEYS[1], f .. '|n', ARGV[2]) end
if ARGV[3] ~= '0' then redis.call('HINCRBY', KEYS[1], f .. '|s', ARGV[3]) end
redis.call('HINCRBY', KEYS[1], f .. '|l', ARGV[4])
redis.call('HINCRBY', KEYS[1], f .. '|m', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if ARGV[7] == '1' then
  redis.call('HINCRBY', KEYS[2], ARGV[6] .. '|c', 1)
  redis.call('HSET', KEYS[2], ARGV[6] .. '|t', ARGV[8])
else
  redis.call('HSET', KEYS[2], ARGV[6] .. '|c', 0)
end
redis.call('PEXPIRE', KEYS[2], ARGV[9])
return 1
"""

_FIELD_POSITION = {"n": 0, "s": 1, "l": 2, "m": 3}
_BREAKER_TTL_MS = 86_400_000
# A bucket is final once no worker's clock can still be inside it.
_GRACE_S = 5.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRoutingStats(_StatsBase):
    """Routing statistics shared by every worker through Redis; reads never wait on Redis."""

    def __init__(
        self,
        redis_client: Any,
        prefix: str = "switch:routing:",
        *,
        clock: Callable[[], float] = time.time,
        bucket_s: int = BUCKET_S,
        max_window_s: int = MAX_WINDOW_S,
        max_keys: int = MAX_KEYS,
        refresh_interval_s: float = 1.0,
        timeout_s: float = 0.25,
        log_interval_s: float = 60.0,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        """Create statistics over ``redis_client`` (a ``redis.asyncio.Redis``).

        Args:
            redis_client: The shared client; it is not closed by :meth:`stop`.
            prefix: Namespace of every key.
            clock: Seconds since the epoch; all workers' clocks must roughly agree.
            bucket_s: Width of one time bucket.
            max_window_s: The longest window a reader may ask for.
            max_keys: Bound on (account, method, currency) keys kept locally.
            refresh_interval_s: Period of the background refresh.
            timeout_s: Longest a record or refresh may wait on Redis.
            log_interval_s: At most one warning per this many seconds while Redis fails.
            on_error: Called with ``"record"`` or ``"refresh"`` on each failure (metrics).
        """
        self._windows = _Windows(clock, bucket_s, max_window_s, max_keys)
        self._redis = redis_client
        self._prefix = prefix
        self._script = redis_client.register_script(_RECORD)
        self._bucket_ttl_ms = (max_window_s + 3 * bucket_s) * 1000
        self._interval = refresh_interval_s
        self._timeout = timeout_s
        self._log_interval = log_interval_s
        self._last_log = -math.inf
        self._on_error = on_error
        self._final: set[int] = set()  # closed buckets already fetched
        self._task: asyncio.Task[None] | None = None
        self.record_failures = 0
        self.refresh_failures = 0

    def _bucket_key(self, bucket: int) -> str:
        return f"{self._prefix}b:{bucket}"

    @property
    def _breaker_key(self) -> str:
        return f"{self._prefix}breaker"

    def _failed(self, kind: str, exc: BaseException) -> None:
        if kind == "record":
            self.record_failures += 1
        else:
            self.refresh_failures += 1
        if self._on_error is not None:
            self._on_error(kind)
        now = time.monotonic()
        if now - self._last_log >= self._log_interval:
            self._last_log = now
            log.warning(
                "routing stats: Redis %s failed (%s); %d record, %d refresh failures so far; using the last snapshot",
                kind,
                type(exc).__name__,
                self.record_failures,
                self.refresh_failures,
            )

    async def record(self, account: str, method: str, currency: str, outcome: Outcome, latency_ms: float) -> None:
        """Record one finished attempt: locally at once, in Redis in one round trip; never raises."""
        now, bucket, attempts, successes, effect, latency = self._apply(account, method, currency, outcome, latency_ms)
        try:
            async with asyncio.timeout(self._timeout):
                await self._script(
                    keys=[self._bucket_key(bucket), self._breaker_key],
                    args=[
                        f"{account}|{method}|{currency}",
                        attempts,
                        successes,
                        latency,
                        self._bucket_ttl_ms,
                        account,
                        effect,
                        int(now * 1000),
                        _BREAKER_TTL_MS,
                    ],
                )
        except Exception as exc:  # an outage must not fail the payment
            self._failed("record", exc)

    async def refresh(self) -> None:
        """Renew the local snapshot from Redis in one round trip; on failure keep the old one."""
        windows = self._windows
        now = windows.clock()
        newest = windows.bucket(now)
        first = newest - windows.buckets_kept + 1
        wanted = [
            index
            for index in range(first, newest + 1)
            if index not in self._final or (index + 1) * windows.bucket_s + _GRACE_S > now
        ]
        try:
            async with asyncio.timeout(self._timeout * 4):
                pipe = self._redis.pipeline(transaction=False)
                for index in wanted:
                    pipe.hgetall(self._bucket_key(index))
                pipe.hgetall(self._breaker_key)
                replies = await pipe.execute()
        except Exception as exc:  # keep routing on the last snapshot
            self._failed("refresh", exc)
            return
        for index, reply in zip(wanted, replies, strict=False):
            windows.set_bucket(index, self._parse_bucket(reply))
            if (index + 1) * windows.bucket_s + _GRACE_S <= now:
                self._final.add(index)
        self._final = {index for index in self._final if index >= first}
        windows.prune_all(newest)
        breakers: dict[str, list[float]] = {}
        for field, value in replies[-1].items():
            account, _, kind = _text(field).rpartition("|")
            run = breakers.setdefault(account, [0, 0.0])
            if kind == "c":
                run[0] = int(value)
            elif kind == "t":
                run[1] = int(value) / 1000
        windows.breakers = breakers

    @staticmethod
    def _parse_bucket(reply: dict[Any, Any]) -> dict[Key, list[int]]:
        entries: dict[Key, list[int]] = {}
        for field, value in reply.items():
            base, _, kind = _text(field).rpartition("|")
            position = _FIELD_POSITION.get(kind)
            parts = base.split("|")
            if position is None or len(parts) != 3:
                continue
            key = (parts[0], parts[1], parts[2])
            counts = entries.get(key)
            if counts is None:
                counts = entries[key] = [0, 0, 0, 0]
            counts[position] = int(value)
        return entries

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval)

    async def start(self) -> None:
        """Load a first snapshot, then refresh it in the background every interval."""
        await self.refresh()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="routing-stats-refresh")

    async def stop(self) -> None:
        """Stop the background refresh."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
