"""Midtrans Core API (GoPay) wire conventions and the transaction_status map.

Midtrans takes IDR as whole rupiah (``gross_amount`` integer) although ISO 4217 gives IDR two
minor digits, so switch amounts must be whole rupiah.
"""

from __future__ import annotations

from decimal import Decimal

from adapters.base import Outcome, currency_exponent


class AmountNotRepresentable(ValueError):
    """Midtrans cannot take the amount (not IDR, or not whole rupiah)."""


def to_gross_amount(amount: int, currency: str) -> int:
    """Convert ISO minor units of IDR to Midtrans's whole-rupiah integer.

    Raises:
        AmountNotRepresentable: For another currency or a fractional rupiah amount.
    """
    if currency.upper() != "IDR":
        raise AmountNotRepresentable("Midtrans GoPay takes IDR only")
    scale = 10 ** currency_exponent("IDR")
    if amount % scale:
        raise AmountNotRepresentable("IDR amounts must be whole rupiah at Midtrans")
    return amount // scale


def from_gross_amount(value: str | int) -> int:
    """Convert Midtrans's ``gross_amount`` (``"10000.00"``) back to ISO minor units of IDR."""
    return int(Decimal(str(value)).scaleb(currency_exponent("IDR")))


STATUS_MAP: dict[str, Outcome] = {
    "capture": Outcome.APPROVED,
    "settlement": Outcome.APPROVED,
    "authorize": Outcome.APPROVED,
    "pending": Outcome.PENDING,
    "deny": Outcome.DECLINED_HARD,
    "cancel": Outcome.DECLINED_HARD,
    "expire": Outcome.DECLINED_HARD,
    "failure": Outcome.TECHNICAL,
    "refund": Outcome.APPROVED,
    "partial_refund": Outcome.APPROVED,
}
