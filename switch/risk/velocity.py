"""Velocity counters per merchant: attempts, amount sum, distinct cards and declines per key.

One interface, two backends:

- :class:`LocalVelocity`: one process, on the compiled ``fastpath.velocity.VelocityCounters``.
- :class:`RedisVelocity`: several workers or machines share the counts in Redis, one round trip
  (one EVALSHA of a Lua script) per call.

What a caller must do (the authorization path):

1. Call :meth:`VelocityCounter.observe` once per payment, before routing, with the payment's
   card fingerprint (the vault's, never a card number), email, IP, device and customer. It counts
   the attempt under every key given and answers every ``(per, window)`` reading including it.
   Payments that risk then blocks and payments the provider declines are attempts too.
2. Call :meth:`VelocityCounter.record_decline` once per declined provider attempt, including each
   declined attempt of a cascade (two declines for a payment that failed over once). Pass the IP,
   email, device and customer too when "declines per IP" and the like are wanted.

Keys are scoped per merchant: ``(merchant, per, value)``. A ``per`` whose value is absent (no card
for a SEPA debit, no device) has no entry in the reading; rules over it do not fire. Values are
normalized (email case-folded, IP in canonical form). ``distinct_cards`` of a non-card key counts
the distinct card fingerprints seen with it, capped at ``distinct_cap`` (25 by default, as Stripe
does); of the card key it is 1.

Time is the caller's: every event carries ``occurred_at`` (seconds since the epoch), so windows
are testable with an injected clock. An event older than one already counted for a key counts in
that key's current bucket (clocks of several workers differ by a little).

Window resolution: a window of ``L`` seconds is a ring of ``B`` buckets of ``L / B`` seconds; a
window "now" covers the current bucket and the ``B - 1`` before it, so it reaches back between
``L - L/B`` and ``L`` seconds. Local: 30 buckets (1 min in 2 s, 1 h in 2 min, 24 h in 48 min).
Redis: 1 min in 5 s buckets, 1 h in 2 min buckets, 24 h in 1 h buckets (``REDIS_BUCKETS``).
Distinct cards in Redis are exact to the millisecond within the window's bucket-aligned start.

Redis outage (unreachable, erroring, or slower than ``deadline_s``, 50 ms by default):

- ``policy="open"``: ``observe`` answers ``VelocityReading(available=False)`` (no counts, so no
  velocity rule fires), ``on_unavailable(operation, reason)`` is called and ``unavailable_total``
  goes up (for a metric), and a warning is logged at most once per ``log_interval_s``.
- ``policy="closed"``: ``observe`` raises :class:`CountersUnavailable`; the caller declines the
  payment (``risk_blocked``) or answers 503 ``api_error`` with ``Retry-After``, never a 500.
- ``record_decline`` never raises under either policy: the payment's outcome is already decided;
  a lost decline is counted and logged like an unavailable reading.
- After a failure, Redis is not tried again for ``cooldown_s`` (1 s): during an outage payments
  do not each wait for the deadline.

Redis memory is bounded: per key one hash of at most ``4 + 3 B`` fields per window (slots that fall
out of a window are deleted as it moves) and one sorted set of at most ``distinct_cap`` card
digests, both expiring 25 h (the longest window and one bucket) after their last write. Key
names carry a blake2b digest of the value (no email or IP in clear) and the merchant as hash tag
(``{merchant}``), so one script's keys share a Redis Cluster slot.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from fastpath.velocity import VelocityCounters
from switch.risk.types import PERS, WINDOW_SECONDS, WINDOWS, VelocityReading, WindowCounts

__all__ = [
    "REDIS_BUCKETS",
    "CountersUnavailable",
    "LocalVelocity",
    "RedisVelocity",
    "VelocityCounter",
    "VelocityEvent",
]

log = logging.getLogger(__name__)

#: Largest amount one event may add (minor units), as in ``fastpath.velocity``.
MAX_AMOUNT = 10**15
#: Buckets per window in Redis: 1 min in 5 s, 1 h in 2 min, 24 h in 1 h.
REDIS_BUCKETS: dict[str, int] = {"1m": 12, "1h": 30, "24h": 24}
#: Distinct card fingerprints remembered per key (Stripe caps its distinct counts at 25 too).
DISTINCT_CAP = 25
_WINDOW_LENGTHS = tuple(WINDOW_SECONDS[window] for window in WINDOWS)


class VelocityEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One payment as the counters see it; ``None`` or empty where a value is not known."""

    merchant_id: str
    amount: int
    card: str | None = None  # the vault's card fingerprint or token, never a card number
    email: str | None = None
    ip: str | None = None
    device: str | None = None
    customer: str | None = None
    occurred_at: float


class CountersUnavailable(Exception):
    """The counter store could not answer and the policy is ``closed``."""

    def __init__(self, reason: str) -> None:
        """Build the error; ``reason`` is a short, low-cardinality word (an exception's class)."""
        super().__init__(f"velocity counters unavailable: {reason}")
        self.reason = reason


class VelocityCounter(Protocol):
    """What the risk engine needs from a velocity backend."""

    async def observe(self, event: VelocityEvent) -> VelocityReading:
        """Count this payment and read every ``(per, window)`` count including it."""
        ...

    async def record_decline(
        self,
        merchant_id: str,
        card: str | None,
        occurred_at: float,
        *,
        email: str | None = None,
        ip: str | None = None,
        device: str | None = None,
        customer: str | None = None,
    ) -> None:
        """Count one declined provider attempt under each key given."""
        ...


def _normalized(per: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if per == "email":
        return value.casefold()
    if per == "ip":
        try:
            return ipaddress.ip_address(value).compressed
        except ValueError:
            return value  # still a key: an unparsable "IP" is as countable as a valid one
    return value


def _pairs(
    card: str | None, email: str | None, ip: str | None, device: str | None, customer: str | None
) -> list[tuple[str, str]]:
    """``(per, normalized value)`` for each value present, in ``PERS`` order."""
    values = dict(zip(PERS, (card, email, ip, device, customer), strict=True))
    found = []
    for per in PERS:
        value = _normalized(per, values[per])
        if value is not None:
            found.append((per, value))
    return found


def _check(event: VelocityEvent) -> None:
    if type(event.amount) is not int or not 0 <= event.amount <= MAX_AMOUNT:
        raise ValueError(f"amount must be an integer from 0 to {MAX_AMOUNT} minor units, not {event.amount!r}")
    if not event.merchant_id:
        raise ValueError("merchant_id must not be empty")


class LocalVelocity:
    """Counters in this process, on the compiled sliding windows of ``fastpath.velocity``."""

    def __init__(self, *, buckets: int = 30, max_keys: int = 200_000, distinct_cap: int = DISTINCT_CAP) -> None:
        """Create empty counters.

        Args:
            buckets: Buckets per window (resolution ``window / buckets``).
            max_keys: Keys held at most (per measure); the least recently updated go first.
            distinct_cap: Distinct cards remembered per key.
        """
        self._now = 0.0
        self._events = VelocityCounters(
            _WINDOW_LENGTHS, buckets=buckets, max_keys=max_keys, distinct_cap=distinct_cap, clock=self._clock
        )
        self._declines = VelocityCounters(
            _WINDOW_LENGTHS, buckets=buckets, max_keys=max_keys, distinct_cap=0, clock=self._clock
        )

    def _clock(self) -> float:
        # The event's own time: the fastpath counters read it once per call.
        return self._now

    @staticmethod
    def _key(merchant_id: str, per: str, value: str) -> str:
        return f"{merchant_id}\x1f{per}\x1f{value}"

    async def observe(self, event: VelocityEvent) -> VelocityReading:
        """Count this payment under each of its keys and read them all (see the module docstring).

        Raises:
            ValueError: a negative or absurd amount, an empty merchant, or an absurd time.
        """
        _check(event)
        pairs = _pairs(event.card, event.email, event.ip, event.device, event.customer)
        if not pairs:
            return VelocityReading()
        keys = [self._key(event.merchant_id, per, value) for per, value in pairs]
        card = pairs[0][1] if pairs[0][0] == "card" else None
        distinct = [None if per == "card" else card for per, _ in pairs]
        self._now = event.occurred_at
        snapshots = self._events.add_many(keys, event.amount, distinct)
        declines = self._declines.check_many(keys)
        counts: dict[tuple[str, str], WindowCounts] = {}
        for (per, _), snapshot, declined in zip(pairs, snapshots, declines, strict=True):
            for window, (count, amount, cards), decline in zip(WINDOWS, snapshot, declined, strict=True):
                counts[(per, window)] = WindowCounts(
                    count=count, amount=amount, distinct_cards=1 if per == "card" else cards, declines=decline[0]
                )
        return VelocityReading(counts=counts)

    async def record_decline(
        self,
        merchant_id: str,
        card: str | None,
        occurred_at: float,
        *,
        email: str | None = None,
        ip: str | None = None,
        device: str | None = None,
        customer: str | None = None,
    ) -> None:
        """Count one declined provider attempt under the card (and each other key given)."""
        pairs = _pairs(card, email, ip, device, customer)
        if not pairs:
            return
        self._now = occurred_at
        self._declines.add_many([self._key(merchant_id, per, value) for per, value in pairs], 0)


# KEYS: per key, its ring hash then its distinct-cards sorted set.
# ARGV: now_ms, amount, add_count (0/1), add_decline (0/1), card digest ('' for none), distinct
#       cap, number of windows W, then per window (width_ms, buckets), the hashes' ttl_ms, the
#       sorted sets' ttl_ms, then per key 1 or 0 (track distinct cards).
# Returns per key and window: count, amount, declines, distinct cards.
# The ring hash of a key holds, per window w: w:h (head bucket epoch), running totals w:c w:a w:d
# and per slot S w:cS w:aS w:dS. Moving the head clears the slots that fell out of the window, so
# a read is the totals (the algorithm of fastpath.velocity). About eight commands per key.
_SCRIPT = """
local now = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local add_count = ARGV[3] == '1'
local add_decline = ARGV[4] == '1'
local card = ARGV[5]
local cap = tonumber(ARGV[6])
local nw = tonumber(ARGV[7])
local widths, sizes = {}, {}
for w = 1, nw do
  widths[w] = tonumber(ARGV[6 + 2 * w])
  sizes[w] = tonumber(ARGV[7 + 2 * w])
end
local ring_ttl = ARGV[8 + 2 * nw]
local set_ttl = ARGV[9 + 2 * nw]
local flags = 9 + 2 * nw
local out = {}
local function num(value) return tonumber(value) or 0 end
for g = 0, #KEYS / 2 - 1 do
  local key = KEYS[2 * g + 1]
  local names, epochs = {}, {}
  for w = 1, nw do
    local epoch = math.floor(now / widths[w])
    local s = epoch % sizes[w]
    epochs[w] = epoch
    for _, field in ipairs({'h', 'c', 'a', 'd', 'c' .. s, 'a' .. s, 'd' .. s}) do
      names[#names + 1] = w .. ':' .. field
    end
  end
  local v = redis.call('HMGET', key, unpack(names))
  local sets, gone = {}, {}
  local oldest = nil
  local starts = {}
  for w = 1, nw do
    local o, size, p, epoch = (w - 1) * 7, sizes[w], w .. ':', epochs[w]
    local head = tonumber(v[o + 1])
    local c, a, d = num(v[o + 2]), num(v[o + 3]), num(v[o + 4])
    local sc, sa, sd = num(v[o + 5]), num(v[o + 6]), num(v[o + 7])
    local had = {v[o + 5], v[o + 6], v[o + 7]}
    if head == nil then
      head = epoch
    elseif epoch > head then
      if epoch - head >= size then
        c, a, d, sc, sa, sd = 0, 0, 0, 0, 0, 0
        for s = 0, size - 1 do
          if s ~= epoch % size then
            gone[#gone + 1] = p .. 'c' .. s
            gone[#gone + 1] = p .. 'a' .. s
            gone[#gone + 1] = p .. 'd' .. s
          end
        end
      else
        local olds = {}
        for step = head + 1, epoch - 1 do
          local s = step % size
          olds[#olds + 1] = p .. 'c' .. s
          olds[#olds + 1] = p .. 'a' .. s
          olds[#olds + 1] = p .. 'd' .. s
        end
        if #olds > 0 then
          local ov = redis.call('HMGET', key, unpack(olds))
          for i = 1, #olds, 3 do
            c, a, d = c - num(ov[i]), a - num(ov[i + 1]), d - num(ov[i + 2])
            gone[#gone + 1] = olds[i]
            gone[#gone + 1] = olds[i + 1]
            gone[#gone + 1] = olds[i + 2]
          end
        end
        -- The new head's slot still holds what it counted one lap ago.
        c, a, d, sc, sa, sd = c - sc, a - sa, d - sd, 0, 0, 0
      end
      head = epoch
    elseif epoch < head then
      -- An event older than the head (another worker's clock is a little ahead): count it now.
      local s = head % size
      local hv = redis.call('HMGET', key, p .. 'c' .. s, p .. 'a' .. s, p .. 'd' .. s)
      sc, sa, sd, had = num(hv[1]), num(hv[2]), num(hv[3]), hv
    end
    if add_count then
      c, sc, a, sa = c + 1, sc + 1, a + amount, sa + amount
    end
    if add_decline then
      d, sd = d + 1, sd + 1
    end
    local s = head % size
    for _, pair in ipairs({{'h', head}, {'c', c}, {'a', a}, {'d', d}}) do
      sets[#sets + 1] = p .. pair[1]
      sets[#sets + 1] = pair[2]
    end
    for i, pair in ipairs({{'c', sc}, {'a', sa}, {'d', sd}}) do
      if pair[2] ~= 0 then
        sets[#sets + 1] = p .. pair[1] .. s
        sets[#sets + 1] = pair[2]
      elseif had[i] then
        gone[#gone + 1] = p .. pair[1] .. s
      end
    end
    starts[w] = (head - size + 1) * widths[w]
    if oldest == nil or starts[w] < oldest then oldest = starts[w] end
    out[#out + 1] = c
    out[#out + 1] = a
    out[#out + 1] = d
    out[#out + 1] = 0
  end
  if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
  redis.call('HSET', key, unpack(sets))
  redis.call('PEXPIRE', key, ring_ttl)
  if ARGV[flags + 1 + g] == '1' and card ~= '' then
    local zkey = KEYS[2 * g + 2]
    redis.call('ZADD', zkey, 'GT', now, card)
    -- Keep the cap most recently seen cards: the oldest is the first to leave every window.
    redis.call('ZREMRANGEBYRANK', zkey, 0, -(cap + 1))
    redis.call('PEXPIRE', zkey, set_ttl)
    local seen = redis.call('ZRANGEBYSCORE', zkey, oldest, '+inf', 'WITHSCORES')
    for i = 2, #seen, 2 do
      local at = tonumber(seen[i])
      for w = 1, nw do
        if at >= starts[w] then
          local index = g * nw * 4 + w * 4
          out[index] = out[index] + 1
        end
      end
    end
  end
end
return out
"""


def _digest(value: str, size: int = 12) -> str:
    # Stable across processes and machines, unlike hash(); keeps emails and IPs out of key names.
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=size).hexdigest()


class RedisVelocity:
    """Counters in Redis, shared by every worker; one EVALSHA per call (see the module docstring)."""

    def __init__(
        self,
        redis_client: Redis,
        prefix: str = "switch:velocity:",
        policy: Literal["open", "closed"] = "open",
        *,
        deadline_s: float = 0.05,
        cooldown_s: float = 1.0,
        distinct_cap: int = DISTINCT_CAP,
        buckets: dict[str, int] | None = None,
        on_unavailable: Callable[[str, str], None] | None = None,
        log_interval_s: float = 10.0,
    ) -> None:
        """Configure the counters.

        Args:
            redis_client: An asyncio Redis client (the caller owns and closes it).
            prefix: Namespace of every key.
            policy: ``open`` (answer an unavailable reading) or ``closed`` (raise
                :class:`CountersUnavailable`) when Redis does not answer in time.
            deadline_s: Longest wait for Redis per call.
            cooldown_s: After a failure, answer "unavailable" at once for this long.
            distinct_cap: Distinct cards remembered per key (1 to 1024).
            buckets: Buckets per window name (default ``REDIS_BUCKETS``).
            on_unavailable: Called with ``(operation, reason)`` whenever Redis was not usable,
                e.g. to increment a Prometheus counter.
            log_interval_s: At most one warning per this many seconds during an outage.

        Raises:
            ValueError: an unknown policy or an out-of-range parameter.
        """
        if policy not in ("open", "closed"):
            raise ValueError(f"policy must be 'open' or 'closed', not {policy!r}")
        if not 0 < deadline_s <= 60:
            raise ValueError("deadline_s must be between 0 and 60 seconds")
        if not 1 <= distinct_cap <= 1024:
            raise ValueError("distinct_cap must be between 1 and 1024")
        sizes = {**REDIS_BUCKETS, **(buckets or {})}
        window_args: list[int] = []
        for window in WINDOWS:
            length_ms = WINDOW_SECONDS[window] * 1000
            size = sizes[window]
            if not 1 <= size <= 3600 or length_ms % size:
                raise ValueError(f"buckets for {window} must divide {length_ms} ms into 1 to 3600 buckets")
            width = length_ms // size
            window_args += [width, size]
        longest = max(WINDOW_SECONDS.values()) * 1000
        # Everything of a key expires one bucket after its longest window has passed unused.
        ttl = longest + window_args[-2]
        self._head = [distinct_cap, len(WINDOWS), *window_args, ttl, ttl]
        self._script = redis_client.register_script(_SCRIPT)
        self._prefix = prefix
        self.policy = policy
        self._deadline = deadline_s
        self._cooldown = cooldown_s
        self._retry_at = 0.0
        self._on_unavailable = on_unavailable
        self._log_interval = log_interval_s
        self._logged_at = -1e18
        self._suppressed = 0
        #: Calls that found Redis unusable, since start.
        self.unavailable_total = 0

    def _keys(self, merchant_id: str, pairs: Sequence[tuple[str, str]]) -> list[str]:
        keys = []
        for per, value in pairs:
            base = f"{self._prefix}{{{merchant_id}}}:{per}:{_digest(value)}"
            keys += [f"{base}:ring", f"{base}:cards"]
        return keys

    async def _run(self, operation: str, keys: list[str], args: list[object]) -> list[int] | None:
        """One EVALSHA within the deadline; ``None`` when Redis was not usable (already reported)."""
        if self._retry_at and time.monotonic() < self._retry_at:
            self._unavailable(operation, "cooling_down", None)
            return None
        try:
            async with asyncio.timeout(self._deadline):
                result = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._retry_at = time.monotonic() + self._cooldown if self._cooldown > 0 else 0.0
            self._unavailable(operation, type(exc).__name__, exc)
            return None
        self._retry_at = 0.0
        return [int(value) for value in result]

    def _unavailable(self, operation: str, reason: str, exc: BaseException | None) -> None:
        self.unavailable_total += 1
        if self._on_unavailable is not None:
            try:
                self._on_unavailable(operation, reason)
            except Exception:  # a broken metric hook must not turn into a failed payment
                log.exception("velocity on_unavailable callback failed")
        now = time.monotonic()
        if now - self._logged_at >= self._log_interval:
            detail = f": {exc}" if exc is not None and str(exc) else ""
            log.warning(
                "velocity counters unavailable (%s %s%s, policy %s); %d more since the last warning",
                operation,
                reason,
                detail,
                self.policy,
                self._suppressed,
            )
            self._logged_at = now
            self._suppressed = 0
        else:
            self._suppressed += 1

    async def observe(self, event: VelocityEvent) -> VelocityReading:
        """Count this payment in Redis and read every ``(per, window)`` count, one round trip.

        Returns:
            The reading; ``available=False`` (and no counts) when Redis was not usable and the
            policy is ``open``.

        Raises:
            CountersUnavailable: Redis was not usable and the policy is ``closed``.
            ValueError: a negative or absurd amount or an empty merchant.
        """
        _check(event)
        pairs = _pairs(event.card, event.email, event.ip, event.device, event.customer)
        if not pairs:
            return VelocityReading()
        card = _digest(pairs[0][1], 8) if pairs[0][0] == "card" else ""
        flags = [0 if per == "card" else 1 for per, _ in pairs]
        now_ms = int(event.occurred_at * 1000)
        args = [now_ms, event.amount, 1, 0, card, *self._head, *flags]
        result = await self._run("observe", self._keys(event.merchant_id, pairs), args)
        if result is None:
            if self.policy == "closed":
                raise CountersUnavailable("redis")
            return VelocityReading(available=False)
        counts: dict[tuple[str, str], WindowCounts] = {}
        position = 0
        for per, _ in pairs:
            for window in WINDOWS:
                count, amount, declines, cards = result[position : position + 4]
                position += 4
                counts[(per, window)] = WindowCounts(
                    count=count, amount=amount, distinct_cards=1 if per == "card" else cards, declines=declines
                )
        return VelocityReading(counts=counts)

    async def record_decline(
        self,
        merchant_id: str,
        card: str | None,
        occurred_at: float,
        *,
        email: str | None = None,
        ip: str | None = None,
        device: str | None = None,
        customer: str | None = None,
    ) -> None:
        """Count one declined provider attempt under the card (and each other key given).

        Never raises for Redis trouble, whatever the policy (see the module docstring).
        """
        pairs = _pairs(card, email, ip, device, customer)
        if not pairs:
            return
        args = [int(occurred_at * 1000), 0, 0, 1, "", *self._head, *([0] * len(pairs))]
        await self._run("record_decline", self._keys(merchant_id, pairs), args)
