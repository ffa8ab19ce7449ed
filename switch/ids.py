"""Object identifiers: a prefix, the creation time and randomness (``pay_018f3c2a9b1e4c...``).

The body starts with the creation time in milliseconds (fixed-width hex), so ids of one prefix
sort by creation, which keeps list pagination stable and index inserts append-only. Ids are not
secrets (every read is scoped to the merchant), so a seeded PRNG is enough for the rest and keeps
id creation off the system-call path.
"""

from __future__ import annotations

import os
import random
import time

_random = random.Random(os.urandom(32))
_getrandbits = _random.getrandbits
_time_ns = time.time_ns


def new_id(prefix: str) -> str:
    """Return a new id: ``prefix_`` + 11 hex digits of milliseconds + 16 hex digits of randomness."""
    return f"{prefix}_{_time_ns() // 1_000_000:011x}{_getrandbits(64):016x}"


def reseed_after_fork() -> None:
    """Give a forked worker its own random stream so two workers never draw the same ids."""
    _random.seed(os.urandom(32))


os.register_at_fork(after_in_child=reseed_after_fork)
