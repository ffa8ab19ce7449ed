"""Anti-money-laundering flags that open reviews: large amounts and structuring.

- ``aml.large_amount``: the amount, in euro cents, is at least ``large_amount_eur`` (EUR 10,000 by
  default; AML thresholds read "10,000 or more").
- ``aml.structuring``: at least ``structuring_count`` payments (this one included) within
  ``structuring_window_s`` whose amounts lie in ``[structuring_low_bps, 100 %)`` of the large-amount
  threshold, per customer or per card: splitting one large payment into several just below it.

Each flag is a ``FiredRule`` with action ``review``, to pass to ``engine.evaluate(extra=...)``. The
near-threshold payments are remembered per key in an ``AmlState`` (memory or Redis), expiring
with the window and bounded per key and, in memory, in keys.
"""

from __future__ import annotations

import abc
import time
from collections import OrderedDict
from collections.abc import Callable

import msgspec
import redis.asyncio as aioredis

from switch.risk.engine import FiredRule
from switch.risk.sca import to_eur_cents
from switch.risk.types import RiskFacts

LARGE_AMOUNT_RULE = "aml.large_amount"
STRUCTURING_RULE = "aml.structuring"


class AmlConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Thresholds of the AML flags (amounts in euro cents, ratios in basis points)."""

    large_amount_eur: int = 1_000_000
    structuring_low_bps: int = 9_000
    structuring_count: int = 3
    structuring_window_s: int = 86_400
    max_entries_per_key: int = 100

    def __post_init__(self) -> None:
        if self.large_amount_eur <= 0:
            raise ValueError("large_amount_eur must be positive")
        if not 0 < self.structuring_low_bps < 10_000:
            raise ValueError("structuring_low_bps must lie strictly between 0 and 10000")
        if not 2 <= self.structuring_count <= self.max_entries_per_key:
            raise ValueError("structuring_count must lie between 2 and max_entries_per_key")
        if self.structuring_window_s <= 0:
            raise ValueError("structuring_window_s must be positive")


class AmlState(abc.ABC):
    """Near-threshold payments per key (``customer:...``, ``card:...``) within a window."""

    @abc.abstractmethod
    async def add_and_count(self, key: str, member: str, at: float, window_s: float, cap: int) -> int:
        """Remember ``member`` at time ``at`` and return how many of ``key``'s lie in ``(at - window_s, at]``.

        Args:
            key: The customer or card key.
            member: A unique id of the payment (the same id twice is one payment).
            at: Seconds (the payment's time).
            window_s: The window length.
            cap: At most this many members are kept per key (the oldest go first).
        """


class MemoryAmlState(AmlState):
    """One process's state, bounded in keys (least recently updated out first)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        """Create an empty state holding at most ``max_keys`` keys."""
        self._max_keys = max_keys
        self._keys: OrderedDict[str, dict[str, float]] = OrderedDict()

    async def add_and_count(self, key: str, member: str, at: float, window_s: float, cap: int) -> int:
        """See ``AmlState.add_and_count``."""
        entries = self._keys.get(key)
        if entries is None:
            entries = {}
            self._keys[key] = entries
        self._keys.move_to_end(key)
        entries[member] = at
        horizon = at - window_s
        for old in [name for name, seen in entries.items() if seen <= horizon]:
            del entries[old]
        while len(entries) > cap:
            del entries[min(entries, key=entries.__getitem__)]
        while len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)
        return len(entries)


class RedisAmlState(AmlState):
    """State shared by every worker: a sorted set per key scored by time, one round trip."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "switch:aml:") -> None:
        """Use ``client`` (the caller owns it); keys are ``prefix + key``."""
        self._client = client
        self._prefix = prefix

    async def add_and_count(self, key: str, member: str, at: float, window_s: float, cap: int) -> int:
        """ZADD, trim by time and by rank, PEXPIRE, ZCARD in one MULTI."""
        name = self._prefix + key
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zadd(name, {member: at})
            pipe.zremrangebyscore(name, "-inf", at - window_s)
            pipe.zremrangebyrank(name, 0, -cap - 1)
            pipe.pexpire(name, max(1, int(window_s * 1000)))
            pipe.zcard(name)
            results = await pipe.execute()
        return int(results[-1])


class AmlMonitor:
    """Raises the AML flags for payments and remembers the near-threshold ones."""

    def __init__(
        self, state: AmlState, config: AmlConfig | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        """Configure the monitor.

        Args:
            state: Where near-threshold payments are remembered.
            config: Thresholds (defaults: EUR 10,000; 3 payments within 24 h at 90 % or more).
            clock: Wall-clock seconds, used when ``facts.occurred_at`` is 0; injectable for tests.
        """
        self.state = state
        self.config = config or AmlConfig()
        self._clock = clock
        self._low = self.config.large_amount_eur * self.config.structuring_low_bps // 10_000

    async def check(self, facts: RiskFacts, payment_id: str) -> list[FiredRule]:
        """Flag one payment, recording it when it lies just under the threshold.

        Args:
            facts: The payment.
            payment_id: Its id, so that a retried evaluation does not count it twice.

        Returns:
            The flags raised (action ``review``), possibly none.
        """
        config = self.config
        amount_eur = to_eur_cents(facts.amount, facts.currency)
        if amount_eur is None:
            return []
        if amount_eur >= config.large_amount_eur:
            return [
                FiredRule(name=LARGE_AMOUNT_RULE, action="review", value=amount_eur, threshold=config.large_amount_eur)
            ]
        if amount_eur < self._low:
            return []
        at = facts.occurred_at or self._clock()
        most = 0
        for key in self._keys(facts):
            count = await self.state.add_and_count(
                key, payment_id, at, config.structuring_window_s, config.max_entries_per_key
            )
            most = max(most, count)
        if most >= config.structuring_count:
            return [FiredRule(name=STRUCTURING_RULE, action="review", value=most, threshold=config.structuring_count)]
        return []

    @staticmethod
    def _keys(facts: RiskFacts) -> list[str]:
        keys = []
        if facts.customer_id:
            keys.append(f"{facts.merchant_id}:customer:{facts.customer_id}")
        if facts.card_fingerprint:
            # A card fingerprint is the same at every merchant: splitting across shops shows too.
            keys.append(f"card:{facts.card_fingerprint}")
        return keys


__all__ = [
    "LARGE_AMOUNT_RULE",
    "STRUCTURING_RULE",
    "AmlConfig",
    "AmlMonitor",
    "AmlState",
    "MemoryAmlState",
    "RedisAmlState",
]
