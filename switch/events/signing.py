"""``Switch-Signature: t=<unix>,v1=<hex>``: HMAC-SHA256 of ``"{t}.{body}"`` keyed with the whole secret.

The same scheme as Stripe's, so that merchants can reuse their verification code; the README
shows the receiver's side, and the tests build their receiver from that snippet.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "Switch-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
DEFAULT_TOLERANCE_S = 300


def new_secret() -> str:
    """A fresh endpoint secret (``whsec_`` + 32 URL-safe characters)."""
    return SECRET_PREFIX + secrets.token_urlsafe(24)


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"{timestamp}.{body}"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Switch-Signature`` header value for ``body``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={signature(secret, body, timestamp)}"


def verify(
    header: str, body: bytes, secret: str, *, tolerance_s: int = DEFAULT_TOLERANCE_S, now: int | None = None
) -> bool:
    """Return whether ``header`` signs ``body`` with ``secret`` and is at most ``tolerance_s`` old."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    now = int(time.time()) if now is None else now
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, body, timestamp)
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))
