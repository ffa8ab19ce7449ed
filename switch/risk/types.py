"""Value types shared by the risk modules: what is known about a payment, and what was measured."""

from __future__ import annotations

from typing import Literal

import msgspec

Window = Literal["1m", "1h", "24h"]
Per = Literal["card", "email", "ip", "device", "customer"]
WINDOWS: tuple[Window, ...] = ("1m", "1h", "24h")
WINDOW_SECONDS: dict[str, int] = {"1m": 60, "1h": 3600, "24h": 86400}
PERS: tuple[Per, ...] = ("card", "email", "ip", "device", "customer")


class BinInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the BIN table says about a card number's first digits."""

    bin: str
    country: str | None = None
    brand: str | None = None
    funding: Literal["credit", "debit", "prepaid"] | None = None
    issuer: str | None = None


class WindowCounts(msgspec.Struct, frozen=True, kw_only=True):
    """One key's measures over one window, the payment being decided included."""

    count: int = 0
    amount: int = 0
    distinct_cards: int = 0
    declines: int = 0


class VelocityReading(msgspec.Struct, frozen=True, kw_only=True):
    """Counts per (per, window) for one payment, e.g. ``counts[("ip", "1m")]``.

    ``available`` is False when the counter store could not be reached and the fail-open policy
    applied: the counts are then empty and rules over them cannot fire.
    """

    counts: dict[tuple[str, str], WindowCounts] = msgspec.field(default_factory=dict)
    available: bool = True


class RiskFacts(msgspec.Struct, frozen=True, kw_only=True):
    """Everything risk may look at for one payment (no card number, no CVC)."""

    merchant_id: str
    amount: int
    currency: str
    payment_method: str
    card_fingerprint: str | None = None
    bin: BinInfo | None = None
    email: str | None = None
    ip: str | None = None
    ip_country: str | None = None
    device_id: str | None = None
    customer_id: str | None = None
    customer_country: str | None = None
    names: tuple[str, ...] = ()
    occurred_at: float = 0.0


class SanctionsMatch(msgspec.Struct, frozen=True, kw_only=True):
    """One list entry a screened name matched."""

    name: str
    matched: str
    entry_id: str
    list_name: str
    score: float
    programs: tuple[str, ...] = ()
