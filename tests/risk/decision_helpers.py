"""Builders shared by the decision-layer tests (rules, engine, SCA, AML, backtest)."""

from __future__ import annotations

from typing import Any

from switch.risk.types import PERS, WINDOWS, BinInfo, RiskFacts, VelocityReading, WindowCounts


def facts(**changes: Any) -> RiskFacts:
    """A German card paying EUR 12.50 from a German IP, every key known; ``changes`` override."""
    values: dict[str, Any] = {
        "merchant_id": "mer_test",
        "amount": 1250,
        "currency": "EUR",
        "payment_method": "card",
        "card_fingerprint": "fp_card_1",
        "bin": BinInfo(bin="424242", country="DE", brand="visa", funding="credit"),
        "email": "ada@example.com",
        "ip": "203.0.113.7",
        "ip_country": "DE",
        "device_id": "dev_1",
        "customer_id": "cus_1",
        "customer_country": "DE",
        "occurred_at": 1_700_000_000.0,
    }
    values.update(changes)
    return RiskFacts(**values)


def reading(overrides: dict[tuple[str, str], WindowCounts] | None = None, **every: int) -> VelocityReading:
    """A reading with every (per, window) at ``every`` (default: this payment alone), then ``overrides``."""
    base = {"count": 1, "amount": 1250, "distinct_cards": 1, "declines": 0}
    base.update(every)
    counts = {(per, window): WindowCounts(**base) for per in PERS for window in WINDOWS}
    counts.update(overrides or {})
    return VelocityReading(counts=counts)
