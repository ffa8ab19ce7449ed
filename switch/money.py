"""Currencies and amounts: ISO 4217 exponents, validation of integer minor units."""

from __future__ import annotations

import iso4217

MIN_AMOUNT = 1
MAX_AMOUNT = 10**15

# Built once: the table of currencies that have a minor unit (funds codes such as XDR have none
# and cannot be charged).
CURRENCY_EXPONENTS: dict[str, int] = {
    currency.code: currency.exponent for currency in iso4217.Currency if currency.exponent is not None
}


def exponent(currency: str) -> int:
    """Return the ISO 4217 minor-unit exponent of ``currency`` (JPY 0, EUR 2, KWD 3).

    Raises:
        ValueError: When the code is not a chargeable ISO 4217 currency.
    """
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise ValueError(f"unknown currency {currency!r}") from None


def is_known_currency(currency: str) -> bool:
    """Return whether ``currency`` is an upper-case ISO 4217 code with a minor unit."""
    return currency in CURRENCY_EXPONENTS


def format_minor(amount: int, currency: str) -> str:
    """Render integer minor units as a decimal string, exactly (``1250 EUR`` -> ``"12.50"``)."""
    digits = exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**digits)
    return f"{sign}{whole}.{fraction:0{digits}d}" if digits else f"{sign}{whole}"
