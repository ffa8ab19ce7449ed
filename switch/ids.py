"""Object identifiers: a prefix plus a time-ordered, random, URL-safe body.

The body starts with the creation time in milliseconds so ids of one prefix sort by creation,
which keeps list pagination stable and index inserts append-only.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghijkmnopqrstvwxyz"
_BASE = len(_ALPHABET)


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, _BASE)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """Return a new id such as ``pay_01H...``: 8 chars of milliseconds, 14 chars of randomness."""
    millis = time.time_ns() // 1_000_000
    randomness = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_encode(millis, 8)}{_encode(randomness, 14)}"
