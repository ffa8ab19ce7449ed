"""Posting templates: the journal transaction each payment operation writes.

Amounts are signed minor units: a debit is positive, a credit negative, so a balanced
transaction sums to zero per currency and phase. Authorizations are holds in the ``pending``
phase; captured money and refunds are ``posted``. Accounts follow the reference chart:
``provider_receivable:{provider}`` (asset) and ``merchant_payable:{merchant}`` (liability).
"""

from __future__ import annotations

import msgspec

from switch.ids import new_id


class Entry(msgspec.Struct, frozen=True):
    """One journal line."""

    account: str
    currency: str
    phase: str
    amount: int


class JournalTransaction(msgspec.Struct, frozen=True, kw_only=True):
    """A balanced set of entries caused by one operation."""

    id: str
    merchant_id: str
    payment_id: str
    kind: str
    operation_id: str
    created: int
    entries: tuple[Entry, ...]


def receivable(provider: str) -> str:
    """Return the provider receivable account name."""
    return f"provider_receivable:{provider}"


def payable(merchant_id: str) -> str:
    """Return the merchant payable account name."""
    return f"merchant_payable:{merchant_id}"


def _pair(provider: str, merchant_id: str, currency: str, phase: str, amount: int) -> tuple[Entry, Entry]:
    # Dr receivable / Cr payable for a positive amount; a negative amount reverses the pair.
    return (
        Entry(receivable(provider), currency, phase, amount),
        Entry(payable(merchant_id), currency, phase, -amount),
    )


def _transaction(
    kind: str, merchant_id: str, payment_id: str, operation_id: str, created: int, entries: tuple[Entry, ...]
) -> JournalTransaction:
    return JournalTransaction(
        id=new_id("jtx"),
        merchant_id=merchant_id,
        payment_id=payment_id,
        kind=kind,
        operation_id=operation_id,
        created=created,
        entries=entries,
    )


def authorize_hold(
    *, merchant_id: str, payment_id: str, provider: str, currency: str, amount: int, created: int
) -> JournalTransaction:
    """Hold ``amount``: pending Dr provider_receivable / Cr merchant_payable."""
    entries = _pair(provider, merchant_id, currency, "pending", amount)
    return _transaction("authorize", merchant_id, payment_id, payment_id, created, entries)


def sale(
    *, merchant_id: str, payment_id: str, provider: str, currency: str, amount: int, created: int
) -> JournalTransaction:
    """Authorize and capture at once: posted Dr provider_receivable / Cr merchant_payable."""
    entries = _pair(provider, merchant_id, currency, "posted", amount)
    return _transaction("sale", merchant_id, payment_id, payment_id, created, entries)


def capture(
    *,
    merchant_id: str,
    payment_id: str,
    capture_id: str,
    provider: str,
    currency: str,
    amount: int,
    release: int,
    created: int,
) -> JournalTransaction:
    """Post ``amount`` of the hold and release ``release`` more of it (the rest on a final capture)."""
    entries = (
        *_pair(provider, merchant_id, currency, "pending", -(amount + release)),
        *_pair(provider, merchant_id, currency, "posted", amount),
    )
    return _transaction("capture", merchant_id, payment_id, capture_id, created, entries)


def void(
    *,
    merchant_id: str,
    payment_id: str,
    provider: str,
    currency: str,
    release: int,
    created: int,
    operation_id: str | None = None,
) -> JournalTransaction:
    """Release the whole remaining hold; ``operation_id`` is the void intent (the payment id for old rows)."""
    entries = _pair(provider, merchant_id, currency, "pending", -release)
    return _transaction("void", merchant_id, payment_id, operation_id or payment_id, created, entries)


def refund(
    *,
    merchant_id: str,
    payment_id: str,
    refund_id: str,
    provider: str,
    currency: str,
    amount: int,
    created: int,
) -> JournalTransaction:
    """Refund: posted Dr merchant_payable / Cr provider_receivable."""
    entries = _pair(provider, merchant_id, currency, "posted", -amount)
    return _transaction("refund", merchant_id, payment_id, refund_id, created, entries)
