"""Card validation and tokenization.

The card number and CVC stay in memory for the length of the provider call. What is kept is a
random token (not derived from the number), the BIN, the last four digits, the brand and a
keyed fingerprint (HMAC-SHA256 of the number) for same-card velocity counts.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets

import msgspec

_BRANDS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("amex", ((34, 34), (37, 37))),
    ("visa", ((4, 4),)),
    ("mastercard", ((51, 55), (2221, 2720))),
    ("discover", ((6011, 6011), (644, 649), (65, 65))),
    ("jcb", ((3528, 3589),)),
    ("unionpay", ((62, 62),)),
    ("diners", ((300, 305), (36, 36), (38, 39))),
)


class CardRejected(ValueError):
    """The card data fails validation; ``code`` and ``param`` say which rule. Never carries the number."""

    def __init__(self, code: str, message: str, param: str) -> None:
        """Build the error."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


class CardSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What the switch keeps of a card."""

    brand: str
    bin: str
    last4: str
    exp_month: int
    exp_year: int
    token: str
    fingerprint: str


def luhn_valid(number: str) -> bool:
    """Return whether ``number`` (digits only) passes the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = ord(char) - 48
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def brand_of(number: str) -> str:
    """Return the card brand from the leading digits, or ``unknown``."""
    for brand, ranges in _BRANDS:
        for low, high in ranges:
            width = len(str(low))
            if low <= int(number[:width]) <= high:
                return brand
    return "unknown"


def validate_card(number: str, exp_month: int, exp_year: int, today: datetime.date | None = None) -> None:
    """Check number format, Luhn and that the card has not expired.

    Raises:
        CardRejected: ``invalid_number`` or ``invalid_expiry_year``/``expired_card``.
    """
    if not (12 <= len(number) <= 19 and number.isascii() and number.isdigit()):
        raise CardRejected("invalid_number", "the card number must be 12 to 19 digits", "payment_method.card.number")
    if not luhn_valid(number):
        raise CardRejected("invalid_number", "the card number fails the Luhn check", "payment_method.card.number")
    today = today or datetime.datetime.now(datetime.UTC).date()
    if (exp_year, exp_month) < (today.year, today.month):
        raise CardRejected("expired_card", "the card's expiry date is in the past", "payment_method.card.exp_year")


class Vault:
    """Turns card numbers into tokens and fingerprints with a secret key."""

    def __init__(self, fingerprint_key: bytes) -> None:
        """Create a vault.

        Args:
            fingerprint_key: HMAC key for fingerprints; at least 16 bytes.
        """
        if len(fingerprint_key) < 16:
            raise ValueError("the fingerprint key must be at least 16 bytes")
        self._key = fingerprint_key

    def fingerprint(self, number: str) -> str:
        """Return a stable keyed fingerprint of ``number`` (same card, same fingerprint)."""
        return hmac.new(self._key, number.encode("ascii"), hashlib.sha256).hexdigest()[:32]

    def summarize(self, number: str, exp_month: int, exp_year: int) -> CardSummary:
        """Return the card's stored summary with a fresh random token."""
        return CardSummary(
            brand=brand_of(number),
            bin=number[:6],
            last4=number[-4:],
            exp_month=exp_month,
            exp_year=exp_year,
            token="tok_" + secrets.token_urlsafe(18),
            fingerprint=self.fingerprint(number),
        )
